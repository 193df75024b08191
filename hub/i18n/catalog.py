"""Message catalogues and language negotiation.

Messages have symbolic ids (``status.404``, ``cap.headline.warning``) and a translation in
every language's catalogue, English included: the words live in the ``.po`` files, where a
translator edits them with the usual gettext tools, never in the code. A message's text may
hold ``{name}`` fields, filled with :meth:`str.format`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from babel.messages.pofile import PoFileError, read_po

from hub.errors import ConfigError

Language = Literal["en-US", "zh-CN"]
LANGUAGES: tuple[Language, ...] = get_args(Language)
DEFAULT: Language = "en-US"
LOCALE_DIR = Path(__file__).parent / "locale"
_DIRS: dict[Language, str] = {"en-US": "en", "zh-CN": "zh_CN"}
DOMAIN = "hub"


class CatalogueError(ConfigError):
    """A shipped catalogue is missing or broken: the installation's fault."""


@lru_cache(maxsize=len(LANGUAGES))
def catalogue(language: Language) -> dict[str, str]:
    """``language``'s messages, id -> text (fuzzy and empty translations left out)."""
    path = LOCALE_DIR / _DIRS[language] / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        with path.open("rb") as handle:
            parsed = read_po(handle, locale=_DIRS[language], domain=DOMAIN, abort_invalid=True)
    except (OSError, PoFileError) as exc:
        raise CatalogueError(f"{path}: cannot read the message catalogue: {exc}") from exc
    return {
        str(m.id): str(m.string)
        for m in parsed
        if m.id and isinstance(m.string, str) and m.string and not m.fuzzy
    }


def translate(language: Language, message_id: str, **fields: Any) -> str:
    """The message in ``language`` (English when that catalogue lacks it; the id itself when
    no catalogue has it, so a missing translation shows, and fails the catalogue test)."""
    text = catalogue(language).get(message_id) or catalogue(DEFAULT).get(message_id, message_id)
    return text.format(**fields) if fields else text


def negotiate(accept_language: str | None) -> Language:
    """The language an ``Accept-Language`` header prefers among :data:`LANGUAGES` (RFC 9110
    12.5.4: quality values, ``zh`` or ``zh-Hans`` match Chinese, ``*`` the default); English
    when none is acceptable or the header is absent or malformed."""
    best: tuple[float, int, Language] | None = None
    for order, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = _quality(params)
        language = _match(tag.strip().lower())
        if language is None or quality <= 0:
            continue
        rank = (quality, -order, language)
        if best is None or rank[:2] > best[:2]:
            best = rank
    return best[2] if best is not None else DEFAULT


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def _match(tag: str) -> Language | None:
    primary = tag.split("-")[0]
    if primary == "zh" and not any(t in tag for t in ("-hant", "-tw", "-hk", "-mo")):
        return "zh-CN"  # simplified Chinese: the only Chinese catalogue shipped
    if primary in ("en", "*"):
        return DEFAULT
    return None
