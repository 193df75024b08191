"""Correlation rules (``config/correlation.toml``): per event type a distance, a time window
and whether it correlates at all, plus the table of compatible types.

The file is validated strictly: an unknown key, a wrong type or a non-positive number is an
error naming the file and the key, so a typo never silently falls back to the defaults.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "correlation.toml"

# The event contract's pattern: a name that does not fit could never match an event.
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Beyond these a "same incident" is no longer plausible, and the clustering grid (cells as
# large as the largest limit) would degrade towards comparing everything with everything.
MAX_DISTANCE_M = 50_000.0
MAX_WINDOW_MIN = 7 * 24 * 60.0

_TOP_KEYS = frozenset({"defaults", "types", "compatible", "sources"})
_SOURCES_KEYS = frozenset({"same_place_m", "corroborate_within"})
# Two sources corroborate when their reports lie within this share of the pair's reach.
DEFAULT_CORROBORATE_WITHIN = 0.5
# An automated source that reports two places farther apart than this reports two emergencies.
DEFAULT_SAME_PLACE_M = 150.0
_RULE_KEYS = frozenset({"distance_m", "window", "correlate"})
_COMPATIBLE_KEYS = frozenset({"pairs"})


class RulesError(ValueError):
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
        _check_keys(data, _TOP_KEYS, source, "")
        default = _type_rule(
            _table(data, "defaults", source), None, source, "defaults", require_all=True
        )
        types = {
            name: _type_rule(entry, default, source, f"types.{name}")
            for name, entry in _types_table(data, source).items()
        }
        compatible = _pairs(_table(data, "compatible", source), types, default, source)
        sources = _table(data, "sources", source)
        same_place, within = _sources(sources, source)
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


def read_toml(path: Path, error: type[ValueError]) -> dict[str, Any]:
    """A configuration file of ``config/``, or ``error`` saying why it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML: {exc}") from exc


def _fail(source: str, key: str, problem: str) -> RulesError:
    return RulesError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], source: str, at: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{at}.{unknown[0]}" if at else unknown[0]
        raise _fail(source, where, f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _table(data: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(source, key, "must be a table")
    return value


def _types_table(data: Mapping[str, Any], source: str) -> Mapping[str, Mapping[str, Any]]:
    types = _table(data, "types", source)
    for name, entry in types.items():
        if not EVENT_TYPE.match(name):
            raise _fail(source, f"types.{name}", "not an event type (^[a-z][a-z0-9_]{0,63}$)")
        if not isinstance(entry, dict):
            raise _fail(source, f"types.{name}", "must be a table")
    return types


def _number(value: Any, source: str, key: str, upper: float) -> float:
    # bool is an int in Python, but `distance_m = true` is a typo, not a distance.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(source, key, f"must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise _fail(source, key, f"must be a number > 0, got {value!r}")
    if value > upper:
        raise _fail(source, key, f"must be at most {upper:g}, got {value!r}")
    return float(value)


def _type_rule(
    entry: Mapping[str, Any],
    default: TypeRule | None,
    source: str,
    at: str,
    *,
    require_all: bool = False,
) -> TypeRule:
    _check_keys(entry, _RULE_KEYS, source, at)
    if require_all:
        missing = sorted(_RULE_KEYS - set(entry))
        if missing:
            raise _fail(source, f"{at}.{missing[0]}", "missing")
    correlate = entry.get("correlate", default.correlate if default else True)
    if not isinstance(correlate, bool):
        raise _fail(source, f"{at}.correlate", f"must be true or false, got {correlate!r}")
    distance = (
        _number(entry["distance_m"], source, f"{at}.distance_m", MAX_DISTANCE_M)
        if "distance_m" in entry
        else _inherited(default).distance_m
    )
    window = (
        timedelta(minutes=_number(entry["window"], source, f"{at}.window", MAX_WINDOW_MIN))
        if "window" in entry
        else _inherited(default).window
    )
    return TypeRule(distance, window, correlate)


def _inherited(default: TypeRule | None) -> TypeRule:
    assert default is not None, "[defaults] requires every key, checked before"
    return default


def _sources(table: Mapping[str, Any], source: str) -> tuple[float, float]:
    """[sources]: same_place_m (metres) and corroborate_within (a share of the reach, <= 1)."""
    _check_keys(table, _SOURCES_KEYS, source, "sources")
    same = table.get("same_place_m", DEFAULT_SAME_PLACE_M)
    within = table.get("corroborate_within", DEFAULT_CORROBORATE_WITHIN)
    return (
        _number(same, source, "sources.same_place_m", MAX_DISTANCE_M),
        _number(within, source, "sources.corroborate_within", 1.0),
    )


def _is_pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(t, str) for t in value)


def _pairs(
    table: Mapping[str, Any], types: Mapping[str, TypeRule], default: TypeRule, source: str
) -> frozenset[frozenset[str]]:
    _check_keys(table, _COMPATIBLE_KEYS, source, "compatible")
    pairs = table.get("pairs", [])
    if not isinstance(pairs, list):
        raise _fail(source, "compatible.pairs", "must be a list of [type, type] pairs")
    seen: set[frozenset[str]] = set()
    for i, pair in enumerate(pairs):
        key = f"compatible.pairs[{i}]"
        if not _is_pair(pair):
            raise _fail(source, key, f"must be a pair of two type names, got {pair!r}")
        for name in pair:
            if not EVENT_TYPE.match(name):
                raise _fail(source, key, f"{name!r} is not an event type")
            if not types.get(name, default).correlate:
                raise _fail(source, key, f"{name!r} has correlate = false: it links to nothing")
        if pair[0] == pair[1]:
            raise _fail(source, key, f"{pair[0]!r} twice: equal types are always compatible")
        if frozenset(pair) in seen:
            raise _fail(source, key, f"{pair!r} repeats an earlier pair")
        seen.add(frozenset(pair))
    return frozenset(seen)
