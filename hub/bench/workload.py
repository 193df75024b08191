"""Real-shaped event streams built from the real SFPD incidents in ``data/sf/``.

Every event sits at a real incident's place and time; ids are derived from a seed, so a
workload is reproducible. Invalid messages of each kind fusion must dead-letter can be mixed in.
"""

from __future__ import annotations

import csv
import itertools
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from geo.tiles import tile_key

ROOT = Path(__file__).resolve().parents[2]
SFPD_CSV = ROOT / "data" / "sf" / "sfpd_incident_reports_2018-12.csv"
NEIGHBOURHOODS = ROOT / "data" / "sf" / "sf_analysis_neighborhoods.geojson"
_NS = uuid.UUID("6f1c2a8e-54b1-4f0e-9a1d-2b7c4e8f9a10")
_LA = ZoneInfo("America/Los_Angeles")

INVALID_KINDS = ("not_json", "schema_violation", "coordinates_out_of_range", "unknown_community")


@dataclass(frozen=True)
class Incident:
    row_id: str
    observed_at: str  # RFC 3339 with offset
    lon: float
    lat: float
    community: str
    category: str


@cache
def sf_incidents(path: Path = SFPD_CSV) -> tuple[Incident, ...]:
    """The real incidents that have coordinates and a neighbourhood."""
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if not row["Latitude"] or not row["Analysis Neighborhood"]:
                continue
            ts = datetime.strptime(row["Incident Datetime"], "%Y/%m/%d %I:%M:%S %p")
            out.append(
                Incident(
                    row["Row ID"],
                    ts.replace(tzinfo=_LA).isoformat(),
                    float(row["Longitude"]),
                    float(row["Latitude"]),
                    row["Analysis Neighborhood"],
                    row["Incident Category"],
                )
            )
    return tuple(out)


def event_json(
    inc: Incident,
    event_id: uuid.UUID,
    *,
    community: str | None = "row",
    lon: float | None = None,
    event_type: str = "other",
) -> bytes:
    doc: dict[str, object] = {
        "event_id": str(event_id),
        "source": {"system": "sfpd-incidents", "connector": "bench"},
        "kind": "incident",
        "category": "Security",
        "severity": "Moderate",
        "event_type": event_type,
        "observed_at": inc.observed_at,
        "geometry": {"type": "Point", "coordinates": [inc.lon if lon is None else lon, inc.lat]},
        "properties": {"row_id": inc.row_id, "incident_category": inc.category},
    }
    if community is not None:
        doc["community_id"] = inc.community if community == "row" else community
    return orjson.dumps(doc)


@dataclass
class Workload:
    """Messages to produce, and what fusion must make of them."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value)
    valid_ids: set[str] = field(default_factory=set)
    invalid: dict[str, list[bytes]] = field(default_factory=dict)  # DLQ reason -> messages
    duplicates: int = 0


def _invalid(kind: str, inc: Incident, rng: random.Random) -> bytes:
    eid = uuid.UUID(int=rng.getrandbits(128), version=4)
    if kind == "not_json":
        return b'{"event_id": "' + str(eid).encode() + b'", oops'
    if kind == "schema_violation":
        return event_json(inc, eid).replace(b'"kind":"incident"', b'"kind":"rumour"')
    if kind == "coordinates_out_of_range":
        return event_json(inc, eid, lon=inc.lon - 200.0)
    return event_json(inc, eid, community="Atlantis (not registered)")


def build(
    n: int,
    *,
    duplicate_share: float = 0.0,
    invalid_share_each: float = 0.0,
    seed: int = 7,
    zoom: int = 12,
) -> Workload:
    """``n`` messages: distinct valid events, plus duplicates and invalid ones at the shares."""
    rng = random.Random(seed)
    incidents = sf_incidents()
    n_dup = round(n * duplicate_share)
    n_bad = {k: round(n * invalid_share_each) for k in INVALID_KINDS} if invalid_share_each else {}
    n_valid = n - n_dup - sum(n_bad.values())
    w = Workload(duplicates=n_dup)
    valid: list[tuple[bytes, bytes]] = []
    for i in range(n_valid):
        inc = incidents[i % len(incidents)]
        eid = uuid.uuid5(_NS, f"{seed}:{i}")
        valid.append((tile_key(inc.lon, inc.lat, zoom), event_json(inc, eid)))
        w.valid_ids.add(str(eid))
    extra = [valid[rng.randrange(len(valid))] for _ in range(n_dup)]
    for kind, count in n_bad.items():
        bad = [_invalid(kind, incidents[rng.randrange(len(incidents))], rng) for _ in range(count)]
        w.invalid[kind] = bad
        extra.extend((tile_key(-122.42, 37.77, zoom), value) for value in bad)
    w.messages = valid + extra
    rng.shuffle(w.messages)
    return w


# --- streams for the benchmark: distinct per run, cheap per event ----------------------------

_ZERO_ID = str(uuid.UUID(int=0))


def police_type(category: str) -> str:
    """An SFPD category as an event type code: "Larceny Theft" -> "larceny_theft".

    The correlation rules keep the police categories on their defaults (250 m, 20 min), so a
    stream's repeats of one real incident, at one place and time, join one incident: the hard
    case for the picture. ``other``, the connector's fallback, never correlates by proximity
    and would make every event an incident of its own.
    """
    code = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")[:64]
    return code if re.fullmatch(r"[a-z][a-z0-9_]*", code) else "other"


@cache
def _templates(zoom: int, connector: str) -> tuple[tuple[bytes, bytes, bytes], ...]:
    """(key, head, tail) per real incident: an event is ``head + event_id + tail``.

    Encoding each incident once and splicing the id in keeps a producer's per-event cost at a
    uuid5 and a join (~1.5 us), so a benchmark producer measures Kafka, not JSON building.
    """
    tag = orjson.dumps({"connector": connector})[1:-1]  # "connector":"..." with escaping
    out = []
    for inc in sf_incidents():
        doc = event_json(inc, uuid.UUID(int=0), event_type=police_type(inc.category))
        doc = doc.replace(b'"connector":"bench"', tag, 1)
        head, _, tail = doc.partition(_ZERO_ID.encode())
        out.append((tile_key(inc.lon, inc.lat, zoom), head, tail))
    return tuple(out)


def stream(
    seed: int, *, connector: str = "bench", part: int = 0, zoom: int = 12
) -> Iterator[tuple[bytes, bytes]]:
    """An endless stream of distinct valid events (key, value) at real incidents' places,
    typed by their police category (``police_type``); after the last real incident it starts
    again with the first, so each repeats at its place and time.

    Ids are uuid5 of (seed, connector, part, i): distinct across parts of one run and, with a
    fresh seed per run, across runs on the same database. ``source.connector`` is
    ``connector``, so a phase's events can be told apart in the store.
    """
    templates = _templates(zoom, connector)
    prefix = f"{seed}:{connector}:{part}:"  # as stream_id(), with the prefix built once
    for i in itertools.count():
        key, head, tail = templates[i % len(templates)]
        yield key, head + str(uuid.uuid5(_NS, prefix + str(i))).encode() + tail


def stream_id(seed: int, connector: str, part: int, i: int) -> str:
    """The ``event_id`` of event ``i`` of ``stream(seed, connector=connector, part=part)``:
    a reader can follow a producer's events from its count alone, without being told ids."""
    return str(uuid.uuid5(_NS, f"{seed}:{connector}:{part}:{i}"))


def prefill(
    n: int,
    *,
    seed: int,
    connector: str = "bench",
    duplicate_share: float = 0.02,
    zoom: int = 12,
) -> Workload:
    """``n`` messages from ``stream``: distinct events plus ``duplicate_share`` re-sends of
    some of them, shuffled (a pre-filled topic as a flaky connector would leave it)."""
    rng = random.Random(seed)
    n_dup = round(n * duplicate_share)
    valid = list(itertools.islice(stream(seed, connector=connector, zoom=zoom), n - n_dup))
    w = Workload(duplicates=n_dup)
    w.valid_ids = {orjson.loads(value)["event_id"] for _, value in valid}
    w.messages = valid + [valid[rng.randrange(len(valid))] for _ in range(n_dup)]
    rng.shuffle(w.messages)
    return w
