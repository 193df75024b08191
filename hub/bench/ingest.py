"""``hub bench ingest``: end-to-end ingest figures of the hub on this machine, for the skeleton
(fusion with the picture's stages off: events only) and the picture (the default pipeline)
side by side, in one run.

Everything runs in an isolated environment (``hub.bench.env``) with the real fusion worker as
a subprocess. The same pre-filled workload (N real-shaped events, 2 % duplicates, each real
incident repeated many times at its place: the hard case for the picture) is drained in
blocks, one per mode and round, alternating which mode goes first (skeleton, picture |
picture, skeleton | ...), each on an emptied store, a topic and consumer group of its own. The
last block of each mode goes on, with the same fusion process and on the store it drained
into, to the paced phases (``hub.bench.ingest_phases``):

- the skeleton: sustained (producers flat out) and lag (send -> stored at R events/s);
- the picture: lag (send -> stored: the insert, before the picture's stages and the commit),
  and send -> incident visible through the API
  (``hub.bench.visibility``: a real ``hub api run``, an analyst's token, ``report=``).

The table and the JSON are ``hub.bench.ingest_report``'s.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from hub.bench.env import EnvOptions, bench_env, fusion_process, topics
from hub.bench.ingest_phases import lag_job, measure_drain, measure_lag, measure_sustained
from hub.bench.ingest_report import (
    MODES,
    PICTURE,
    SKELETON,
    IngestOptions,
    summarise,
    table_rows,
)
from hub.bench.pipeline import Run, Store, fill_topic
from hub.bench.report import BenchFailed, machine_info, progress_bars
from hub.bench.visibility import Follower, Sampler, api_reader, visible_figures
from hub.bench.workload import Workload, prefill
from hub.settings import Settings

# ``hub bench fusion`` and the CLI import these from here (they lived here before the split).
__all__ = [
    "MODES",
    "BenchFailed",
    "IngestOptions",
    "Run",
    "Store",
    "fill_topic",
    "progress_bars",
    "run_ingest",
    "summarise",
    "table_rows",
]


@dataclass(frozen=True)
class Block:
    """One drain of the workload by a fusion process in one mode; the mode's last block goes
    on to its paced phases."""

    mode: str
    round: int
    last: bool

    @property
    def label(self) -> str:
        return f"{self.mode}-{self.round}"


def plan(modes: Sequence[str], rounds: int) -> list[Block]:
    """Blocks in order: the modes alternate which goes first, so that neither always drains
    on a machine the other has just warmed (or loaded)."""
    ordered = [m for m in MODES if m in modes]
    order = [
        (mode, r)
        for r in range(1, rounds + 1)
        for mode in (ordered if r % 2 == 1 else ordered[::-1])
    ]
    last = {mode: i for i, (mode, _) in enumerate(order)}
    return [Block(mode, r, last[mode] == i) for i, (mode, r) in enumerate(order)]


def block_settings(base: Settings, tag: str, block: Block) -> Settings:
    """A topic and consumer group per block; the picture's stages on or off by mode."""
    name = f"{tag}.{block.label}"
    return base.model_copy(
        update={
            "events_topic": f"bench.{name}.events",
            "dlq_topic": f"bench.{name}.dlq",
            "consumer_group": f"hub-bench-{tag}-{block.label}",
            "fusion_incidents": block.mode == PICTURE,
        }
    )


@dataclass
class Phases:
    """What the blocks measured, by mode."""

    drain: dict[str, list[dict[str, Any]]]
    lag: dict[str, dict[str, Any]]
    sustained: dict[str, Any] | None = None
    visible: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "drain": self.drain,
            "sustained": self.sustained,
            "lag": self.lag,
            "visible": self.visible,
        }


def _run_block(
    run: Run, block: Block, workload: Workload, opts: IngestOptions, work_dir: Path, out: Phases
) -> None:
    base = run.settings
    settings = block_settings(base, run.tag, block)
    run.store.empty()  # every drain starts from the same empty store
    run.use(settings)
    try:
        with topics(settings, delete=not opts.keep):
            prefill_s = fill_topic(run, workload.messages)
            with fusion_process(settings, work_dir / f"fusion-{block.label}.log") as fusion:
                run.fusion = fusion
                drain = measure_drain(run, workload, block.label, block.mode == PICTURE)
                out.drain[block.mode].append(
                    {"round": block.round, "prefill_s": round(prefill_s, 3)} | drain
                )
                if block.last:
                    _paced(run, block.mode, opts, work_dir, out)
    finally:
        run.fusion = None
        run.use(base)


def _paced(run: Run, mode: str, opts: IngestOptions, work_dir: Path, out: Phases) -> None:
    """The mode's phases with producers running, on the store its last drain filled."""
    if mode == SKELETON:
        out.sustained = measure_sustained(
            run, opts.producers, opts.sustained_seconds, opts.sustained_events
        )
    job = lag_job(run, mode, opts.rate, opts.lag_seconds)
    if mode != PICTURE:
        out.lag[mode] = measure_lag(run, job)
        return
    with api_reader(run.settings, work_dir) as reader:
        follower = Follower(reader, Sampler(job, opts.sample_every))
        try:
            out.lag[mode] = measure_lag(run, job, follower.follow)
            follower.settle()
        finally:
            follower.stop()
    out.visible = visible_figures(run, follower)


def _check_store(run: Run, opts: IngestOptions) -> None:
    """A database given with --database-url must hold no events: the bench empties fusion's
    tables before each drain, and must not do that to anyone's data."""
    if opts.database_url and run.store.one("SELECT EXISTS (SELECT 1 FROM event)")[0]:
        raise RuntimeError(
            "the database given holds events, and the bench empties fusion's tables before "
            "each drain: give it an empty (throw-away) database"
        )


def _phases(run: Run, opts: IngestOptions, work_dir: Path) -> dict[str, Any]:
    _check_store(run, opts)
    workload = prefill(
        opts.events,
        seed=run.seed,
        connector=run.connector("drain"),
        duplicate_share=opts.duplicate_share,
        zoom=run.settings.tile_zoom,
    )
    blocks = plan(opts.modes, opts.rounds)
    out = Phases(drain={b.mode: [] for b in blocks}, lag={})
    for block in blocks:
        _run_block(run, block, workload, opts, work_dir, out)
    return out.as_json()


def run_ingest(opts: IngestOptions, base: Settings, console: Console) -> dict[str, Any]:
    """Set up, run every block, tear down; returns the results (``ingest_report.summarise``)."""
    tag = secrets.token_hex(4)
    work_dir = Path(tempfile.mkdtemp(prefix=f"hub-bench-{tag}-"))
    env_opts = EnvOptions(tag, work_dir, opts.bootstrap, opts.database_url, opts.keep)
    # A fresh seed per run: re-runs on the same database never reuse an event id.
    seed, started, machine = secrets.randbits(48), datetime.now(UTC), machine_info()
    keep_logs = opts.keep
    try:
        with bench_env(base, env_opts) as settings, progress_bars(console) as progress:
            store = Store(settings)
            try:
                phases = _phases(Run(settings, store, progress, seed, tag), opts, work_dir)
            finally:
                store.close()
    except Exception as exc:
        keep_logs = True  # the fusion, API and broker logs explain most failures
        raise BenchFailed(
            f"{type(exc).__name__}: {exc}\n(process logs kept in {work_dir})"
        ) from exc
    finally:  # also on Ctrl-C: nothing worth keeping then
        if not keep_logs:
            shutil.rmtree(work_dir, ignore_errors=True)
    context = {"tag": tag, "seed": seed, "started_at": started, "machine": machine}
    if opts.keep:
        context["logs_dir"] = str(work_dir)
    return summarise(opts, settings, phases, context)
