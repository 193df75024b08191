"""Crash safety: SIGKILL the real fusion process mid-stream, restart it, and lose nothing,
store nothing twice. Three rounds, each killed at a different point of a 50,000-event stream."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from hub.bench.workload import build
from hub.settings import Settings
from hub.store.db import connect
from tests.fusion_helpers import fusion_stats, produce, start_fusion, wait_until

pytestmark = pytest.mark.slow
EVENTS = 50_000


@pytest.mark.parametrize("kill_at", [0.1, 0.45, 0.8], ids=["early", "middle", "late"])
def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    hub_settings: Settings, sf_communities: list[str], tmp_path: Path, kill_at: float
) -> None:
    w = build(EVENTS, duplicate_share=0.02, seed=int(kill_at * 1000) + 500)
    produce(hub_settings, w.messages)
    target = int(EVENTS * (kill_at + random.uniform(-0.05, 0.05)))
    log = tmp_path / "fusion.log"

    proc = start_fusion(hub_settings, log)
    try:
        wait_until(
            lambda: fusion_stats(hub_settings)["consumed"] >= target, 120, f"{target} consumed"
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed_at = fusion_stats(hub_settings)["consumed"]
        assert killed_at < EVENTS, f"the kill came too late to test anything ({killed_at})"

        proc = start_fusion(hub_settings, log)
        wait_until(lambda: fusion_stats(hub_settings)["consumed"] == EVENTS, 180, "all consumed")
    finally:
        proc.terminate()
        proc.wait(30)

    with connect(hub_settings) as conn:
        stored = {
            r[0]
            for r in conn.execute(
                "SELECT event_id::text FROM event WHERE event_id = ANY(%s::uuid[])",
                (sorted(w.valid_ids),),
            ).fetchall()
        }
        offsets: dict[int, int] = dict(
            conn.execute(
                "SELECT partition, next_offset FROM consumer_offset WHERE group_id = %s",
                (hub_settings.consumer_group,),
            ).fetchall()
        )
    lost = w.valid_ids - stored
    assert not lost, f"{len(lost)} events lost (killed at {killed_at}/{EVENTS})"
    stats = fusion_stats(hub_settings)
    # duplicated = 0: every distinct event stored once, every repeat counted as a duplicate.
    assert stats == {
        "consumed": EVENTS,
        "stored": len(w.valid_ids),
        "duplicates": w.duplicates,
        "dlq": 0,
    }
    assert sum(offsets.values()) == EVENTS
