"""``hub bench``: Benchmarks (table + JSON under bench/results/)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from hub import logs
from hub.bench.report import (
    RESULTS_DIR,
    Row,
    json_line,
    machine_line,
    results_table,
    write_results,
)
from hub.settings import get_settings

app = typer.Typer(help="Benchmarks (table + JSON under bench/results/).", no_args_is_help=True)


@app.command()
def ingest(
    events: int = typer.Option(200_000, "--events", min=1, help="Events pre-filled for drain."),
    rate: int = typer.Option(2_000, "--rate", min=1, help="Events/s of the lag phase."),
    sustained_seconds: float = typer.Option(
        20.0, "--sustained-seconds", min=0.5, help="How long producers run flat out."
    ),
    sustained_events: int | None = typer.Option(
        None, "--sustained-events", min=1, help="Stop each sustained producer at this count."
    ),
    lag_seconds: float = typer.Option(20.0, "--lag-seconds", min=0.5, help="Lag phase length."),
    producers: int = typer.Option(1, "--producers", min=1, help="Sustained producer processes."),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Use this Kafka (own topics) instead of starting a broker."
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="Use this database (never dropped; it must hold no events: fusion's tables are "
        "emptied before each drain) instead of a new one.",
    ),
    modes: str = typer.Option(
        "skeleton,picture",
        "--modes",
        help="Pipelines to measure: skeleton (events only), picture (the default pipeline).",
    ),
    rounds: int = typer.Option(
        2, "--rounds", min=1, help="Drains per mode, alternating which mode goes first."
    ),
    sample_every: int = typer.Option(
        20, "--sample-every", min=1, help="Picture lag: follow 1 in N events through the API."
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the bench database and process logs."),
    results_dir: Path = typer.Option(RESULTS_DIR, "--results-dir", help="Where JSON goes."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as one JSON line."),
) -> None:
    """End-to-end ingest of the skeleton (events only) and the picture (the default pipeline)
    side by side: drain rates and their ratio, sustained rate, lag at a fixed rate, and the
    time until a report's incident can be read through the API.

    Runs in an environment of its own (a broker on a free port, a throw-away database
    hub_bench_*, the SF neighbourhoods as communities, `hub fusion run` and, for the picture's
    lag, `hub api run` as subprocesses) and stops and drops all of it at the end, also on
    failure or Ctrl-C. The same pre-filled workload is drained by each mode in alternating
    rounds; each mode's last drain goes on to its paced phases. Targets on the reference
    2-core machine: skeleton drain >= 20,000 events/s, picture >= 0.5 x the skeleton,
    sustained >= 10,000 events/s, skeleton lag p99 <= 500 ms at 2,000 events/s, incident
    visible through the API p99 <= 1 s. Exits 1 when the counts do not add up (lost or
    duplicated events, a followed report never visible); a missed target is reported, not an
    error.
    """
    from hub.bench.ingest import MODES, IngestOptions, run_ingest, table_rows

    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    if not chosen or set(chosen) - set(MODES):
        raise typer.BadParameter(
            f"a comma-separated choice of {', '.join(MODES)}", param_hint="--modes"
        )

    logs.configure("ERROR", json=False)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # our own clients: only real trouble
    opts = IngestOptions(
        events=events,
        rate=rate,
        sustained_seconds=sustained_seconds,
        sustained_events=sustained_events,
        lag_seconds=lag_seconds,
        producers=producers,
        bootstrap=bootstrap,
        database_url=database_url,
        keep=keep,
        modes=chosen,
        rounds=rounds,
        sample_every=sample_every,
    )
    title = f"hub bench ingest ({events:,} events, {rounds} x {' / '.join(chosen)})"
    _run_bench("ingest", title, lambda err: run_ingest(opts, get_settings(), err), table_rows,
               results_dir, json_out)  # fmt: skip


@app.command()
def api(
    events: int = typer.Option(100_000, "--events", min=1, help="Real events stored first."),
    seconds: float = typer.Option(
        15.0, "--seconds", min=0.5, help="Length of each measured phase (one mode, one round)."
    ),
    rounds: int = typer.Option(
        3, "--rounds", min=1, help="Rounds; each measures both modes, alternating which first."
    ),
    concurrency: int = typer.Option(
        8, "--concurrency", min=1, help="Concurrent keep-alive connections (worker threads)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="Page size (limit=)."),
    warmup_seconds: float = typer.Option(
        3.0, "--warmup-seconds", min=0.1, help="Unmeasured load on each server first."
    ),
    kind: str = typer.Option(
        "community",
        "--kind",
        help="Principal of the auth-on requests: community (own community + neighbour zone, "
        "the most expensive policy), department (jurisdiction = the bbox), analyst or admin.",
    ),
    community: str = typer.Option(
        "Tenderloin", "--community", help="The community client's own community (--kind community)."
    ),
    bbox: str = typer.Option(
        "-122.42,37.775,-122.39,37.799",
        "--bbox",
        help="minLon,minLat,maxLon,maxLat of every request (default: downtown SF).",
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the bench database and process logs."),
    results_dir: Path = typer.Option(RESULTS_DIR, "--results-dir", help="Where JSON goes."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as one JSON line."),
) -> None:
    """What authorization costs the API: GET /v1/events?bbox=... with and without auth.

    Stores the real events in a throw-away database hub_bench_* (SF neighbourhoods as
    communities), starts two `hub api run` processes on free loopback ports against it: one as
    deployed (bearer token of a registered client, access policy), one with
    HUB_API_AUTH_DISABLED=true (no token, no policy; benchmarks only, refused off loopback);
    rate limits raised on both. After a warm-up, a pool of keep-alive connections loads them in
    alternating rounds (on/off, off/on, ...) and measures requests/s and p50/p95/p99 latency.
    Stops and drops everything at the end, also on failure or Ctrl-C. Target: with auth >= 85%
    of the requests/s without. Exits 1 on any non-200 answer or when the auth-on server
    answers a request without a token with anything but 401; a missed target is reported, not
    an error.
    """
    from hub.access.principal import KINDS

    if kind not in KINDS:
        raise typer.BadParameter(f"one of {', '.join(KINDS)}", param_hint="--kind")
    _check_bbox(bbox)
    from hub.bench.api import ApiBenchOptions, run_api, table_rows

    logs.configure("ERROR", json=False)
    opts = ApiBenchOptions(
        events=events,
        seconds=seconds,
        rounds=rounds,
        concurrency=concurrency,
        limit=limit,
        warmup_seconds=warmup_seconds,
        kind=kind,
        community=community,
        bbox=bbox,
        keep=keep,
    )
    title = f"hub bench api ({events:,} events, {rounds} x {seconds:g} s per mode)"
    _run_bench("api", title, lambda err: run_api(opts, get_settings(), err), table_rows,
               results_dir, json_out)  # fmt: skip


@app.command()
def fusion(
    incidents: int | None = typer.Option(
        None, "--incidents", min=1, help="Use the first N real incidents (default: all 9,148)."
    ),
    sigma_m: float = typer.Option(50.0, "--sigma-m", min=0.0, help="GPS noise per axis (m)."),
    delay_mean_s: float = typer.Option(180.0, "--delay-mean-s", min=0.0, help="Mean delay."),
    delay_cap_s: float = typer.Option(1800.0, "--delay-cap-s", min=0.0, help="Delay cap."),
    confusion: float = typer.Option(
        0.05, "--confusion", min=0.0, max=1.0, help="Share of reports with a related type."
    ),
    seed: int = typer.Option(7, "--seed", help="The generator's seed (fixed by default)."),
    variants: list[str] = typer.Option(
        [],
        "--variant",
        help="Variants to run (repeat the option; default or 'all': every one): default, "
        "'noise x2', 'density x2' .. 'density x16', hotspots, 'mixed types', floods, "
        "'offset source', 'sffd storm'.",
    ),
    in_process: bool = typer.Option(
        False,
        "--in-process",
        help="Score the hub's correlation model in this process (no broker, no database, no "
        "cost phase): fast, for tuning.",
    ),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Cost: drains per mode (off / on)."),
    cost_months: int = typer.Option(
        5,
        "--cost-months",
        min=1,
        help="Cost: the default variant's month of reports this many times, a month apart "
        "(fresh ids), so that a drain lasts long enough to time.",
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the bench database and process logs."),
    results_dir: Path = typer.Option(RESULTS_DIR, "--results-dir", help="Where JSON goes."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as one JSON line."),
) -> None:
    """Fusion quality and cost, through the real pipeline (or the model alone: --in-process).

    Real SFPD incidents (December 2018; the SFFD calls for the storm), each reported by 1-4
    simulated sources with GPS noise, delays and type confusion, drained by `hub fusion run`
    from a broker of its own into a throw-away database. Prints B-cubed precision/recall/F1 of
    the hub's incidents beside the naive baseline (nearest open cluster within 300 m / 30 min)
    per variant (noise doubled, incidents packed 2x-16x denser, hotspots, a collision beside an
    unrelated medical call, floods, an offset source, an SFFD storm), false corroboration, the
    largest incident, the corroborated share, incidents per 1,000 reports, and the cost: drain
    rate with the picture's stages on vs. off (events only), side by side. Targets: F1 >= 0.95
    (default, density x2, x4) or >= 0.92 (the others), above the baseline (by >= 0.02 at the
    defaults), false corroboration <= 2 %; cost >= 80 % of the skeleton's rate.
    """
    from hub.bench.fusion import FusionOptions, run_fusion, run_in_process
    from hub.bench.fusion_quality import GeneratorParams, select
    from hub.bench.fusion_table import table_rows

    try:
        select(variants)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--variant") from exc
    logs.configure("ERROR", json=False)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    params = GeneratorParams(
        seed=seed,
        sigma_m=sigma_m,
        delay_mean_s=delay_mean_s,
        delay_cap_s=delay_cap_s,
        confusion=confusion,
    )
    opts = FusionOptions(params, incidents, tuple(variants), rounds, keep, cost_months)
    title = f"hub bench fusion ({incidents or 'all'} incidents, sigma {sigma_m:g} m)"
    if in_process:  # results of their own: fusion-latest.json stays the pipeline's
        _run_bench("fusion-in-process", f"{title}, in process", lambda _: run_in_process(opts),
                   table_rows, results_dir, json_out)  # fmt: skip
        return
    _run_bench("fusion", title, lambda err: run_fusion(opts, get_settings(), err), table_rows,
               results_dir, json_out)  # fmt: skip


def _check_bbox(value: str) -> None:
    """The API's own bbox rules, before anything is set up."""
    from hub.api.errors import BadRequest
    from hub.api.params import parse_bbox

    try:
        parse_bbox(value)
    except BadRequest as exc:
        raise typer.BadParameter(str(exc), param_hint="--bbox") from exc


def _run_bench(
    name: str,
    title: str,
    run: Callable[[Console], dict[str, Any]],
    table_rows: Callable[[dict[str, Any]], list[Row]],
    results_dir: Path,
    json_out: bool,
) -> None:
    """Run (progress on stderr), then the table, the machine and where the JSON went on stdout;
    with ``--json`` the JSON as the last line. Exits 2 when the run broke off, 1 when its
    checks failed."""
    from hub.bench.ingest import BenchFailed

    err, out = Console(stderr=True), Console()
    if not out.is_terminal:  # piped: 80 columns would wrap every row of the table
        out = Console(width=110)
    try:
        result = run(err)
    except BenchFailed as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc
    path = write_results(name, result, results_dir)
    out.print(results_table(title, table_rows(result)))
    out.print(machine_line(result["machine"]), highlight=False)
    out.print(f"results: {path}", highlight=False)
    if json_out:
        print(json_line(result), flush=True)
    if not result["checks_ok"]:
        raise typer.Exit(1)
