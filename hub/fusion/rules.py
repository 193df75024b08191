"""Correlation rules (``config/correlation.toml``): per event type a distance, a time window
and whether it correlates at all, plus the table of compatible types.

The file is validated strictly: an unknown key, a wrong type or a non-positive number is an
error naming the file and the key, so a typo never silently falls back to the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, NamedTuple, Self

from pydantic import Field, model_validator

from hub.configfile import (
    Flag,
    KeyProblem,
    StrictModel,
    check_with,
    number,
    read_toml,
    validate,
)
from hub.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "correlation.toml"

# The event contract's pattern: a name that does not fit could never match an event.
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Beyond these a "same incident" is no longer plausible, and the clustering grid (cells as
# large as the largest limit) would degrade towards comparing everything with everything.
MAX_DISTANCE_M = 50_000.0
MAX_WINDOW_MIN = 7 * 24 * 60.0

# Two sources corroborate when their reports lie within this share of the pair's reach.
DEFAULT_CORROBORATE_WITHIN = 0.5
# An automated source that reports two places farther apart than this reports two emergencies.
DEFAULT_SAME_PLACE_M = 150.0


class RulesError(ConfigError, ValueError):
    """The rules file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class TypeRule:
    distance_m: float
    window: timedelta
    correlate: bool


class Reach(NamedTuple):
    """How far (metres) and how long (either way in time) a report may link."""

    distance_m: float
    window: timedelta


@dataclass(frozen=True, slots=True)
class Rules:
    default: TypeRule
    types: Mapping[str, TypeRule]  # read-only view
    compatible: frozenset[frozenset[str]]  # unordered pairs of different types
    source: str = "<rules>"
    same_place_m: float = DEFAULT_SAME_PLACE_M  # see config/correlation.toml [sources]
    corroborate_within: float = DEFAULT_CORROBORATE_WITHIN

    @classmethod
    def load(cls, path: Path | str | None = None) -> Rules:
        """The rules in ``path``; the shipped file when None (cached: it never changes)."""
        if path is None:
            return _shipped()
        return _load_file(Path(path))

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str = "<rules>") -> Rules:
        """Rules from a parsed TOML document; ``source`` names it in errors."""
        file = validate(RulesFile, data, source, RulesError)
        d = file.defaults
        default = TypeRule(d.distance_m, timedelta(minutes=d.window), d.correlate)
        types = {name: table.rule(default) for name, table in file.types.items()}
        compatible = frozenset({frozenset(pair) for pair in file.compatible.pairs})
        same_place, within = file.sources.same_place_m, file.sources.corroborate_within
        return cls(default, MappingProxyType(types), compatible, source, same_place, within)

    def rule(self, event_type: str) -> TypeRule:
        return self.types.get(event_type, self.default)

    def compatible_types(self, a: str, b: str) -> bool:
        """Whether reports of types ``a`` and ``b`` may link by proximity."""
        if not (self.rule(a).correlate and self.rule(b).correlate):
            return False
        return a == b or frozenset((a, b)) in self.compatible

    def limits(self, a: str, b: str) -> Reach | None:
        """The pair's limits (the larger distance and window of the two), or None when the
        types are not compatible."""
        if not self.compatible_types(a, b):
            return None
        ra, rb = self.rule(a), self.rule(b)
        return Reach(max(ra.distance_m, rb.distance_m), max(ra.window, rb.window))

    def partners(self, event_type: str) -> frozenset[str]:
        """The types a report of ``event_type`` may link to by proximity (itself included);
        empty when it does not correlate."""
        if not self.rule(event_type).correlate:
            return frozenset()
        others = {t for pair in self.compatible if event_type in pair for t in pair}
        return frozenset(others | {event_type})

    def reach(self, event_type: str) -> Reach | None:
        """The farthest any partner type may link to a report of ``event_type``."""
        pairs = [self.limits(event_type, other) for other in self.partners(event_type)]
        found = [p for p in pairs if p is not None]
        if not found:
            return None
        return Reach(max(p.distance_m for p in found), max(p.window for p in found))


@cache
def _shipped() -> Rules:
    return _load_file(SHIPPED)


def _load_file(path: Path) -> Rules:
    return Rules.parse(read_toml(path, RulesError), str(path))


# --- the file's shape --------------------------------------------------------------------------


def event_type(value: Any, *, named: bool = False) -> str:
    """An event type code; ``named``: the message quotes the value (a key's message need not,
    the key is in the location already)."""
    if not isinstance(value, str) or not EVENT_TYPE.match(value):
        raise ValueError(
            f"{value!r} is not an event type"
            if named
            else f"not an event type ({EVENT_TYPE.pattern})"
        )
    return value


EventTypeKey = Annotated[str, check_with(event_type)]  # a table named by an event type
EventTypeValue = Annotated[str, check_with(event_type, named=True)]
Distance = Annotated[float, check_with(number, positive=True, high=MAX_DISTANCE_M)]
Minutes = Annotated[float, check_with(number, positive=True, high=MAX_WINDOW_MIN)]
Share = Annotated[float, check_with(number, positive=True, high=1.0)]


class DefaultsTable(StrictModel):
    distance_m: Distance
    window: Minutes
    correlate: Flag


class TypeTable(StrictModel):
    """[types.<event_type>]: a key left out (None) is taken from [defaults]."""

    distance_m: Distance | None = None
    window: Minutes | None = None
    correlate: Flag | None = None

    def rule(self, default: TypeRule) -> TypeRule:
        return TypeRule(
            default.distance_m if self.distance_m is None else self.distance_m,
            default.window if self.window is None else timedelta(minutes=self.window),
            default.correlate if self.correlate is None else self.correlate,
        )


def _pair(value: Any) -> tuple[str, str]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(t, str) for t in value)):
        raise ValueError(f"must be a pair of two type names, got {value!r}")
    for name in value:
        event_type(name, named=True)
    if value[0] == value[1]:
        raise ValueError(f"{value[0]!r} twice: equal types are always compatible")
    return value[0], value[1]


class CompatibleTable(StrictModel):
    pairs: list[Annotated[tuple[str, str], check_with(_pair)]] = Field(default_factory=list)


class SourcesTable(StrictModel):
    same_place_m: Distance = DEFAULT_SAME_PLACE_M
    corroborate_within: Share = DEFAULT_CORROBORATE_WITHIN


class RulesFile(StrictModel):
    """The whole file (see ``config/correlation.toml`` for every key)."""

    defaults: DefaultsTable
    types: dict[EventTypeKey, TypeTable] = Field(default_factory=dict)
    compatible: CompatibleTable = Field(default_factory=CompatibleTable)
    sources: SourcesTable = Field(default_factory=SourcesTable)

    @model_validator(mode="after")
    def _pairs_link(self) -> Self:
        seen: set[frozenset[str]] = set()
        for i, pair in enumerate(self.compatible.pairs):
            for name in pair:
                if not self._correlates(name):
                    problem = f"{name!r} has correlate = false: it links to nothing"
                    raise KeyProblem("compatible", "pairs", i, problem=problem)
            if frozenset(pair) in seen:
                problem = f"{list(pair)!r} repeats an earlier pair"
                raise KeyProblem("compatible", "pairs", i, problem=problem)
            seen.add(frozenset(pair))
        return self

    def _correlates(self, name: str) -> bool:
        own = self.types.get(name)
        return self.defaults.correlate if own is None or own.correlate is None else own.correlate
