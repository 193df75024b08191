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
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from hub.fusion.rules import EVENT_TYPE, ROOT, RulesError, read_toml
from schemas.picture import NORMAL
from schemas.picture import RAISED_LEVELS as RAISED
from schemas.picture import THRESHOLD_LEVELS as LEVELS

SHIPPED = ROOT / "config" / "thresholds.toml"

SEVERITY = {"yellow": "Moderate", "orange": "Severe", "red": "Extreme"}  # CAP words
# Derived warnings' ids: uuid5 of (observation id, level) in this namespace, so a replay of the
# same observations makes the same events.
NAMESPACE = uuid.UUID("5d7f0c3a-2b8e-5f41-a9d6-3c1e7b4f8a20")

Direction = Literal["above", "below"]

_TOP_KEYS = frozenset({"types", "communities"})
_COMMUNITY_KEYS = frozenset({"types"})
_RULE_KEYS = frozenset(
    {"property", "unit", "direction", "warning_type", "yellow", "orange", "red", "band"}
)
_REQUIRED = _RULE_KEYS - {"property"}


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
        _keys(data, _TOP_KEYS, source, "")
        raw_types = _types(data, "types", source, "")
        types = {t: _rule(entry, source, f"types.{t}") for t, entry in raw_types.items()}
        communities = {}
        for cid, table in _table(data, "communities", source, "communities").items():
            at = f"communities.{json.dumps(cid, ensure_ascii=False)}"
            if not cid.strip() or not isinstance(table, dict):
                raise _fail(source, at, "must be a table named by a community id")
            _keys(table, _COMMUNITY_KEYS, source, at)
            own = {
                t: _rule({**raw_types.get(t, {}), **entry}, source, f"{at}.types.{t}")
                for t, entry in _types(table, "types", source, f"{at}.").items()
            }
            communities[cid] = MappingProxyType(own)
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


# --- validation -------------------------------------------------------------------------------


def _fail(source: str, key: str, problem: str) -> ThresholdsError:
    return ThresholdsError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def _keys(table: Mapping[str, Any], allowed: frozenset[str], source: str, at: str) -> None:
    for key in sorted(table):
        if key not in allowed:
            where = f"{at}.{key}" if at else key
            raise _fail(
                source, where, f"unknown key (expected one of {', '.join(sorted(allowed))})"
            )


def _table(data: Mapping[str, Any], key: str, source: str, at: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(source, at, "must be a table")
    return value


def _types(data: Mapping[str, Any], key: str, source: str, prefix: str) -> dict[str, Any]:
    types = _table(data, key, source, f"{prefix}{key}")
    for name, entry in types.items():
        if not EVENT_TYPE.match(name):
            raise _fail(
                source, f"{prefix}types.{name}", "not an event type (^[a-z][a-z0-9_]{0,63}$)"
            )
        if not isinstance(entry, dict):
            raise _fail(source, f"{prefix}types.{name}", "must be a table")
    return dict(types)


def _finite(value: Any, source: str, key: str) -> float:
    # bool is an int in Python, but `band = true` is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(source, key, f"must be a finite number, got {value!r}")
    return float(value)


def _text(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, key, f"must be a non-empty string, got {value!r}")
    return value


def _rule(entry: Mapping[str, Any], source: str, at: str) -> ThresholdRule:
    _keys(entry, _RULE_KEYS, source, at)
    missing = sorted(_REQUIRED - set(entry))
    if missing:
        raise _fail(source, f"{at}.{missing[0]}", "missing")
    direction = entry["direction"]
    if direction not in ("above", "below"):
        raise _fail(source, f"{at}.direction", f'must be "above" or "below", got {direction!r}')
    warning_type = _text(entry["warning_type"], source, f"{at}.warning_type")
    if not EVENT_TYPE.match(warning_type):
        raise _fail(source, f"{at}.warning_type", f"{warning_type!r} is not an event type")
    limits = tuple(_finite(entry[lvl], source, f"{at}.{lvl}") for lvl in RAISED)
    sign = 1.0 if direction == "above" else -1.0
    gaps = [sign * (b - a) for a, b in itertools.pairwise(limits)]
    if min(gaps) <= 0:
        order = "rise" if direction == "above" else "fall"
        raise _fail(source, f"{at}.orange", f"yellow, orange, red must {order} strictly: {limits}")
    band = _finite(entry["band"], source, f"{at}.band")
    if not 0 <= band < min(gaps):
        raise _fail(
            source,
            f"{at}.band",
            f"must be >= 0 and below the gap between two limits ({min(gaps):g}), got {band:g}",
        )
    return ThresholdRule(
        property=_text(entry.get("property", "value"), source, f"{at}.property"),
        unit=_text(entry["unit"], source, f"{at}.unit"),
        direction=direction,
        warning_type=warning_type,
        limits=(limits[0], limits[1], limits[2]),
        band=band,
        source=f"{source}#{at}",
    )
