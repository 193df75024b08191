"""Risk per grid cell, the pure part: the configuration (``config/risk.toml``), an incident's
contribution to a cell, a cell's score, and its four-colour level with hysteresis.

No database and no clock here: the fusion stage (``hub.fusion.risk_stage``) fetches the facts,
and measures recency on the picture clock it passes in as ``as_of``.

The file is validated strictly, as the correlation rules are (``hub.fusion.rules``): an unknown
or missing key, a wrong type or an out-of-range number is an error naming the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_args

from hub.fusion.rules import EVENT_TYPE, ROOT, read_toml
from schemas.event import Certainty, Severity
from schemas.picture import RISK_LEVELS as LEVELS
from schemas.picture import RiskLevel as Level
from schemas.picture import Verification

SHIPPED = ROOT / "config" / "risk.toml"

MAX_WEIGHT = 1_000.0
MAX_HORIZON_MIN = 30 * 24 * 60.0
MAX_CLOCK_LEAD_MIN = 7 * 24 * 60.0
MAX_DECAY_CELLS = 100_000

_TOP_KEYS = frozenset({"severity", "certainty", "verification", "recency", "levels", "stage"})
_RECENCY_KEYS = frozenset({"half_life", "horizon", "types"})
_LEVEL_KEYS = frozenset({"yellow", "orange", "red", "hysteresis", "negligible"})
_STAGE_KEYS = frozenset({"decay_cells", "clock_lead"})


class RiskConfigError(ValueError):
    """The risk file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class RiskConfig:
    severity: Mapping[str, float]  # CAP severity -> weight
    certainty: Mapping[str, float]  # CAP certainty -> weight
    verification: Mapping[str, float]  # verification state -> weight (refuted: 0)
    half_life: timedelta  # of event types without their own
    half_lives: Mapping[str, timedelta]  # per event type
    horizon: timedelta  # older incidents count no more
    thresholds: tuple[float, float, float]  # yellow, orange, red
    hysteresis: float  # a level falls below threshold * (1 - hysteresis)
    negligible: float  # a blue cell below this is deleted
    decay_cells: int  # stored cells re-scored for decay per batch and picture, at most
    clock_lead: timedelta  # events further ahead of the database's clock move no picture clock
    source: str = "<risk>"

    @classmethod
    def load(cls, path: Path | str | None = None) -> RiskConfig:
        """The configuration in ``path``; the shipped file when None (cached)."""
        if path is None:
            return _shipped()
        return _load_file(Path(path))

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str = "<risk>") -> RiskConfig:
        """The configuration from a parsed TOML document; ``source`` names it in errors."""
        _keys(data, _TOP_KEYS, source, "")
        severity = _weights(data, "severity", get_args(Severity), source)
        certainty = _weights(data, "certainty", get_args(Certainty), source)
        verification = _weights(data, "verification", get_args(Verification), source)
        if verification["refuted"] != 0:
            raise _fail(source, "verification.refuted", "must be 0: a rumour carries no risk")
        half_life, half_lives, horizon = _recency(_table(data, "recency", source), source)
        levels = _table(data, "levels", source)
        _keys(levels, _LEVEL_KEYS, source, "levels")
        thresholds, hysteresis, negligible = _levels(levels, source)
        stage = _table(data, "stage", source)
        _keys(stage, _STAGE_KEYS, source, "stage")
        decay_cells = _integer(stage["decay_cells"], source, "stage.decay_cells", MAX_DECAY_CELLS)
        lead = _number(stage["clock_lead"], source, "stage.clock_lead", 0, MAX_CLOCK_LEAD_MIN)
        return cls(
            severity=severity,
            certainty=certainty,
            verification=verification,
            half_life=half_life,
            half_lives=half_lives,
            horizon=horizon,
            thresholds=thresholds,
            hysteresis=hysteresis,
            negligible=negligible,
            decay_cells=decay_cells,
            clock_lead=timedelta(minutes=lead),
            source=source,
        )

    def half_life_of(self, event_type: str) -> timedelta:
        return self.half_lives.get(event_type, self.half_life)


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What an incident's contribution depends on (columns of ``incident``)."""

    severity: str
    certainty: str
    verification: str
    event_type: str
    last_observed_at: datetime


def contribution(facts: IncidentFacts, as_of: datetime, cfg: RiskConfig) -> float:
    """The incident's weight in a cell at ``as_of`` (the picture clock): severity x certainty x
    verification, halved every half-life of its event type after its last report; 0 beyond
    the horizon. A report younger than the clock (a device clock ahead) counts as fresh.

    Never raises on odd words: an unknown severity or certainty weighs as ``Unknown``, an
    unknown verification state as ``reported`` (the event contract makes both rare)."""
    age = max(as_of - facts.last_observed_at, timedelta(0))
    if age > cfg.horizon:
        return 0.0
    weight = (
        cfg.severity.get(facts.severity, cfg.severity["Unknown"])
        * cfg.certainty.get(facts.certainty, cfg.certainty["Unknown"])
        * cfg.verification.get(facts.verification, cfg.verification["reported"])
    )
    return weight * 0.5 ** (age / cfg.half_life_of(facts.event_type))


def cell_score(contributions: Iterable[float]) -> float:
    """A cell's score: the sum of its incidents' contributions (independent incidents in one
    place add up; each is bounded by the largest weights, so the sum stays meaningful)."""
    return math.fsum(contributions)


def next_level(previous: str | None, score: float, cfg: RiskConfig) -> Level:
    """The cell's level after ``previous`` (None: a fresh cell, as blue) at ``score``.

    It rises as soon as the score reaches a threshold, to the highest level reached (several at
    once if need be); it keeps a level L at or below ``previous`` while the score is at least
    L's threshold x (1 - hysteresis), and falls to the highest such level otherwise. A score
    that is not a number counts as 0."""
    if math.isnan(score):
        score = 0.0
    reached = sum(1 for t in cfg.thresholds if score >= t)
    held = LEVELS.index(previous) if previous in LEVELS else 0
    keep = 1 - cfg.hysteresis
    while held > 0 and score < cfg.thresholds[held - 1] * keep:
        held -= 1
    return LEVELS[max(reached, held)]


def negligible(level: str, score: float, cfg: RiskConfig) -> bool:
    """A blue cell with almost no score left: nothing to show, its row may go."""
    return level == "blue" and not score >= cfg.negligible


# --- loading -----------------------------------------------------------------------------------


@cache
def _shipped() -> RiskConfig:
    return _load_file(SHIPPED)


def _load_file(path: Path) -> RiskConfig:
    return RiskConfig.parse(read_toml(path, RiskConfigError), str(path))


def _fail(source: str, key: str, problem: str) -> RiskConfigError:
    return RiskConfigError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def _keys(table: Mapping[str, Any], expected: frozenset[str], source: str, at: str) -> None:
    """Exactly the expected keys (``types`` of [recency] may be left out)."""
    where = (lambda k: f"{at}.{k}") if at else (lambda k: k)
    unknown = sorted(set(table) - expected)
    if unknown:
        listed = ", ".join(sorted(expected))
        raise _fail(source, where(unknown[0]), f"unknown key (expected one of {listed})")
    missing = sorted(expected - set(table) - {"types"})
    if missing:
        raise _fail(source, where(missing[0]), "missing")


def _table(data: Mapping[str, Any], key: str, source: str, at: str = "") -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(source, f"{at}{key}", "must be a table")
    return value


def _number(value: Any, source: str, key: str, low: float, high: float) -> float:
    """A finite number within [low, high]."""
    # bool is an int in Python, but `red = true` is a typo, not a threshold.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(source, key, f"must be a number, got {value!r}")
    if not low <= value <= high:
        raise _fail(source, key, f"must be within [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _positive(value: Any, source: str, key: str, high: float) -> float:
    number = _number(value, source, key, 0, high)
    if number == 0:
        raise _fail(source, key, "must be > 0")
    return number


def _integer(value: Any, source: str, key: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise _fail(source, key, f"must be a whole number within [1, {high}], got {value!r}")
    return value


def _weights(
    data: Mapping[str, Any], key: str, words: tuple[str, ...], source: str
) -> Mapping[str, float]:
    table = _table(data, key, source)
    _keys(table, frozenset(words), source, key)
    return MappingProxyType(
        {w: _number(table[w], source, f"{key}.{w}", 0, MAX_WEIGHT) for w in words}
    )


def _recency(
    table: Mapping[str, Any], source: str
) -> tuple[timedelta, Mapping[str, timedelta], timedelta]:
    _keys(table, _RECENCY_KEYS, source, "recency")
    horizon = _positive(table["horizon"], source, "recency.horizon", MAX_HORIZON_MIN)
    default = _positive(table["half_life"], source, "recency.half_life", horizon)
    types = _table(table, "types", source, "recency.")
    for name in types:
        if not EVENT_TYPE.match(name):
            raise _fail(source, f"recency.types.{name}", "not an event type")
    minutes = {
        name: _positive(value, source, f"recency.types.{name}", horizon)
        for name, value in types.items()
    }
    half_lives = {name: timedelta(minutes=m) for name, m in minutes.items()}
    return timedelta(minutes=default), MappingProxyType(half_lives), timedelta(minutes=horizon)


def _levels(
    table: Mapping[str, Any], source: str
) -> tuple[tuple[float, float, float], float, float]:
    yellow, orange, red = (
        _positive(table[k], source, f"levels.{k}", MAX_WEIGHT) for k in ("yellow", "orange", "red")
    )
    hysteresis = _number(table["hysteresis"], source, "levels.hysteresis", 0, 1)
    if hysteresis in (0, 1):
        raise _fail(source, "levels.hysteresis", "must be a fraction strictly between 0 and 1")
    keep = 1 - hysteresis
    for lower, upper, name in ((yellow, orange, "orange"), (orange, red, "red")):
        if not upper * keep > lower:
            raise _fail(
                source,
                f"levels.{name}",
                f"x (1 - hysteresis) = {upper * keep:g} must exceed the level below ({lower:g}):"
                " overlapping bands would make the levels flicker",
            )
    floor = _number(table["negligible"], source, "levels.negligible", 0, MAX_WEIGHT)
    if floor >= yellow:
        raise _fail(source, "levels.negligible", f"must be below levels.yellow ({yellow:g})")
    return (yellow, orange, red), hysteresis, floor
