"""``hub keys``: the keys that sign the hub's access tokens."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from hub.settings import get_settings

app = typer.Typer(help="Token signing keys: rotate, list.", no_args_is_help=True)


@app.command()
def rotate() -> None:
    """Sign new tokens with a new key; the old key keeps verifying until its tokens expire."""
    from hub.auth import keys
    from hub.store.db import get_engine

    settings = get_settings()
    with get_engine(settings).begin() as conn:
        kid = keys.rotate(conn, settings)
    Console().print(
        f"active key: {kid}\nretired keys keep verifying for {settings.token_ttl_s} s "
        "(one token lifetime)",
        highlight=False,
    )


@app.command("list")
def list_() -> None:
    """Every key: active, retired (still verifying or not), with its kid."""
    from datetime import UTC, datetime

    from hub.auth import keys
    from hub.store.db import get_engine

    settings = get_settings()
    with get_engine(settings).connect() as conn:
        rows = keys.list_keys(conn)
    now = datetime.now(UTC)
    table = Table(title="signing keys", title_justify="left")
    for column in ("kid", "alg", "created", "state"):
        table.add_column(column)
    for k in rows:
        end = keys.grace_end(k, settings)
        if end is None:
            state = "[green]active[/]"
        elif end > now:
            state = f"retired, verifies until {end:%Y-%m-%d %H:%M:%S}"
        else:
            state = "[dim]retired[/]"
        table.add_row(k.kid, k.alg, f"{k.created_at:%Y-%m-%d %H:%M:%S}", state)
    Console(width=200).print(table)
