"""``Batch.lacks``: when a stage may skip its query of the store (pure logic)."""

from __future__ import annotations

import polars as pl

from hub.fusion.stages import Batch


def _batch(kinds: list[str], types: list[str]) -> Batch:
    frame = pl.DataFrame({"kind": kinds, "event_type": types})
    return Batch(frame=frame, stored=frame.height)


def test_a_batch_lacks_only_what_its_frame_does_not_hold() -> None:
    batch = _batch(["incident", "observation"], ["fire", "water_level"])
    assert batch.lacks(["resource", "cancel"])
    assert not batch.lacks(["observation"])
    assert not batch.lacks(["observation"], ["water_level", "gas_concentration"])
    assert batch.lacks(["observation"], ["gas_concentration"])  # an observation of another type
    assert batch.lacks(["incident"], ["water_level"])  # the water level is an observation


def test_a_batch_without_its_frame_lacks_nothing() -> None:
    batch = _batch(["incident"], ["fire"])
    batch.added_events()  # a stage stored derived events: the frame is no longer all of it
    assert not batch.lacks(["resource"])
    assert not Batch().lacks(["resource"])
