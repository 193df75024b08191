"""``hub demo``: the SF replay on the real stack."""

from __future__ import annotations
