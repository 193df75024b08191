"""Configuration files: TOML read into strict pydantic models, and errors that name the file and
the key, with a "did you mean" for a mistyped key.

One implementation for every declarative file of the hub: the correlation rules, thresholds
and risk files (``hub.fusion``) and the CSV column mappings (``connectors.mapping``). A leaf: it
imports nothing of the hub but ``hub.errors``, so connectors may use it.

A file's model derives from :class:`StrictModel` (unknown keys refused); :func:`validate` turns
pydantic's errors into one line per problem. Values are checked by small functions
(:func:`number`, :func:`flag`, ...) attached with :func:`check_with`, so the messages say what
the file's reader needs ("must be at most 50000, got 1e9"), not pydantic's internals. A check
that compares several keys raises :class:`KeyProblem` to name the key it blames.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError

from hub.errors import HubError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class StrictModel(BaseModel):
    """A table of a configuration file: unknown keys are errors, the values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyProblem(ValueError):
    """Raised by a validator that checks several keys together, about one of them: ``loc`` is
    relative to the table being validated (``KeyProblem("band", problem="too wide")``)."""

    def __init__(self, *loc: str | int, problem: str) -> None:
        super().__init__(problem)
        self.loc: Loc = loc


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document."""

    loc: Loc  # from the document's root; pydantic's union member tags are kept (see known_keys)
    kind: str  # pydantic's error type: "extra_forbidden", "missing", "value_error", ...
    text: str  # what is wrong: "unknown key", "missing", "must be a table", "must be > 0, got 0"
    hint: str = ""  # for an unknown key: " (did you mean 'window'?)" or " (known: a, b)"
    input: Any = None


def read_toml(path: Path, error: Callable[[str], HubError], what: str = "") -> dict[str, Any]:
    """The TOML document at ``path``, or ``error`` saying why it cannot be read; ``what``
    names the file in the message ("the mapping")."""
    named = f" {what}" if what else ""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read{named}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML: {exc}") from exc


def validate(
    model: type[M],
    data: Any,
    source: str,
    error: Callable[[str], HubError],
    *,
    line: Callable[[Problem], str | None] | None = None,
    header: str | None = None,
) -> M:
    """``data`` as a ``model``, or ``error`` listing every problem, one per line.

    ``line`` words a problem (None leaves it out; default :func:`dotted_line`). Without a
    ``header`` every line starts with ``source`` ("rules.toml: types.fire.window: missing");
    with one, the lines follow ``source: header`` indented."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        word = line or dotted_line
        lines = dict.fromkeys(text for p in problems(exc, model) if (text := word(p)) is not None)
        if header is None:
            message = "\n".join(f"{source}: {text}" for text in lines)
        else:
            message = f"{source}: {header}\n  " + "\n  ".join(lines)
        raise error(message) from None


_NOT_A_TABLE = frozenset({"model_type", "dict_type", "model_attributes_type"})


def problems(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """pydantic's errors for ``model``, in the file's words."""
    found = []
    for err in exc.errors():
        loc: Loc = tuple(p for p in err["loc"] if p != "[key]")  # a bad key: blame the key
        kind, hint = err["type"], ""
        text = str(err["msg"]).removeprefix("Value error, ")
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, KeyProblem):
            loc, text = loc + cause.loc, str(cause)
        elif kind == "extra_forbidden":
            text, hint = "unknown key", suggestion(str(loc[-1]), known_keys(model, loc[:-1]))
        elif kind == "missing":
            text = "missing"
        elif kind in _NOT_A_TABLE:
            text = "must be a table"
        elif kind == "list_type":
            text = "must be a list"
        found.append(Problem(loc, kind, text, hint, err.get("input")))
    return found


def dotted(loc: Sequence[str | int]) -> str:
    """``("compatible", "pairs", 0)`` -> ``compatible.pairs[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def dotted_line(problem: Problem, loc: Sequence[str | int] | None = None) -> str:
    """``types.fire.radius: unknown key (known: ...)``; ``loc`` replaces the problem's own."""
    where = dotted(problem.loc if loc is None else loc)
    return f"{where}: {problem.text}{problem.hint}" if where else problem.text + problem.hint


def suggestion(word: str, options: Sequence[str]) -> str:
    """The closest of ``options`` to a mistyped ``word``, else the options themselves."""
    close = difflib.get_close_matches(word, options, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(options)})" if options else ""


def known_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The keys the table at ``loc`` of a ``model`` document may hold."""
    found: list[Any] = [model]
    for part in loc:
        found = [child for tp in found for child in _below(tp, part)]
    return list(dict.fromkeys(k for tp in found for m in _models(tp) for k in m.model_fields))


def _unwrapped(tp: Any) -> Any:
    return get_args(tp)[0] if get_origin(tp) is Annotated else tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _models(tp: Any) -> list[type[BaseModel]]:
    """The models a field of type ``tp`` may hold (a union's members)."""
    tp = _unwrapped(tp)
    if _is_union(tp):
        return [m for arg in get_args(tp) for m in _models(arg)]
    return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _below(tp: Any, part: str | int) -> list[Any]:
    """The types one step of an error's location below a value of type ``tp``."""
    tp = _unwrapped(tp)
    if isinstance(part, str) and part.startswith("function-"):
        return [tp]  # a validator's tag in the location, not a key
    if _is_union(tp):
        # pydantic names the member it tried ("ColumnValue", "str"); else try every member.
        named = [arg for arg in get_args(tp) if getattr(arg, "__name__", None) == part]
        return named or [child for arg in get_args(tp) for child in _below(arg, part)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return [field.annotation] if field is not None else []
    origin, args = get_origin(tp), get_args(tp)
    if isinstance(origin, type) and issubclass(origin, Mapping | Sequence) and args:
        return [args[-1] if issubclass(origin, Mapping) else args[0]]
    return []


# --- value checks: each returns the value to keep or raises ValueError saying what is wrong ---


def check_with(check: Callable[..., Any], **options: Any) -> PlainValidator:
    """A field's whole validation: ``check(value, **options)`` (pydantic's own is skipped, so
    no lax conversion turns ``"30"`` into 30)."""
    return PlainValidator(lambda value: check(value, **options))


def number(
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    noun: str = "a number",
) -> float:
    """A finite TOML number (int or float, never a bool) within [low, high], > 0 if
    ``positive``; as a float."""
    # bool is an int in Python, but `window = true` is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be {noun}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"must be {_bounds(low, high)}, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return float(value)


def _bounds(low: float | None, high: float | None) -> str:
    if low is None:
        return f"at most {high:g}"
    if high is None:
        return f"at least {low:g}"
    return f"within [{low:g}, {high:g}]"


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def one_of(value: Any, *, words: Sequence[str]) -> str:
    if value not in words:
        listed = " or ".join(f'"{w}"' for w in words)
        raise ValueError(f"must be {listed}, got {value!r}")
    return str(value)


Flag = Annotated[bool, check_with(flag)]
Text = Annotated[str, check_with(text)]
