"""``openapi.yaml`` at the root is the app's document, and the document says what the API does."""

from __future__ import annotations

from typing import Any

import yaml
from typer.testing import CliRunner

from hub.api.factory import create_app
from hub.cli.main import app as cli
from hub.settings import Settings
from tests.conftest import ROOT

OPENAPI = ROOT / "openapi.yaml"


def app_document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def test_openapi_yaml_is_up_to_date() -> None:
    assert OPENAPI.exists(), "openapi.yaml is missing: run `make openapi`"
    checked_in = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    assert checked_in == app_document(), (
        "openapi.yaml differs from the app's OpenAPI document: run `make openapi` and commit it"
    )


def test_cli_prints_the_document() -> None:
    result = CliRunner().invoke(cli, ["api", "openapi"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == app_document()


def test_errors_are_documented_as_problems_never_422() -> None:
    doc = app_document()
    problem = {"$ref": "#/components/schemas/Problem"}
    events = doc["paths"]["/v1/events"]["get"]["responses"]
    assert events["400"]["content"]["application/problem+json"]["schema"] == problem
    one = doc["paths"]["/v1/events/{event_id}"]["get"]["responses"]
    assert one["404"]["content"]["application/problem+json"]["schema"] == problem
    collection = {"$ref": "#/components/schemas/EventCollection"}
    assert events["200"]["content"]["application/geo+json"]["schema"] == collection
    assert "Problem" in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], f"{method.upper()} {path} documents 422"


def test_cli_refuses_a_public_bind() -> None:
    result = CliRunner().invoke(cli, ["api", "run", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "loopback" in result.output
