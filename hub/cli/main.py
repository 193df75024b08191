"""Entry point of the ``hub`` command: wires the command groups together."""

from __future__ import annotations

import typer

from hub.cli import (
    api,
    audit,
    bench,
    client,
    community,
    connector,
    db,
    demo,
    fusion,
    grid,
    keys,
    notify,
    stack,
)

app = typer.Typer(
    name="hub",
    help="Community Risk Hub: report once, share everywhere, verified, in seconds.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
for group, name in [
    (db.app, "db"),
    (fusion.app, "fusion"),
    (api.app, "api"),
    (community.app, "community"),
    (grid.app, "grid"),
    (connector.app, "connector"),
    (bench.app, "bench"),
    (audit.app, "audit"),
    (client.app, "client"),
    (keys.app, "keys"),
    (notify.app, "notify"),
]:
    app.add_typer(group, name=name)

# Top-level commands are registered by their modules: ``stack.register(app)`` adds up/down/status,
# ``demo.register(app)`` adds demo.
for module in (stack, demo):
    register = getattr(module, "register", None)
    if register is not None:
        register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
