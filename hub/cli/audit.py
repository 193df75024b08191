"""``hub audit``: the hash-chained audit log."""

from __future__ import annotations

import time

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hub.audit.chain import Head, Verification
from hub.settings import get_settings

app = typer.Typer(help="The audit log of every /v1 and /ogc access.", no_args_is_help=True)


@app.command()
def verify(
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Walk the audit chain in id order and check every row's hash and link.

    Exit 0 when intact; 1 when a row was changed or deleted (the first one is named, with what is
    wrong); 2 when the log cannot be read. Streams the log (constant memory at any size) in one
    snapshot, so it can run while the API keeps appending.
    """
    import psycopg

    from hub.audit.store import verify_log
    from hub.store.db import connect

    out, err = Console(), Console(stderr=True)
    started = time.perf_counter()
    progress = Progress(
        TextColumn("verifying audit chain"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=as_json,
    )
    task = progress.add_task("verify", total=None)

    def on_start(head: Head) -> None:
        progress.update(task, total=head.last_id)

    try:
        with progress, connect(get_settings()) as conn:
            result = verify_log(
                conn, on_start, lambda n: progress.update(task, completed=n), max_problems=100
            )
    except psycopg.Error as exc:
        err.print(f"[red]cannot read the audit log:[/] {str(exc).strip()}")
        raise typer.Exit(2) from None
    elapsed = time.perf_counter() - started
    if as_json:
        typer.echo(orjson.dumps(_as_dict(result, elapsed)).decode())
    else:
        _report(out, result, elapsed)
    raise typer.Exit(0 if result.intact else 1)


def _as_dict(result: Verification, elapsed: float) -> dict[str, object]:
    return {
        "intact": result.intact,
        "rows": result.rows,
        "last_id": result.last_id,
        "last_hash": result.last_hash.hex(),
        "problem_count": result.problem_count,
        "problems": [p.as_dict() for p in result.problems],
        "first_problem": result.first.as_dict() if result.first else None,
        "elapsed_s": round(elapsed, 3),
    }


def _report(out: Console, result: Verification, elapsed: float) -> None:
    rate = f"{result.rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""
    first = result.first
    if first is None:
        out.print(
            f"[green]audit chain intact[/]: {result.rows:,} rows, ids 1..{result.last_id}, "
            f"head {result.last_hash.hex()[:16]}... ({elapsed:.2f} s, {rate})",
            soft_wrap=True,
        )
        return
    out.print(
        f"[red]audit chain BROKEN at row {first.row_id}[/] ({first.kind}): {escape(first.detail)}",
        soft_wrap=True,
    )
    for problem in result.problems[1:10]:
        out.print(
            f"  also row {problem.row_id} ({problem.kind}): {escape(problem.detail)}",
            soft_wrap=True,
        )
    if result.problem_count > 10:
        out.print(f"  ... {result.problem_count - 10} more problems (see --json)")
    out.print(f"{result.rows:,} rows checked, {result.problem_count} problem(s)")
