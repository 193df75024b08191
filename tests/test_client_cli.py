"""``hub client create|list|revoke`` through typer's CliRunner, against the session database."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner, Result

from hub.cli.main import app as cli
from hub.settings import Settings, get_settings
from hub.store.db import get_engine
from tests.auth_helpers import (
    HOODS,
    auth_settings,
    bearer,
    hoods,
    http,
    new_ec_key,
    token_for,
)

__all__ = ["auth_settings", "hoods", "http"]  # fixtures


def run(settings: Settings, *args: str) -> Result:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            cli,
            ["client", *args],
            env={"HUB_DATABASE_URL": settings.database_url, "COLUMNS": "200"},
        )
    finally:
        get_settings.cache_clear()


def created(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return document


@pytest.fixture(scope="module")
def mission_area(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hoods = json.loads(HOODS.read_text(encoding="utf-8"))
    mission = next(f for f in hoods["features"] if f["properties"]["nhood"] == "Mission")
    path = tmp_path_factory.mktemp("cli") / "mission.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [mission]}))
    return path


def test_create_each_kind(
    auth_settings: Settings, hoods: list[str], mission_area: Path, tmp_path: Path
) -> None:
    community = created(
        run(auth_settings, "create", "--kind", "community", "--community", "Mission", "--json")
    )
    department = created(
        run(
            auth_settings,
            "create",
            "--kind",
            "department",
            "--jurisdiction",
            str(mission_area),
            "--categories",
            "Fire,Health",
            "--name",
            "Mission fire station",
            "--json",
        )
    )
    analyst = created(run(auth_settings, "create", "--kind", "analyst", "--json"))
    admin = created(run(auth_settings, "create", "--kind", "admin", "--scopes", "admin", "--json"))
    jwk = tmp_path / "client.jwk.json"
    jwk.write_text(json.dumps(new_ec_key().as_dict(private=False)))
    keyed = created(run(auth_settings, "create", "--kind", "analyst", "--jwk", str(jwk), "--json"))
    assert keyed["client_secret"] is None

    made = [community, department, analyst, admin]
    assert all(len(c["client_secret"]) >= 40 for c in made)
    ids = [c["client_id"] for c in [*made, keyed]]
    with get_engine(auth_settings).connect() as conn:
        rows = {
            r.client_id: r
            for r in conn.execute(
                text(
                    "SELECT client_id, kind, name, secret_hash, community_id, categories, scopes, "
                    "ST_GeometryType(jurisdiction) AS area FROM oauth_client "
                    "WHERE client_id = ANY(:ids)"
                ),
                {"ids": ids},
            )
        }
    assert rows[community["client_id"]].community_id == "Mission"
    dep = rows[department["client_id"]]
    assert dep.area == "ST_MultiPolygon" and dep.categories == ["Fire", "Health"]
    assert dep.name == "Mission fire station"
    assert sorted(rows[department["client_id"]].scopes) == [
        "incidents:read",
        "incidents:verify",
        "resources:read",
        "risk:read",
        "subscriptions:write",
    ]
    assert rows[admin["client_id"]].scopes == ["admin"]
    for c in made:  # stored hashed, never as given
        stored = rows[c["client_id"]].secret_hash
        assert stored.startswith("scrypt$") and c["client_secret"] not in stored
    assert rows[keyed["client_id"]].secret_hash is None


def test_human_output_shows_the_secret_once(auth_settings: Settings) -> None:
    result = run(auth_settings, "create", "--kind", "analyst")
    assert result.exit_code == 0, result.output
    secret_line = next(li for li in result.stdout.splitlines() if li.startswith("client_secret:"))
    secret = secret_line.split(":", 1)[1].strip()
    assert result.stdout.count(secret) == 1 and "cannot be shown again" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "community", "--community", "Atlantis"], "does not exist"),
        (["--kind", "community"], "--community is required"),
        (["--kind", "analyst", "--community", "Mission"], "only for, a community"),
        (["--kind", "department"], "--jurisdiction is required"),
        (["--kind", "analyst", "--scopes", "events:write"], "may not hold events:write"),
        (["--kind", "analyst", "--categories", "Fire"], "only narrow a department"),
        (["--kind", "sheriff"], "kind: one of"),
    ],
)
def test_create_refuses(
    auth_settings: Settings, hoods: list[str], args: list[str], message: str
) -> None:
    result = run(auth_settings, "create", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_create_refuses_bad_files(auth_settings: Settings, tmp_path: Path) -> None:
    point = tmp_path / "point.geojson"
    point.write_text(json.dumps({"type": "Point", "coordinates": [-122.4, 37.7]}))
    bowtie = tmp_path / "bowtie.geojson"
    ring = [[-122.4, 37.7], [-122.3, 37.8], [-122.3, 37.7], [-122.4, 37.8], [-122.4, 37.7]]
    bowtie.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    private = tmp_path / "private.jwk.json"
    private.write_text(json.dumps(new_ec_key().as_dict(private=True)))
    rsa = tmp_path / "rsa.jwk.json"
    rsa.write_text(json.dumps({"kty": "RSA", "n": "AQAB", "e": "AQAB"}))
    for args, message in [
        (["--kind", "department", "--jurisdiction", str(point)], "not a (multi)polygon"),
        (["--kind", "department", "--jurisdiction", str(bowtie)], "invalid polygon"),
        (["--kind", "department", "--jurisdiction", str(tmp_path / "nope")], "cannot read"),
        (
            ["--kind", "department", "--jurisdiction", str(point), "--categories", "Fires"],
            "not a (multi)polygon",
        ),
        (["--kind", "analyst", "--jwk", str(private)], "PRIVATE key"),
        (["--kind", "analyst", "--jwk", str(rsa)], "only EC P-256"),
    ]:
        result = run(auth_settings, "create", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)


def test_categories_must_be_cap_words(auth_settings: Settings, mission_area: Path) -> None:
    args = ["--kind", "department", "--jurisdiction", str(mission_area)]
    result = run(auth_settings, "create", *args, "--categories", "Fire,Fires")
    assert result.exit_code == 2 and "Fires not CAP" in " ".join(result.output.split())


def test_list_shows_no_secrets(auth_settings: Settings) -> None:
    client = created(run(auth_settings, "create", "--kind", "analyst", "--json"))
    result = run(auth_settings, "list")
    assert result.exit_code == 0, result.output
    assert client["client_id"] in result.stdout
    assert client["client_secret"] not in result.stdout and "scrypt" not in result.stdout


def test_revoke_makes_an_issued_token_fail(auth_settings: Settings, http: TestClient) -> None:
    client = created(
        run(auth_settings, "create", "--kind", "community", "--community", "Mission", "--json")
    )
    token = token_for(http, client["client_id"], client["client_secret"])
    assert http.get("/test/me", headers=bearer(token)).status_code == 200

    result = run(auth_settings, "revoke", client["client_id"])
    assert result.exit_code == 0, result.output
    time.sleep(auth_settings.auth_client_cache_s + 0.05)  # the documented revocation lag
    response = http.get("/test/me", headers=bearer(token))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    listing = run(auth_settings, "list").stdout
    row = next(li for li in listing.splitlines() if client["client_id"] in li)
    assert row.rstrip(" │").split("│")[-1].strip()  # the revoked column is filled

    again = run(auth_settings, "revoke", client["client_id"])
    assert again.exit_code == 1 and "no active client" in again.output
