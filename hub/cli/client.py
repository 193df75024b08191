"""``hub client``: OAuth2 clients of the hub (who may call the API, and what they may reach)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hub.settings import get_settings

app = typer.Typer(help="OAuth2 clients: create, list, revoke.", no_args_is_help=True)


def _split(value: str | None) -> list[str] | None:
    return [v for v in value.replace(" ", ",").split(",") if v] if value is not None else None


@app.command()
def create(
    kind: str = typer.Option(..., help="community | department | analyst | admin"),
    community: str | None = typer.Option(None, help="Community id (kind community)."),
    jurisdiction: Path | None = typer.Option(
        None, help="GeoJSON (multi)polygon of a department's area (kind department)."
    ),
    categories: str | None = typer.Option(
        None, help="Limit a department to CAP categories, comma-separated (Fire,Health)."
    ),
    scopes: str | None = typer.Option(
        None, help="Scopes, comma-separated; a subset of the kind's defaults (default: all)."
    ),
    jwk: Path | None = typer.Option(
        None, help="Public JWK file: the client authenticates with private_key_jwt, no secret."
    ),
    name: str | None = typer.Option(None, help="Display name."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object (client_id, client_secret) on the last line."
    ),
) -> None:
    """Register a client and print its id and secret. The secret is shown this once only.

    Exit 2 when the request is invalid (unknown community, not a polygon, not CAP words...).
    """
    from hub.auth.clients import ClientError, create_client, read_jurisdiction
    from hub.store.db import get_engine

    err = Console(stderr=True)
    try:
        area = read_jurisdiction(jurisdiction) if jurisdiction is not None else None
        key = _read_json(jwk) if jwk is not None else None
        with get_engine(get_settings()).begin() as conn:
            client, secret = create_client(
                conn,
                kind=kind,
                name=name,
                community_id=community,
                jurisdiction=area,
                categories=_split(categories),
                scopes=_split(scopes),
                jwk=key,
            )
    except ClientError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"client_id": client.client_id, "client_secret": secret}))
        return
    out = Console()
    out.print(f"client_id:     {client.client_id}")
    out.print(f"kind:          {client.kind}")
    out.print(f"scopes:        {' '.join(sorted(client.scopes))}")
    if secret is not None:
        out.print(f"client_secret: {secret}", highlight=False, soft_wrap=True)
        out.print("[yellow]Store the secret now: it is not kept and cannot be shown again.[/]")
    else:
        out.print("authenticates with private_key_jwt (its registered key); no secret")


def _read_json(path: Path) -> object:
    from hub.auth.clients import ClientError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None


@app.command("list")
def list_() -> None:
    """Registered clients (never their secrets)."""
    from hub.auth.clients import list_clients
    from hub.store.db import get_engine

    with get_engine(get_settings()).connect() as conn:
        rows = list_clients(conn)
    table = Table(title="clients", title_justify="left")
    for column in ("client_id", "kind", "name", "reach", "scopes", "auth", "created", "revoked"):
        table.add_column(column)
    for c in rows:
        reach = c.community_id or ("jurisdiction" if c.jurisdiction_wkb else "whole region")
        if c.categories:
            reach += f" ({', '.join(sorted(c.categories))})"
        table.add_row(
            c.client_id,
            c.kind,
            c.name,
            reach,
            " ".join(sorted(c.scopes)),
            "key" if c.public_jwk else "secret",
            f"{c.created_at:%Y-%m-%d %H:%M}" if c.created_at else "",
            f"{c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "",
        )
    Console(width=200).print(table)


@app.command()
def revoke(client_id: str = typer.Argument(..., help="The client to revoke.")) -> None:
    """Revoke a client: its tokens stop working at once (within a second), it gets no new ones.

    Exit 1 when there is no such active client.
    """
    from hub.auth.clients import revoke_client
    from hub.store.db import get_engine

    with get_engine(get_settings()).begin() as conn:
        revoked = revoke_client(conn, client_id)
    if not revoked:
        Console(stderr=True).print(f"[red]error:[/] no active client {client_id}")
        raise typer.Exit(1)
    Console().print(f"revoked {client_id}")
