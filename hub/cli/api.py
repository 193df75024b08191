"""``hub api``: HTTP API server."""

from __future__ import annotations

import ipaddress
import sys

import typer
import yaml

from hub import logs
from hub.settings import get_settings

app = typer.Typer(help="HTTP API server.", no_args_is_help=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name could resolve to a public interface


@app.command()
def run(
    host: str | None = typer.Option(
        None, help="Bind address (default: $HUB_API_HOST, loopback only)."
    ),
    port: int | None = typer.Option(None, min=1, max=65535, help="Port (default: $HUB_API_PORT)."),
    log_level: str = typer.Option("INFO", help="Log level (JSON lines on stderr)."),
) -> None:
    """Serve the API with uvicorn until stopped.

    Binds loopback addresses only (127.0.0.1, ::1, localhost): there is no authorization yet.
    """
    import uvicorn

    from hub.api.factory import create_app

    settings = get_settings()
    host = host or settings.api_host
    if not is_loopback(host):
        typer.echo(
            f"error: refusing to bind {host}: the API has no authorization yet, so it binds "
            "loopback addresses only (127.0.0.1, ::1, localhost).",
            err=True,
        )
        raise typer.Exit(2)
    logs.configure(log_level)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port or settings.api_port,
        log_config=None,  # keep the hub's JSON logging
        log_level=log_level.lower(),
        proxy_headers=False,
    )


@app.command()
def openapi() -> None:
    """Print the OpenAPI document (YAML) to stdout; `make openapi` writes it to openapi.yaml."""
    from hub.api.factory import create_app

    document = create_app(get_settings()).openapi()
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
