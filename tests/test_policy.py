"""The access policy compiled to SQL, checked row by row against a shapely reference on real
SF events that went through the real pipeline (broker + fusion + PostGIS)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point, shape
from shapely.ops import unary_union
from sqlalchemy import select, text
from sqlmodel import Session

from hub.access.principal import DEFAULT_SCOPES, Kind, Principal
from hub.access.reach import event_reach
from hub.access.session import set_principal
from hub.audit.chain import AuditRecord
from hub.audit.store import append
from hub.auth import keys
from hub.bench.workload import Incident, event_json, sf_incidents
from hub.settings import Settings
from hub.store.db import api_engine, connect, get_engine
from hub.store.queries import EVENT, neighbour_zone
from tests.auth_helpers import register
from tests.conftest import DATA
from tests.fusion_helpers import fusion_stats, produce, running_worker, wait_until

N = 3000
_TO_UTM = Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)


def utm(geom: Any) -> Any:
    """The geometry in UTM zone 10N (metres), for a distance reference independent of PostGIS."""
    return shapely.transform(
        geom, lambda xy: np.column_stack(_TO_UTM.transform(xy[:, 0], xy[:, 1]))
    )


def _event(inc: Incident, i: int) -> bytes:
    doc = orjson.loads(event_json(inc, uuid.uuid5(uuid.NAMESPACE_URL, f"policy:{i}")))
    doc["source"]["reporter"] = f"reporter-{i}"
    doc["category"] = "Fire" if i % 2 else "Security"
    return orjson.dumps(doc)


@pytest.fixture(scope="module")
def stored(base_settings: Settings, sf_communities: list[str]) -> dict[str, dict[str, Any]]:
    """N real incidents stored through fusion; {event_id: facts for the reference}."""
    settings = base_settings.model_copy(
        update={
            "events_topic": "policy.events",
            "dlq_topic": "policy.dlq",
            "consumer_group": "policy",
            "topic_partitions": 2,
            "fusion_session_timeout_ms": 6000,
            "fusion_max_poll_interval_ms": 6000,
            "fusion_metrics_port": 0,
            "fusion_incidents": True,  # the incident tables get rows too (the RLS test)
        },
    )
    from hub.bus.kafka import ensure_topics

    ensure_topics(settings)
    incidents = sf_incidents()[:N]
    messages = [(b"k", _event(inc, i)) for i, inc in enumerate(incidents)]
    produce(settings, messages)
    with running_worker(settings):
        wait_until(lambda: fusion_stats(settings)["consumed"] == N, 120, "policy events stored")
    facts = {}
    for (_key, value), inc in zip(messages, incidents, strict=True):
        doc = json.loads(value)
        facts[doc["event_id"]] = {
            "point": Point(inc.lon, inc.lat),
            "community": inc.community,
            "category": doc["category"],
            "reporter": doc["source"]["reporter"],
        }
    return facts


def _neighbourhoods() -> dict[str, Any]:
    doc = json.loads((DATA / "sf_analysis_neighborhoods.geojson").read_text())
    return {f["properties"]["nhood"]: shape(f["geometry"]) for f in doc["features"]}


def _visible(settings: Settings, principal: Principal, ids: list[str]) -> dict[str, str | None]:
    with Session(get_engine(settings)) as session:
        zone = None
        if principal.kind == "community" and principal.community_id:
            zone = neighbour_zone(session, principal.community_id, 2000.0)
        policy = event_reach(principal, zone)
        rows = session.execute(
            select(EVENT.c.event_id, policy.reporter.label("reporter"))
            .where(EVENT.c.event_id.in_([uuid.UUID(i) for i in ids]))
            .where(policy.where)
        ).all()
    return {str(r.event_id): r.reporter for r in rows}


def _principal(kind: Kind, **kw: Any) -> Principal:
    kw.setdefault("subject", f"test-{kind}")
    return Principal(kind=kind, scopes=DEFAULT_SCOPES[kind], issuer="test", **kw)


def audit_record(subject: str) -> AuditRecord:
    return AuditRecord(
        at=datetime.now(UTC),
        method="GET",
        endpoint="/v1/events",
        path="/v1/events",
        params={"path": {}, "query": {}},
        status=200,
        rows=0,
        duration_ms=Decimal("0.1"),
        subject=subject,
    )


def test_admin_and_analyst_see_the_region_analyst_without_reporters(
    base_settings: Settings, stored: dict[str, dict[str, Any]]
) -> None:
    ids = sorted(stored)
    admin = _visible(base_settings, _principal("admin"), ids)
    assert admin == {i: stored[i]["reporter"] for i in ids}
    analyst = _visible(base_settings, _principal("analyst"), ids)
    assert set(analyst) == set(ids) and set(analyst.values()) == {None}


@pytest.mark.parametrize("categories", [None, frozenset({"Fire"})])
def test_department_sees_its_jurisdiction_and_categories(
    base_settings: Settings, stored: dict[str, dict[str, Any]], categories: frozenset[str] | None
) -> None:
    polys = _neighbourhoods()
    area = unary_union([polys["Mission"], polys["Bernal Heights"], polys["Noe Valley"]])
    dept = _principal("department", jurisdiction_wkb=shapely.to_wkb(area), categories=categories)
    got = _visible(base_settings, dept, sorted(stored))
    expected = {
        i: f["reporter"]
        for i, f in stored.items()
        if area.intersects(f["point"]) and (categories is None or f["category"] in categories)
    }
    assert expected, "the reference must select something"
    assert got == expected


def test_community_sees_own_rows_and_neighbours_within_2km_without_their_reporters(
    base_settings: Settings, stored: dict[str, dict[str, Any]]
) -> None:
    own = "Mission"
    boundary = utm(_neighbourhoods()[own])
    got = _visible(base_settings, _principal("community", community_id=own), sorted(stored))
    near_edge = 0
    for i, f in stored.items():
        distance = boundary.distance(utm(f["point"]))
        if f["community"] != own and abs(distance - 2000) < 10:
            near_edge += 1  # geodesic buffer vs UTM distance: too close to call
            continue
        if f["community"] == own:
            assert got.get(i, "missing") == f["reporter"], f"own row {i}"
        elif distance <= 2000:
            assert i in got and got[i] is None, f"neighbour row {i} at {distance:.0f} m"
        else:
            assert i not in got, f"far row {i} at {distance:.0f} m is visible"
    neighbours = sum(1 for i in got if stored[i]["community"] != own)
    assert neighbours > 0 and len(got) < len(stored)
    assert near_edge < 20


def test_unknown_or_incomplete_principals_see_nothing(
    base_settings: Settings, stored: dict[str, dict[str, Any]]
) -> None:
    ids = sorted(stored)
    assert _visible(base_settings, _principal("community", community_id="Atlantis"), ids) == {}
    assert _visible(base_settings, _principal("department"), ids) == {}


# --- row-level security: the second wall ---------------------------------------------------


def _hub_tables(session: Session) -> list[str]:
    """Every table of the hub (the catalogue, not a list that a new migration could outgrow)."""
    query = text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename NOT IN ('spatial_ref_sys', 'alembic_version') ORDER BY tablename"
    )
    return list(session.execute(query).scalars())


def _fill_auth_and_audit_tables(settings: Settings) -> None:
    """At least one row in every table, so that 0 rows for the API role proves something (the
    fixture's events went through fusion: events, incidents, reports, timelines exist)."""
    registered, _ = register(settings, kind="analyst")
    with get_engine(settings).begin() as conn:
        keys.active_key(conn, settings)
        conn.execute(
            text("INSERT INTO used_jti VALUES (:c, :j, now() + interval '1 hour')"),
            {"c": registered.client_id, "j": uuid.uuid4().hex},
        )
    with connect(settings, autocommit=True) as conn:
        append(conn, audit_record(subject=registered.client_id))
        # merges are rare in the fixture's events: an alias of some incident
        conn.execute(
            "INSERT INTO incident_alias (alias, incident_id)"
            " SELECT gen_random_uuid(), id FROM incident LIMIT 1"
        )
        # and a row of each part of the picture the fixture's reports do not reach (a test
        # picture of its own: no other test looks there)
        for statement in _PICTURE_ROWS:
            conn.execute(statement)


_PICTURE_ROWS = (
    "INSERT INTO incident_timeline (incident_id, at, what)"
    " SELECT id, now(), 'policy-test' FROM incident LIMIT 1",
    "INSERT INTO picture_clock VALUES ('test', now()) ON CONFLICT DO NOTHING",
    # a reference to an event that never comes: nothing of it reaches an incident
    "INSERT INTO event_ref SELECT gen_random_uuid(), event_id FROM event LIMIT 1",
    "INSERT INTO sensor_state VALUES ('test', 'policy-test/sensor', 'water_level', 'x',"
    " 'normal', 0.5, now(), gen_random_uuid(), NULL) ON CONFLICT DO NOTHING",
    "INSERT INTO risk_cell SELECT 'test', 'policy-test/cell', c.id, 1.0, 'yellow', now(), 1,"
    " now(), c.geom, 1 FROM community c LIMIT 1 ON CONFLICT DO NOTHING",
    "INSERT INTO resource_balance SELECT c.id, 'test', 'policy_test', 'l', 'available', 1.0,"
    " gen_random_uuid(), now(), ST_PointOnSurface(c.geom), 1 FROM community c LIMIT 1"
    " ON CONFLICT DO NOTHING",
    # an alert the API issued for some incident, and a cancel waiting for a report never sent
    "INSERT INTO cap_alert (incident_id, revision, msg_type, sent, digest)"
    " SELECT id, 1, 'Alert', now(), 'policy-test' FROM incident LIMIT 1 ON CONFLICT DO NOTHING",
    "INSERT INTO pending_cancel SELECT gen_random_uuid(), event_id FROM event LIMIT 1",
    # a webhook subscription with its secret and one delivery attempt
    "INSERT INTO webhook_subscription (id, subject, issuer, kind, scopes, url, types,"
    " cursor_seq) VALUES ('00000000-0000-4000-8000-00000000feed', 'policy-test', 'test',"
    " 'admin', '{}', 'https://example.org/hook', '{incident}', 0) ON CONFLICT DO NOTHING",
    "INSERT INTO webhook_secret VALUES ('00000000-0000-4000-8000-00000000feed', 'whsec_x')"
    " ON CONFLICT DO NOTHING",
    "INSERT INTO webhook_delivery (subscription_id, seq, webhook_id, attempt, outcome,"
    " duration_ms) VALUES ('00000000-0000-4000-8000-00000000feed', 1, 'msg_x', 1, 'failed', 1)",
)


def test_api_role_without_principal_sees_no_row_of_any_hub_table(
    base_settings: Settings, stored: dict[str, dict[str, Any]]
) -> None:
    _fill_auth_and_audit_tables(base_settings)
    with Session(get_engine(base_settings)) as owner:
        tables = _hub_tables(owner)
        counts = {t: owner.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}
    assert {"event", "oauth_client", "signing_key", "audit_log", "audit_head"} <= set(tables)
    assert all(counts.values()), counts
    for purpose in (None, "authenticate", "audit"):
        with Session(api_engine(base_settings, purpose)) as api:
            seen = {t: _count_as_api(api, t) for t in tables}
        # each purpose opens exactly its own tables, and no hub data
        opened = {None: set(), "authenticate": AUTH_TABLES, "audit": AUDIT_TABLES}[purpose]
        assert {t for t, n in seen.items() if n} == opened, purpose


def _count_as_api(api: Session, table: str) -> int:
    """The rows of ``table`` the API role reads; 0 for a table it may not read at all
    (``webhook_secret``: written by the API, read only by the notifier), which is stronger."""
    readable = api.execute(
        text("SELECT has_table_privilege(current_user, :t, 'SELECT')"), {"t": table}
    ).scalar()
    return int(api.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0) if readable else 0


AUTH_TABLES = {"oauth_client", "signing_key", "used_jti"}
AUDIT_TABLES = {"audit_log", "audit_head"}


def test_audit_trail_rows_as_api_role_are_the_principals_own(base_settings: Settings) -> None:
    mine, theirs = f"dept-{uuid.uuid4().hex[:6]}", f"dept-{uuid.uuid4().hex[:6]}"
    with connect(base_settings, autocommit=True) as conn:
        for subject in (mine, theirs, mine):
            append(conn, audit_record(subject=subject))
    department = _principal("department", subject=mine)
    admin = _principal("admin")
    query = text("SELECT subject FROM audit_log WHERE subject IN (:a, :b)")
    for principal, expected in ((department, [mine, mine]), (admin, [mine, mine, theirs])):
        with Session(api_engine(base_settings)) as api:
            set_principal(api, principal)
            got = sorted(api.execute(query, {"a": mine, "b": theirs}).scalars())
        assert got == sorted(expected), principal.kind


@pytest.mark.parametrize("kind", ["admin", "analyst", "department", "community"])
def test_raw_sql_as_api_role_sees_exactly_the_policy_rows(
    base_settings: Settings, stored: dict[str, dict[str, Any]], kind: Kind
) -> None:
    polys = _neighbourhoods()
    extra: dict[str, Any] = {
        "department": {
            "jurisdiction_wkb": shapely.to_wkb(polys["Tenderloin"]),
            "categories": frozenset({"Fire"}),
        },
        "community": {"community_id": "Mission"},
    }.get(kind, {})
    principal = _principal(kind, **extra)
    ids = sorted(stored)
    expected = set(_visible(base_settings, principal, ids))
    with Session(api_engine(base_settings)) as api:
        zone = None
        if principal.community_id:
            set_principal(api, principal)  # its own boundary is readable once it is set
            zone = neighbour_zone(api, principal.community_id, 2000.0)
        set_principal(api, principal, zone)
        rows = api.execute(
            text("SELECT event_id::text FROM event WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": ids},
        ).scalars()
        seen = set(rows)
        offsets = api.execute(text("SELECT count(*) FROM consumer_offset")).scalar_one()
    assert seen == expected and expected
    assert (offsets > 0) == (kind == "admin")
