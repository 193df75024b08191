"""Fusion against the real broker and PostGIS: exactness, dead letters, poison, recreated topics."""

from __future__ import annotations

import uuid
from collections import Counter

import orjson
import pytest

from hub.bench.workload import build, event_json, sf_incidents
from hub.fusion.dlq import DETAIL, REASON
from hub.settings import Settings
from hub.store.db import connect
from tests.fusion_helpers import consume_all, fusion_stats, produce, running_worker, wait_until


def _stored_ids(settings: Settings, ids: list[str]) -> list[str]:
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT event_id::text FROM event WHERE event_id = ANY(%s::uuid[])", (ids,)
        ).fetchall()
    return [r[0] for r in rows]


def test_store_holds_exactly_the_distinct_valid_events(
    hub_settings: Settings, sf_communities: list[str]
) -> None:
    w = build(10_000, duplicate_share=0.05, invalid_share_each=0.01, seed=101)
    assert len(w.messages) == 10_000 and w.duplicates == 500
    assert {k: len(v) for k, v in w.invalid.items()} == {
        "not_json": 100,
        "schema_violation": 100,
        "coordinates_out_of_range": 100,
        "unknown_community": 100,
    }
    produce(hub_settings, w.messages)
    with running_worker(hub_settings):
        wait_until(lambda: fusion_stats(hub_settings)["consumed"] == 10_000, 120, "10k consumed")

    stored = _stored_ids(hub_settings, sorted(w.valid_ids))
    assert sorted(stored) == sorted(w.valid_ids)
    stats = fusion_stats(hub_settings)
    assert stats == {"consumed": 10_000, "stored": len(w.valid_ids), "duplicates": 500, "dlq": 400}

    dead = consume_all(hub_settings, hub_settings.dlq_topic, expected=400)
    assert len(dead) == 400
    by_reason: dict[str, list[bytes]] = {}
    for record in dead:
        headers = dict(record.headers)
        assert headers[DETAIL], "every dead letter explains itself"
        by_reason.setdefault(headers[REASON].decode(), []).append(record.value)
    assert {k: sorted(v) for k, v in by_reason.items()} == {
        k: sorted(v) for k, v in w.invalid.items()
    }


def test_poison_messages_never_stop_the_worker(
    hub_settings: Settings, sf_communities: list[str]
) -> None:
    inc = sf_incidents()[0]
    good = [event_json(inc, uuid.uuid4()) for _ in range(3)]
    huge = orjson.loads(event_json(inc, uuid.uuid4()))
    huge_int = orjson.dumps(huge).replace(
        b'"properties":{', b'"properties":{"n":123456789012345678901234567890,'
    )
    nul = event_json(inc, uuid.uuid4()).replace(
        b'"properties":{', b'"properties":{"x":"a\\u0000b",'
    )
    pretty = orjson.dumps(orjson.loads(good[2]), option=orjson.OPT_INDENT_2)  # valid, multi-line
    mixed = orjson.loads(event_json(inc, uuid.uuid4()))  # valid JSON Schema, but no geometry
    lon, lat = inc.lon, inc.lat  # library builds a line of 2D and 3D positions
    mixed["geometry"] = {"type": "LineString", "coordinates": [[lon, lat], [lon, lat + 1e-4, 5]]}
    messages = [
        (b"k", good[0]),
        (b"k", None),
        (b"k", huge_int),
        (b"k", nul),
        (b"k", b"\xff\xfe"),
        (b"k", good[1]),
        (b"k", pretty),
        (b"k", orjson.dumps(mixed)),
    ]
    produce(hub_settings, messages)
    with running_worker(hub_settings):
        wait_until(lambda: fusion_stats(hub_settings)["consumed"] == len(messages), 60, "consumed")
    assert fusion_stats(hub_settings) == {"consumed": 8, "stored": 3, "duplicates": 0, "dlq": 5}
    ids = [orjson.loads(g)["event_id"] for g in good]
    assert sorted(_stored_ids(hub_settings, ids)) == sorted(ids)
    reasons = Counter(
        dict(r.headers)[REASON].decode()
        for r in consume_all(hub_settings, hub_settings.dlq_topic, 5)
    )
    assert reasons == Counter({"not_json": 2, "schema_violation": 3})


@pytest.mark.parametrize("stale", ["beyond_log_end", "other_topic_id"])
def test_recreated_topic_restarts_from_the_beginning(
    hub_settings: Settings, sf_communities: list[str], stale: str
) -> None:
    """Offsets stored for an older incarnation of the topic must not skip the new one's events."""
    w = build(300, seed=202 if stale == "beyond_log_end" else 203)
    offset, topic_id = (10_000_000, None) if stale == "beyond_log_end" else (40, "stale-topic-id")
    with connect(hub_settings) as conn:
        for partition in range(hub_settings.topic_partitions):
            conn.execute(
                "INSERT INTO consumer_offset (group_id, topic, partition, next_offset, topic_id)"
                " VALUES (%s, %s, %s, %s, %s)",
                (
                    hub_settings.consumer_group,
                    hub_settings.events_topic,
                    partition,
                    offset,
                    topic_id,
                ),
            )
    produce(hub_settings, w.messages)
    with running_worker(hub_settings) as worker:
        wait_until(lambda: fusion_stats(hub_settings)["consumed"] == 300, 60, "300 consumed")
        resets = worker.metrics.topic_resets._value.get()
    assert sorted(_stored_ids(hub_settings, sorted(w.valid_ids))) == sorted(w.valid_ids)
    assert resets >= 1
