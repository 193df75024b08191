"""The one place that builds the API application."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import hub
from hub.access.session import ZoneCache
from hub.api import (
    audit,
    communities,
    decisions,
    events,
    feeds,
    health,
    incidents,
    ingest,
    limits,
    metrics,
    oauth,
    resources,
    risk,
    stream,
    subscriptions,
    warnings,
)
from hub.api.audit_middleware import install_audit
from hub.api.errors import Problem, add_exception_handlers
from hub.auth.server import HubAuthorizationServer
from hub.auth.tokens import TokenVerifier
from hub.settings import Settings, get_settings

DESCRIPTION = """\
The shared risk picture of the hub: events reported by community systems, fused, as GeoJSON.

Every error is an RFC 9457 `application/problem+json` document. Timestamps are RFC 3339;
the API writes UTC with `Z`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; nothing is connected until a request needs it."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Community Risk Hub API",
        version=hub.__version__,
        description=DESCRIPTION,
        # operationIds from the route names (list_events, ...), readable in generated clients
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.settings = settings
    app.state.metrics = metrics.ApiMetrics()
    # Built now (no connection yet): a bad trusted-issuer setting fails at start-up.
    app.state.token_verifier = TokenVerifier(settings)
    app.state.authorization_server = HubAuthorizationServer(settings)
    app.state.zones = ZoneCache()
    add_exception_handlers(app)
    app.state.rate_limiter = limits.RateLimiter(
        settings.rate_limit_per_s, settings.rate_limit_burst
    )
    limits.install_body_limit(app, settings)  # inside the metrics: its 413s are counted
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)
    routers = (
        events.router,
        incidents.router,
        decisions.router,
        warnings.router,
        feeds.router,
        risk.router,
        resources.router,
        stream.router,
        subscriptions.router,
        ingest.router,
        communities.router,
        audit.router,
        health.router,
        metrics.router,
        oauth.router,
    )
    for router in routers:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    install_audit(app, settings)  # last: the outermost middleware also records 401/429 answers
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, corrected: errors are problem+json 400s, never 422s."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=[
                {"name": "events", "description": "The fused event log"},
                {
                    "name": "incidents",
                    "description": "Reports of the same incident fused into one, with provenance",
                },
                {
                    "name": "risk",
                    "description": "Risk per grid cell: a score from the open incidents and a "
                    "four-colour level that does not flicker",
                },
                {
                    "name": "warnings",
                    "description": "Sensor thresholds crossed and alerts received, flagged to "
                    "the neighbouring communities",
                },
                {
                    "name": "resources",
                    "description": "Communities' stock and needs, and needs matched to the "
                    "nearest surplus",
                },
                {
                    "name": "stream",
                    "description": "The picture's changes as they happen (Server-Sent Events)",
                },
                {"name": "communities", "description": "Communities and their activity"},
                {"name": "audit", "description": "Who read and wrote what: a principal's trail"},
                {"name": "health", "description": "Probes and metrics"},
                {"name": "oauth", "description": "Access tokens and the keys that verify them"},
            ],
        )
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        app.openapi_schema = doc
    return app.openapi_schema
