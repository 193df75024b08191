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
from typing import Annotated, Any, Self, get_args

from pydantic import BaseModel, Field, create_model, model_validator

from hub.configfile import KeyProblem, StrictModel, check_with, number, read_toml, validate
from hub.errors import ConfigError
from hub.fusion.rules import ROOT, EventTypeKey
from schemas.event import Certainty, Severity
from schemas.picture import RISK_LEVELS as LEVELS
from schemas.picture import RiskLevel as Level
from schemas.picture import Verification

SHIPPED = ROOT / "config" / "risk.toml"

MAX_WEIGHT = 1_000.0
MAX_HORIZON_MIN = 30 * 24 * 60.0
MAX_CLOCK_LEAD_MIN = 7 * 24 * 60.0
MAX_DECAY_CELLS = 100_000


class RiskConfigError(ConfigError, ValueError):
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
        file = validate(RiskFile, data, source, RiskConfigError)
        severity = _weights_of(file.severity, get_args(Severity))
        certainty = _weights_of(file.certainty, get_args(Certainty))
        verification = _weights_of(file.verification, get_args(Verification))
        recency, levels = file.recency, file.levels
        half_lives = {name: timedelta(minutes=m) for name, m in recency.types.items()}
        return cls(
            severity=severity,
            certainty=certainty,
            verification=verification,
            half_life=timedelta(minutes=recency.half_life),
            half_lives=MappingProxyType(half_lives),
            horizon=timedelta(minutes=recency.horizon),
            thresholds=(levels.yellow, levels.orange, levels.red),
            hysteresis=levels.hysteresis,
            negligible=levels.negligible,
            decay_cells=file.stage.decay_cells,
            clock_lead=timedelta(minutes=file.stage.clock_lead),
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


# --- the file's shape --------------------------------------------------------------------------


def _whole(value: Any, *, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"must be a whole number within [1, {high}], got {value!r}")
    return value


def _fraction(value: Any) -> float:
    share = number(value, low=0, high=1)
    if share in (0, 1):
        raise ValueError("must be a fraction strictly between 0 and 1")
    return share


Weight = Annotated[float, check_with(number, low=0, high=MAX_WEIGHT)]
Score = Annotated[float, check_with(number, low=0, high=MAX_WEIGHT, positive=True)]
Minutes = Annotated[float, check_with(number)]  # bounded by the horizon: see RecencyTable


def _weights(name: str, words: tuple[str, ...]) -> type[StrictModel]:
    """A table with exactly one weight per word of a vocabulary (built from the vocabulary, so
    the two cannot drift apart; mypy cannot see such a model's fields, hence the ignores)."""
    fields: dict[str, Any] = {word: (Weight, ...) for word in words}
    return create_model(name, __base__=StrictModel, **fields)


SeverityWeights = _weights("SeverityWeights", get_args(Severity))
CertaintyWeights = _weights("CertaintyWeights", get_args(Certainty))
VerificationWeights = _weights("VerificationWeights", get_args(Verification))


class RecencyTable(StrictModel):
    half_life: Minutes
    horizon: Annotated[float, check_with(number, low=0, high=MAX_HORIZON_MIN, positive=True)]
    types: dict[EventTypeKey, Minutes] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _within_horizon(self) -> Self:
        """Every half-life is > 0 and at most the horizon."""
        minutes: list[tuple[tuple[str, ...], float]] = [(("half_life",), self.half_life)]
        minutes += [(("types", name), m) for name, m in self.types.items()]
        for loc, value in minutes:
            try:
                number(value, low=0, high=self.horizon, positive=True)
            except ValueError as exc:
                raise KeyProblem(*loc, problem=str(exc)) from None
        return self


class LevelsTable(StrictModel):
    yellow: Score
    orange: Score
    red: Score
    hysteresis: Annotated[float, check_with(_fraction)]
    negligible: Weight

    @model_validator(mode="after")
    def _bands_apart(self) -> Self:
        keep = 1 - self.hysteresis
        for lower, upper, name in (
            (self.yellow, self.orange, "orange"),
            (self.orange, self.red, "red"),
        ):
            if not upper * keep > lower:
                problem = (
                    f"x (1 - hysteresis) = {upper * keep:g} must exceed the level below"
                    f" ({lower:g}): overlapping bands would make the levels flicker"
                )
                raise KeyProblem(name, problem=problem)
        if self.negligible >= self.yellow:
            problem = f"must be below levels.yellow ({self.yellow:g})"
            raise KeyProblem("negligible", problem=problem)
        return self


class StageTable(StrictModel):
    decay_cells: Annotated[int, check_with(_whole, high=MAX_DECAY_CELLS)]
    clock_lead: Annotated[float, check_with(number, low=0, high=MAX_CLOCK_LEAD_MIN)]


class RiskFile(StrictModel):
    """The whole file (see ``config/risk.toml``): every table and key, nothing else."""

    severity: SeverityWeights  # type: ignore[valid-type]
    certainty: CertaintyWeights  # type: ignore[valid-type]
    verification: VerificationWeights  # type: ignore[valid-type]
    recency: RecencyTable
    levels: LevelsTable
    stage: StageTable

    @model_validator(mode="after")
    def _no_rumour(self) -> Self:
        if _weights_of(self.verification, get_args(Verification))["refuted"] != 0:
            raise KeyProblem(
                "verification", "refuted", problem="must be 0: a rumour carries no risk"
            )
        return self


def _weights_of(table: BaseModel, words: tuple[str, ...]) -> Mapping[str, float]:
    """The weights in the vocabulary's order."""
    return MappingProxyType({word: getattr(table, word) for word in words})
