"""Real-shaped event streams built from the real SFPD incidents in ``data/sf/``.

Every event sits at a real incident's place and time; ids are derived from a seed, so a
workload is reproducible. Invalid messages of each kind fusion must dead-letter can be mixed in.
"""

from __future__ import annotations

import csv
import random
import uuid
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
    inc: Incident, event_id: uuid.UUID, *, community: str | None = "row", lon: float | None = None
) -> bytes:
    doc: dict[str, object] = {
        "event_id": str(event_id),
        "source": {"system": "sfpd-incidents", "connector": "bench"},
        "kind": "incident",
        "category": "Security",
        "severity": "Moderate",
        "event_type": "other",
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
