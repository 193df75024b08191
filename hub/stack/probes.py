"""Probes of the local stack's services: does the broker answer, is the schema at head, does
an HTTP endpoint say 200; and the addresses a person opens (``hub up`` prints them)."""

from __future__ import annotations

import contextlib
import urllib.request
from pathlib import Path

import psycopg
from alembic.script import ScriptDirectory
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from hub.settings import Settings
from hub.stack.broker import port_open
from hub.store.migrate import alembic_config

PROBE_TIMEOUT_S = 2.0


# --- probes ---------------------------------------------------------------------------------


def broker_is_local(settings: Settings) -> bool:
    """True when kafka_bootstrap names our own broker port here (not an external Kafka)."""
    hosts = [h.strip() for h in settings.kafka_bootstrap.split(",") if h.strip()]
    local = {f"127.0.0.1:{settings.broker_port}", f"localhost:{settings.broker_port}"}
    return len(hosts) == 1 and hosts[0] in local


def _bootstrap_listens(settings: Settings) -> bool:
    """Some bootstrap address accepts TCP: checked first so that probing a broker that is not
    (yet) there costs nothing and does not make kafka-python log connection errors."""
    for address in settings.kafka_bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        with contextlib.suppress(OSError):  # an unresolvable host is simply not listening
            if port.isdigit() and port_open(int(port), host or "127.0.0.1"):
                return True
    return False


def _admin(settings: Settings, timeout_s: float) -> KafkaAdminClient:
    ms = int(timeout_s * 1000)
    return KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="hub-stack-probe",
        bootstrap_timeout_ms=ms,
        request_timeout_ms=ms,
    )


def broker_answers(settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """The broker answers a Kafka metadata request (an open port alone proves nothing)."""
    if not _bootstrap_listens(settings):
        return False
    try:
        _admin(settings, timeout_s).close()
    except (KafkaError, OSError, ValueError):
        return False
    return True


def topics_present(settings: Settings) -> bool:
    if not _bootstrap_listens(settings):
        return False
    try:
        client = _admin(settings, PROBE_TIMEOUT_S)
        try:
            return {settings.events_topic, settings.dlq_topic} <= set(client.list_topics())
        finally:
            client.close()
    except (KafkaError, OSError, ValueError):
        return False


def schema_at_head(settings: Settings) -> tuple[bool, str]:
    """(database at the newest Alembic revision, why not)."""
    heads = set(ScriptDirectory.from_config(alembic_config(settings)).get_heads())
    try:
        with psycopg.connect(settings.sync_database_url, connect_timeout=3) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except psycopg.Error as exc:
        # psycopg prefixes the server's words with where it tried: keep the words.
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return False, f"database: {text.rpartition('FATAL:')[2].strip() or text}"
    current = {r[0] for r in rows}
    return current == heads, "" if current == heads else f"schema at {sorted(current)}"


# Probes never honour http_proxy: readiness traffic stays on this machine.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with _opener.open(url, timeout=timeout_s) as response:
            return int(response.status) == 200
    except (OSError, ValueError):  # URLError, HTTPError (non-2xx), timeouts, refused
        return False


def _local_host(host: str) -> str:
    # A server bound to every interface is still probed on loopback.
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def api_url(settings: Settings) -> str:
    return f"http://{_local_host(settings.api_host)}:{settings.api_port}"


def metrics_url(port: int) -> str | None:
    return f"http://127.0.0.1:{port}/metrics" if port else None


def fusion_metrics_url(settings: Settings) -> str | None:
    return metrics_url(settings.fusion_metrics_port)


def urls(settings: Settings) -> dict[str, str]:
    """What a person opens once the stack is up (printed by ``hub up``)."""
    base = api_url(settings)
    return {
        "events": f"{base}/v1/events",
        "communities": f"{base}/v1/communities",
        "API docs": f"{base}/docs",
        "API metrics": f"{base}/metrics",
        "fusion metrics": fusion_metrics_url(settings) or "disabled (HUB_FUSION_METRICS_PORT=0)",
        "notifier metrics": metrics_url(settings.notify_metrics_port)
        or "disabled (HUB_NOTIFY_METRICS_PORT=0)",
        "broker": settings.kafka_bootstrap,
        "logs": str(Path(settings.state_dir).resolve() / "logs"),
    }
