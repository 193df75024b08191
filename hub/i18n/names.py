"""Display names of event types, CAP categories and communities, in every language.

The shipped catalogue is ``config/names.toml``; an operator adds or overrides names with a file
of the same shape (``HUB_NAMES_EXTRA``), read over it. A code without a name reads as itself
made legible (``gas_leak`` -> "Gas leak"); a Chinese name left out reads as the English one (the
SF neighbourhoods keep their English names where no Chinese one is in common use).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field

from hub.configfile import StrictModel, read_toml, validate
from hub.errors import InvalidInput
from hub.i18n.catalog import Language

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "names.toml"
Kind = Literal["categories", "event_types", "communities"]


class NamesError(InvalidInput):
    """A names file that cannot be read or does not have the expected shape."""


class Name(StrictModel):
    en: str = Field(min_length=1)
    zh_cn: str | None = Field(None, alias="zh-CN", min_length=1)


class NamesFile(StrictModel):
    categories: dict[str, Name] = {}
    event_types: dict[str, Name] = {}
    communities: dict[str, Name] = {}


class Names:
    """Names by kind and code, the extra file's over the shipped ones."""

    def __init__(self, *files: NamesFile) -> None:
        self._names: dict[str, dict[str, Name]] = {}
        for file in files:
            for kind in ("categories", "event_types", "communities"):
                self._names.setdefault(kind, {}).update(getattr(file, kind))

    def name(self, kind: Kind, code: str, language: Language) -> str:
        found = self._names.get(kind, {}).get(code)
        if found is None:
            return code if kind == "communities" else code.replace("_", " ").capitalize()
        return found.zh_cn or found.en if language == "zh-CN" else found.en

    def known(self, kind: Kind) -> frozenset[str]:
        return frozenset(self._names.get(kind, {}))


def read_names(path: Path) -> NamesFile:
    data = read_toml(path, NamesError, "names file")
    return validate(NamesFile, data, str(path), NamesError)


@lru_cache(maxsize=8)
def load_names(extra: Path | None = None) -> Names:
    """The shipped names, with ``extra``'s over them (cached: files are read once)."""
    files = [read_names(SHIPPED)]
    if extra is not None:
        files.append(read_names(extra))
    return Names(*files)
