"""``hub fusion recluster``: the stored picture partitioned again, through the real pipeline's
tables: after an upgrade from the chaining model, and after the rules changed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from hub.fusion.incident.reference import cluster
from hub.fusion.recluster import recluster
from hub.fusion.rules import SHIPPED, Rules
from hub.settings import Settings
from hub.store.db import connect
from hub.store.stats import orphan_reports
from tests.test_incidents import (  # noqa: F401 (fixtures)
    EAST,
    GEOD,
    WEST,
    _reports,
    border,
    incidents_of,
    own_day,
    report,
    run,
)

ROOT = Path(__file__).resolve().parents[1]


def _assigned(settings: Settings, docs: list[dict[str, Any]]) -> dict[str, uuid.UUID]:
    return {e: row["id"] for e, row in incidents_of(settings, docs).items()}


def _model(docs: list[dict[str, Any]], rules: Rules) -> dict[str, uuid.UUID]:
    return {str(k): v for k, v in cluster(_reports(docs), rules).items()}


def _chain(settings: Settings, docs: list[dict[str, Any]]) -> uuid.UUID:
    """What the chaining model stored: every report in one incident (the first one's), its
    neighbourhood named after it (as migration 0008 names the old incidents)."""
    ids = [d["event_id"] for d in docs]
    before = _assigned(settings, docs)
    first = before[ids[0]]
    with connect(settings) as conn:
        conn.execute(
            "UPDATE incident_report SET incident_id = %s, component_id = %s"
            " WHERE event_id = ANY(%s::uuid[])",
            (first, first, ids),
        )
        others = [i for i in set(before.values()) if i != first]
        conn.execute("DELETE FROM incident WHERE id = ANY(%s)", (others,))
    return first


def test_an_upgraded_chain_is_cut_as_the_model_cuts_it(
    hub_settings: Settings,
    sf_communities: list[str],
    border: Any,  # noqa: F811 (the fixture)
) -> None:
    west, east = border
    azimuth = GEOD.inv(west[0], west[1], east[0], east[1])[0]
    far = GEOD.fwd(east[0], east[1], azimuth, 250)[:2]  # 330 m from west: beyond its reach
    farther = GEOD.fwd(far[0], far[1], azimuth, 60)[:2]
    docs = [
        report(west, WEST, reporter="ann"),
        report(east, EAST, reporter="ben", minutes=4),
        report(far, EAST, reporter="cid", minutes=6),
        report(farther, EAST, reporter="dee", minutes=7),
    ]
    run(hub_settings, docs)
    expected = _model(docs, Rules.load())
    assert _assigned(hub_settings, docs) == expected
    assert len(set(expected.values())) == 2

    chained = _chain(hub_settings, docs)
    assert set(_assigned(hub_settings, docs).values()) == {chained}
    with connect(hub_settings) as conn:
        result = recluster(conn, hub_settings)
    assert _assigned(hub_settings, docs) == expected
    assert result.renamed == 0 and result.changed == 2  # the chain's id is the seed's: kept
    found = incidents_of(hub_settings, docs)
    assert found[docs[2]["event_id"]]["reports"] == 2
    assert found[docs[0]["event_id"]]["reports"] == 2
    with connect(hub_settings) as conn:
        assert orphan_reports(conn) == (0, 0)
        again = recluster(conn, hub_settings)
    assert (again.changed, again.renamed) == (0, 0)  # a function of the reports: no change


def test_changed_rules_repartition_through_the_command(
    hub_settings: Settings,
    sf_communities: list[str],
    border: Any,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    west, east = border  # 80 m apart: one fire under the shipped rules (300 m)
    docs = [report(west, WEST, reporter="eve"), report(east, EAST, reporter="fay", minutes=2)]
    run(hub_settings, docs)
    assert len(set(_assigned(hub_settings, docs).values())) == 1
    tight = tmp_path / "tight.toml"
    tight.write_text(
        SHIPPED.read_text().replace(
            "distance_m = 300  # the issue's figure", "distance_m = 50  # tight"
        )
    )
    rules = Rules.load(tight)
    assert rules.rule("fire").distance_m == 50
    env = {
        "HUB_DATABASE_URL": hub_settings.database_url,
        "HUB_CORRELATION_RULES": str(tight),
        "PATH": "/usr/bin:/bin",
    }
    try:
        out = subprocess.run(
            [sys.executable, "-m", "hub", "fusion", "recluster", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["renamed"] == 0 and result["changed"] >= 2
        assert _assigned(hub_settings, docs) == _model(docs, rules)
        assert len(set(_assigned(hub_settings, docs).values())) == 2
    finally:  # the database is the session's: back to the shipped rules for the other tests
        with connect(hub_settings) as conn:
            recluster(conn, hub_settings)
    assert len(set(_assigned(hub_settings, docs).values())) == 1
