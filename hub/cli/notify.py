"""``hub notify``: the webhook notifier."""

from __future__ import annotations

import logging

import typer

from hub import logs
from hub.cli.workers import metrics_on_ready, on_signals
from hub.settings import get_settings

app = typer.Typer(
    help="Webhook notifier: the picture's changes, signed, to each subscription's endpoint.",
    no_args_is_help=True,
)
log = logging.getLogger("hub.notify")


@app.command()
def run(
    log_level: str = typer.Option("INFO", help="Log level (JSON lines on stderr)."),
) -> None:
    """Deliver the picture's changes to every active webhook subscription until stopped.

    Wakes on fusion's NOTIFY (polls every HUB_WEBHOOK_POLL_S without it); signs per Standard
    Webhooks; retries with exponential backoff (HUB_WEBHOOK_BACKOFF_S, HUB_WEBHOOK_BACKOFF_MAX_S)
    and disables a subscription after HUB_WEBHOOK_MAX_FAILURES consecutive failures. Serves
    Prometheus metrics on 127.0.0.1:HUB_NOTIFY_METRICS_PORT (0 disables them). SIGTERM/SIGINT
    stop it; a delivery cut short is repeated by the next run, with the same webhook-id.
    """
    from hub.notify.worker import NotifyWorker

    logs.configure(log_level)
    settings = get_settings()
    worker = NotifyWorker(settings)

    on_signals(worker.stop, log)
    ready = metrics_on_ready(settings.notify_metrics_port, worker.metrics.registry, log, "notifier")
    worker.run(on_ready=ready)
