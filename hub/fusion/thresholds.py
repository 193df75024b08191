"""Sensor thresholds (``config/thresholds.toml``): per observation type (and per community) the
number to read, its limits for the levels yellow, orange and red, and a hysteresis band; and
``step``, the one rule of moving between levels.

Pure logic, no database. The file is validated strictly, like the correlation rules
(``hub.fusion.rules``): an unknown key, a wrong type, limits out of order or a band too wide is
an error naming the file and the key, so a typo never silently disables a warning.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import Field, model_validator

from hub.configfile import (
    KeyProblem,
    Problem,
    StrictModel,
    Text,
    check_with,
    dotted_line,
    number,
    one_of,
    read_toml,
    validate,
)
from hub.fusion.rules import ROOT, EventTypeKey, EventTypeValue, RulesError
from schemas.picture import NORMAL
from schemas.picture import RAISED_LEVELS as RAISED
from schemas.picture import THRESHOLD_LEVELS as LEVELS

SHIPPED = ROOT / "config" / "thresholds.toml"

SEVERITY = {"yellow": "Moderate", "orange": "Severe", "red": "Extreme"}  # CAP words
# Derived warnings' ids: uuid5 of (observation id, level) in this namespace, so a replay of the
# same observations makes the same events.
NAMESPACE = uuid.UUID("5d7f0c3a-2b8e-5f41-a9d6-3c1e7b4f8a20")

Direction = Literal["above", "below"]


class ThresholdsError(RulesError):
    """The thresholds file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """How one observation type (of one community, for an override) is judged."""

    property: str
    unit: str
    direction: Direction
    warning_type: str
    limits: tuple[float, float, float]  # yellow, orange, red
    band: float
    source: str  # "<file>#<section>": where the rule comes from, for the warning's provenance

    def limit(self, level: str) -> float:
        return self.limits[RAISED.index(level)]

    def reaches(self, value: float, limit: float) -> bool:
        """``value`` is at or beyond ``limit`` (on the bad side)."""
        return value >= limit if self.direction == "above" else value <= limit

    def level_of(self, value: float) -> str:
        """The level the value alone reaches (no hysteresis)."""
        reached = [lvl for lvl in RAISED if self.reaches(value, self.limit(lvl))]
        return reached[-1] if reached else NORMAL

    def holds(self, value: float, level: str) -> bool:
        """Whether a sensor in ``level`` stays in it: it has not fallen back beyond the limit by
        more than the band."""
        if level == NORMAL:
            return True
        back = self.band if self.direction == "above" else -self.band
        return self.reaches(value, self.limit(level) - back)


def rank(level: str | None) -> int:
    """A level's place on the scale; an unknown or missing level is normal."""
    return LEVELS.index(level) if level in LEVELS else 0


def step(state: str | None, value: float, rule: ThresholdRule) -> tuple[str, bool]:
    """The sensor's next level after reading ``value`` in level ``state`` (None: normal), and
    whether a warning is raised: only when the level goes up. Going down (only past a limit's
    hysteresis band) is silent; levels are nested, so a sensor falling from red may stay in
    orange while it holds orange's band."""
    current = LEVELS[rank(state)]
    reached = rule.level_of(value)
    if rank(reached) > rank(current):
        return reached, True
    held = next(
        lvl for lvl in reversed(LEVELS[: rank(current) + 1]) if rule.holds(value, lvl)
    )  # normal always holds
    return held, False


def warning_id(observation_id: uuid.UUID, level: str) -> uuid.UUID:
    """The derived warning's event id: the same observation and level, the same id."""
    return uuid.uuid5(NAMESPACE, f"{observation_id}/{level}")


@dataclass(frozen=True, slots=True)
class Thresholds:
    types: Mapping[str, ThresholdRule]  # read-only views
    communities: Mapping[str, Mapping[str, ThresholdRule]]
    source: str = "<thresholds>"

    @classmethod
    def load(cls, path: Path | str | None = None) -> Thresholds:
        """The thresholds in ``path``; the shipped file when None (cached: it never changes)."""
        if path is None:
            return _shipped()
        return _load_file(Path(path))

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str = "<thresholds>") -> Thresholds:
        """Thresholds from a parsed TOML document; ``source`` names it in errors."""
        file = validate(ThresholdsFile, data, source, ThresholdsError, line=_line)
        types = {t: table.rule(f"{source}#types.{t}") for t, table in file.types.items()}
        communities = {
            cid: MappingProxyType(
                {
                    t: table.rule(f"{source}#communities.{_quoted(cid)}.types.{t}")
                    for t, table in community.types.items()
                }
            )
            for cid, community in file.communities.items()
        }
        return cls(MappingProxyType(types), MappingProxyType(communities), source)

    def rule(self, event_type: str, community_id: str | None) -> ThresholdRule | None:
        """The rule for an observation of ``event_type`` in ``community_id``, if any."""
        own = self.communities.get(community_id or "", {})
        return own.get(event_type) or self.types.get(event_type)

    @property
    def event_types(self) -> list[str]:
        """Every observation type some rule applies to (sorted)."""
        return sorted({*self.types, *(t for own in self.communities.values() for t in own)})


@cache
def _shipped() -> Thresholds:
    return _load_file(SHIPPED)


def _load_file(path: Path) -> Thresholds:
    data = read_toml(path, ThresholdsError)
    shown = path.resolve()
    return Thresholds.parse(
        data, str(shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else path)
    )


# --- the file's shape --------------------------------------------------------------------------

Limit = Annotated[float, check_with(number, noun="a finite number")]


class RuleTable(StrictModel):
    """[types.<event_type>] (or a community's override, merged with it): one rule."""

    property: Text = "value"
    unit: Text
    direction: Annotated[Direction, check_with(one_of, words=get_args(Direction))]
    warning_type: EventTypeValue
    yellow: Limit
    orange: Limit
    red: Limit
    band: Limit

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        limits = (self.yellow, self.orange, self.red)
        sign = 1.0 if self.direction == "above" else -1.0
        gap = min(sign * (b - a) for a, b in itertools.pairwise(limits))
        if gap <= 0:
            order = "rise" if self.direction == "above" else "fall"
            raise KeyProblem(
                "orange", problem=f"yellow, orange, red must {order} strictly: {limits}"
            )
        if not 0 <= self.band < gap:
            problem = (
                f"must be >= 0 and below the gap between two limits ({gap:g}), got {self.band:g}"
            )
            raise KeyProblem("band", problem=problem)
        return self

    def rule(self, source: str) -> ThresholdRule:
        return ThresholdRule(
            property=self.property,
            unit=self.unit,
            direction=self.direction,
            warning_type=self.warning_type,
            limits=(self.yellow, self.orange, self.red),
            band=self.band,
            source=source,
        )


def _community_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a table named by a community id")
    return value


class CommunityTable(StrictModel):
    types: dict[EventTypeKey, RuleTable] = Field(default_factory=dict)


class ThresholdsFile(StrictModel):
    """The whole file (see ``config/thresholds.toml`` for every key)."""

    types: dict[EventTypeKey, RuleTable] = Field(default_factory=dict)
    communities: dict[Annotated[str, check_with(_community_id)], CommunityTable] = Field(
        default_factory=dict
    )

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: Any) -> Any:
        """An override takes the keys it omits from [types.<event_type>]: merged before the
        checks, so each override is checked as the whole rule it makes."""
        base, communities = _get_table(data, "types"), _get_table(data, "communities")
        if base is None or communities is None:
            return data  # not tables: the checks say so
        merged = {}
        for cid, table in communities.items():
            own = _get_table(table, "types")
            if own is not None:
                table = {**table, "types": {t: _merged(base.get(t), e) for t, e in own.items()}}
            merged[cid] = table
        return {**data, "communities": merged}


def _get_table(data: Any, key: str) -> dict[str, Any] | None:
    value = data.get(key, {}) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else None


def _merged(base: Any, entry: Any) -> Any:
    return {**base, **entry} if isinstance(base, dict) and isinstance(entry, dict) else entry


def _line(problem: Problem) -> str:
    """As every file's, but with the community id quoted (it may hold spaces and dots)."""
    loc = list(problem.loc)
    if len(loc) > 1 and loc[0] == "communities":
        loc[1] = _quoted(str(loc[1]))
    return dotted_line(problem, loc)


def _quoted(community_id: str) -> str:
    return json.dumps(community_id, ensure_ascii=False)
