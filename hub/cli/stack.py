"""``hub up|down|status``: the local stack (broker, migrations, fusion worker, API)."""

from __future__ import annotations
