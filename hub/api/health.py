"""Liveness (``/healthz``) and readiness (``/readyz``: database and broker answer)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Literal

from fastapi import APIRouter, Request
from kafka import KafkaAdminClient
from pydantic import BaseModel

from hub.api.deps import SettingsDep
from hub.api.errors import problem, problem_responses
from hub.settings import Settings
from hub.store import queries
from hub.store.db import session_scope

router = APIRouter(tags=["health"])
log = logging.getLogger("hub.api")

CHECK_TIMEOUT_S = 2.0


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


def database_answers(settings: Settings) -> bool:
    with session_scope(settings, api=True) as session:  # the API's own role answers
        return queries.database_answers(session)


def broker_answers(settings: Settings) -> bool:
    # Bootstrapping fetches cluster metadata: that is the check. Short timeouts, not the 30 s
    # default, so a dead broker answers "down" within the probe's budget.
    timeout_ms = int(CHECK_TIMEOUT_S * 1000)
    client = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="hub-api-readyz",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    client.close()
    return True


CHECKS: dict[str, Callable[[Settings], bool]] = {
    "database": database_answers,
    "kafka": broker_answers,
}


def run_checks(settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, str]:
    """Run every check in parallel; one that fails or is not done within the timeout is down."""
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    try:
        futures = {name: pool.submit(check, settings) for name, check in CHECKS.items()}
        wait(futures.values(), timeout=timeout_s + 0.5)
        return {name: _outcome(name, future) for name, future in futures.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung check must not hang the probe


def _outcome(name: str, future: Any) -> str:
    if not future.done():
        return "down: no answer in time"
    try:
        return "ok" if future.result() else "down: unexpected answer"
    except Exception as exc:
        log.warning("readiness check %s failed: %s", name, exc)
        return f"down: {type(exc).__name__}"


@router.get("/healthz", summary="The process is alive (no dependency is checked)")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Ready: the database answers SELECT 1 and the Kafka broker answers metadata",
    response_model=Readiness,
    responses=problem_responses(503),
)
def readyz(request: Request, settings: SettingsDep) -> Any:
    checks = run_checks(settings)
    down = sorted(name for name, outcome in checks.items() if outcome != "ok")
    if down:
        return problem(request, 503, f"not ready: {', '.join(down)} down", checks=checks)
    return Readiness(status="ready", checks=checks)
