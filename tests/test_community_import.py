"""``hub community import`` against a PostGIS database of its own (the session database is
shared with tests that import the same neighbourhoods)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from hub.cli.main import app
from hub.settings import Settings, get_settings
from hub.store.migrate import drop_database, upgrade

ROOT = Path(__file__).resolve().parents[1]
HOODS = ROOT / "data" / "sf" / "sf_analysis_neighborhoods.geojson"


@pytest.fixture(scope="module")
def own_database(database_url: str) -> Iterator[Settings]:
    server = database_url.rsplit("/", 1)[0]
    settings = Settings(database_url=f"{server}/hub_import_{uuid.uuid4().hex[:10]}")
    upgrade(settings)
    try:
        yield settings
    finally:
        drop_database(settings)


def _import(
    settings: Settings, path: Path, id_field: str = "nhood", name_field: str = "nhood"
) -> tuple[int, str]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app,
            ["community", "import", str(path), "--id-field", id_field, "--name-field", name_field],
            env={"HUB_DATABASE_URL": settings.database_url, "COLUMNS": "200"},
        )
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


def _row(output: str, outcome: str) -> list[str]:
    line = next(li for li in output.splitlines() if f" {outcome} " in li)
    return [cell.strip() for cell in line.split("│") if cell.strip()]


def _count(settings: Settings) -> int:
    with psycopg.connect(settings.sync_database_url) as conn:
        row = conn.execute("SELECT count(*) FROM community").fetchone()
    return int(row[0]) if row else 0


def test_import_then_reimport_updates(own_database: Settings) -> None:
    code, output = _import(own_database, HOODS)
    assert code == 0, output
    assert _row(output, "inserted")[:2] == ["inserted", "41"]
    assert _row(output, "updated")[:2] == ["updated", "0"]
    assert _count(own_database) == 41

    code, output = _import(own_database, HOODS)
    assert code == 0, output
    assert _row(output, "inserted")[:2] == ["inserted", "0"]
    assert _row(output, "updated")[:2] == ["updated", "41"]
    assert _count(own_database) == 41  # updated in place, never duplicated


def _feature(cid: str, geometry: dict[str, object]) -> dict[str, object]:
    return {
        "type": "Feature",
        "properties": {"code": cid, "label": f"Area {cid}"},
        "geometry": geometry,
    }


def test_bowtie_repaired_and_linestring_skipped(own_database: Settings, tmp_path: Path) -> None:
    bowtie = [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]  # self-intersecting
    square = [[[2.0, 0.0], [3.0, 0.0], [3.0, 1.0], [2.0, 1.0], [2.0, 0.0]]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            _feature("bowtie", {"type": "Polygon", "coordinates": bowtie}),
            _feature("square", {"type": "Polygon", "coordinates": square}),
            _feature("road", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
        ],
    }
    path = tmp_path / "areas.geojson"
    path.write_text(json.dumps(doc))

    code, output = _import(own_database, path, "code", "label")
    assert code == 0, output
    assert _row(output, "inserted")[:2] == ["inserted", "2"]
    repaired = _row(output, "repaired")
    assert repaired[1] == "1" and "bowtie" in repaired[2] and "Self-intersection" in repaired[2]
    skipped = _row(output, "skipped")
    assert skipped[1] == "1" and "road" in skipped[2] and "LineString" in skipped[2]
    with psycopg.connect(own_database.sync_database_url) as conn:
        row = conn.execute(
            "SELECT ST_IsValid(geom), ST_Area(geom), repaired FROM community WHERE id = 'bowtie'"
        ).fetchone()
    assert row is not None and row[0] is True and row[2] is True
    assert row[1] == pytest.approx(0.5)  # the two triangles of the bow-tie, nothing lost


def test_unreadable_file_exits_non_zero(own_database: Settings, tmp_path: Path) -> None:
    code, output = _import(own_database, tmp_path / "absent.geojson")
    assert code == 2 and "not a readable GeoJSON file" in output
    broken = tmp_path / "broken.geojson"
    broken.write_text("{not json")
    code, _ = _import(own_database, broken)
    assert code == 2
    points = tmp_path / "point.geojson"
    points.write_text(json.dumps({"type": "Point", "coordinates": [0, 0]}))
    code, output = _import(own_database, points)
    assert code == 2 and "expected a FeatureCollection" in output


def test_parts_sharing_an_id_are_merged_in_the_table(
    own_database: Settings, tmp_path: Path
) -> None:
    west = [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]
    island = [[[5.0, 0.0], [6.0, 0.0], [6.0, 1.0], [5.0, 1.0], [5.0, 0.0]]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            _feature("isles", {"type": "Polygon", "coordinates": west}),
            _feature("isles", {"type": "Polygon", "coordinates": island}),
        ],
    }
    path = tmp_path / "isles.geojson"
    path.write_text(json.dumps(doc))
    code, output = _import(own_database, path, "code", "label")
    assert code == 0, output
    assert _row(output, "merged") == ["merged", "1", "isles: 2 parts"]
    assert _row(output, "skipped")[:2] == ["skipped", "0"]
    with psycopg.connect(own_database.sync_database_url) as conn:
        row = conn.execute(
            "SELECT ST_NumGeometries(geom), ST_Area(geom) FROM community WHERE id = 'isles'"
        ).fetchone()
    assert row == (2, pytest.approx(2.0))
