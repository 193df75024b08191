"""One error root: every error the hub raises on purpose is a HubError, keeps the builtin base
its callers catch, and maps to one HTTP status; configuration files suggest the key meant."""

from __future__ import annotations

import pytest

from connectors.csv_source import SourceError
from connectors.mapping import MappingError
from connectors.outbox import OutboxBusy
from connectors.publisher import DeliveryError
from connectors.registry import UnknownConnector
from connectors.run import ConnectorConfigError
from geo.geojson import GeoJSONError
from hub.api.errors import BadRequest, Conflict, Forbidden, NotFound, status_of
from hub.api.ingest import ContentTooLarge
from hub.api.producer import BrokerUnavailable
from hub.auth.clients import ClientError
from hub.auth.keys import SigningKeyError
from hub.auth.tokens import InvalidToken, NoRole
from hub.errors import HubError
from hub.fusion.risk import RiskConfigError
from hub.fusion.rules import Rules, RulesError
from hub.fusion.thresholds import ThresholdsError
from hub.stack.local import StackError
from hub.store.grids import GridImportError

# Each error and the builtin base callers may still catch it by.
ERRORS: list[tuple[type[Exception], type[Exception]]] = [
    (ClientError, ValueError),
    (RulesError, ValueError),
    (ThresholdsError, ValueError),
    (RiskConfigError, ValueError),
    (GridImportError, ValueError),
    (GeoJSONError, ValueError),
    (MappingError, ValueError),
    (ConnectorConfigError, ValueError),
    (UnknownConnector, KeyError),
    (StackError, RuntimeError),
    (DeliveryError, RuntimeError),
    (SourceError, RuntimeError),
    (OutboxBusy, RuntimeError),
    (InvalidToken, Exception),
    (NoRole, Exception),
    (SigningKeyError, Exception),
    (BrokerUnavailable, Exception),
]


@pytest.mark.parametrize(("error", "builtin"), ERRORS)
def test_every_error_is_a_hub_error_and_keeps_its_builtin_base(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, HubError) and issubclass(error, builtin)


def test_the_status_of_an_error_comes_from_its_kind() -> None:
    statuses = {e: status_of(e("x")) for e in (BadRequest, Forbidden, NotFound, Conflict)}
    assert statuses == {BadRequest: 400, Forbidden: 403, NotFound: 404, Conflict: 409}
    assert status_of(ContentTooLarge("x")) == 413 and ContentTooLarge("x").status_code == 413
    assert status_of(BrokerUnavailable(5)) == 503
    assert status_of(InvalidToken("x")) == 401 and status_of(NoRole("x")) == 403
    assert status_of(RulesError("x")) is None  # the server's own mistake: a 500, never shown


def test_a_mistyped_key_gets_a_suggestion() -> None:
    doc = {"defaults": {"distance_m": 100, "window": 10, "correlate": True, "windw": 3}}
    with pytest.raises(RulesError, match=r"x.toml: defaults.windw: unknown key \(did you mean"):
        Rules.parse(doc, "x.toml")
