"""Deterministic ids of the incident model: incident (seed) ids and source keys.

A leaf of ``hub.fusion.incident``: plain values in, text out, nothing of the model's types.

Every report has a seed id (``seed_id``): a UUIDv8 whose first 48 bits are its observed_at in
Unix milliseconds and whose other bits come from uuid5(NAMESPACE, event_id). An incident's id is
the seed of its first report in the canonical order, which is its smallest seed. Ids order by
time, so an incident is named after its EARLIEST report; a late report observed before all of
an incident's members may take over and rename it (the old id stays as an alias). A pinned
report's seed is derived from ``"pinned:" + event_id``, so an operator's split never hands the
incident's own id to the report split out of it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import uuid
from collections.abc import Sequence
from urllib.parse import quote

import numpy as np

NAMESPACE = uuid.UUID("0b8f3d6e-7a41-5c2e-9f10-4d6a8c2b1e57")


def millis(timestamp: float) -> int:
    """The millisecond of a seed (clipped to the 48 bits it has)."""
    return min(max(math.floor(timestamp * 1000), 0), (1 << 48) - 1)


def seed_text(event_id: str, pinned: bool, ms: int) -> str:
    """``seed_id`` of a report given as its canonical id text and its millisecond."""
    return seed_texts([event_id], [pinned], np.array([ms], dtype=np.int64))[0]


def seed_texts(event_ids: Sequence[str], pinned: Sequence[bool], ms: np.ndarray) -> list[str]:
    """``seed_text`` of many reports: one hash each, the bits laid out in bulk."""
    names = (f"pinned:{e}" if p else e for e, p in zip(event_ids, pinned, strict=True))
    # uuid5's hash (SHA-1 of namespace + name), without building the intermediate UUID: only
    # bits that uuid5 leaves alone (it overwrites version and variant) are used.
    ns = NAMESPACE.bytes
    digest = b"".join(hashlib.sha1(ns + name.encode()).digest()[:16] for name in names)
    out = np.frombuffer(digest, dtype=np.uint8).reshape(-1, 16).copy()
    # RFC 9562 UUIDv8 layout: 48 bits time | version 8 | 12 bits | variant 0b10 | 62 bits.
    out[:, :6] = ms.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]
    out[:, 6] = 0x80 | (out[:, 6] & 0x0F)
    out[:, 8] = 0x80 | (out[:, 8] & 0x3F)
    h = out.tobytes().hex()
    return [
        f"{h[k : k + 8]}-{h[k + 8 : k + 12]}-{h[k + 12 : k + 16]}-{h[k + 16 : k + 20]}-"
        + h[k + 20 : k + 32]
        for k in range(0, len(h), 32)
    ]


def source_key(
    reporter: str | None, system: str, community_id: str | None, signed_sensor: bool = False
) -> str:
    """Who stands behind a report, for counting independent sources.

    A person's pseudonym counts per community (``r:<community>:<reporter>``); a trusted signed
    sensor counts per sensor (``k:<system>:<sensor id>``, the id in ``reporter``); anything
    else is the automated system itself (``s:<system>``): the same system twice is one source,
    however many rows it sends. Parts are percent-escaped so that no two keys collide.
    """
    if signed_sensor:
        if not reporter:
            raise ValueError("a signed sensor needs its sensor id (the reporter field)")
        return f"k:{esc(system)}:{esc(reporter)}"
    if reporter:
        return f"r:{esc(community_id or '')}:{esc(reporter)}"
    return f"s:{esc(system)}"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote() leaves as it is


@functools.lru_cache(maxsize=1 << 16)  # the same systems and reporters, batch after batch
def esc(part: str) -> str:
    return part if _UNRESERVED.fullmatch(part) else quote(part, safe="")
