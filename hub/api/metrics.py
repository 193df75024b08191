"""Prometheus metrics of the API: requests by route template and status, latency, in flight.

Each app owns its registry (``app.state.metrics``), so several apps in one process (tests) do
not collide in the global registry.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.deps import SettingsDep
from hub.api.errors import problem_responses
from hub.audit.record import in_networks, trusted_networks

router = APIRouter(tags=["health"])

# Labelled by template ("/v1/events/{event_id}"), never by raw path: the label set stays bounded.
UNMATCHED = "unmatched"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hub_api_requests",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hub_api_request_duration_seconds",
            "Time to serve a request",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.in_flight = Gauge(
            "hub_api_requests_in_flight", "Requests being served", registry=self.registry
        )


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware): counts every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # stays 500 if the app raises before sending a response

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", UNMATCHED)  # set by the router on match
            labels = (scope["method"], route, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)


@router.get(
    "/metrics",
    summary="Prometheus metrics of this API process",
    description="Served to the configured scrape addresses only (`HUB_METRICS_SCRAPERS`; "
    "default loopback), judged by the connection's own address, never by a forwarded header.",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problem_responses(403),
    },
)
def metrics(request: Request, settings: SettingsDep) -> Response:
    peer = request.client.host if request.client is not None else ""
    if not in_networks(peer, trusted_networks(settings.metrics_scrapers)):
        raise HTTPException(403, "metrics are served to the configured scrape addresses only")
    registry: CollectorRegistry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
