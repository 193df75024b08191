"""The mapping of a CAP connector: a TOML file parsed into a strict pydantic model.

Every key (``*`` = required):

``[source]``
  * ``system``      name of the source system (``[A-Za-z0-9][A-Za-z0-9._-]*``); names the outbox
                    and the cursor file. Event ids do not depend on it: an alert is
                    ``uuid5(sender, identifier)`` wherever it comes from.
  ``connector``     the ``source.connector`` of the events (default ``"cap"``).

``[event]``
  ``languages``     preferred ``<info>`` languages, e.g. ``["en-CA", "en"]``: the first ``<info>``
                    in one of them gives the event's category, severity ... (default: the first
                    ``<info>``). Every ``<info>`` is kept in ``properties.info`` anyway.
  ``event_types``   table: CAP ``<event>`` text (any case) -> event_type code.
  ``event_codes``   table: ``"valueName:value"`` of an ``<eventCode>`` -> event_type code; looked
                    up before ``event_types``, e.g. ``"SAME:FFW" = "flood"``.
  ``unmapped``      ``"normalise"`` (default: ``"Flash Flood Watch"`` -> ``flash_flood_watch``) or
                    ``"default"`` (every unmapped event takes ``default``).
  ``default``       the code when nothing maps or normalises (default ``"cap_alert"``).

``[area]``
  ``circle_segments`` vertices of the polygon that stands for a CAP circle (default 32; the
                    circle's centre and radius are kept in ``properties.circles``).

``[geocode.NAME]``  a table per geocode ``valueName`` (``SAME``, ``FIPS6``, ``EMMA_ID`` ...):
                    ``"value" = { lon = .., lat = .., radius_km = .. }``; with ``radius_km``
                    the place is a circle, without it a point.

``[signatures]``
  ``trust_anchors`` PEM bundle of the CA certificates (or pinned signer certificates) that may
                    sign alerts; relative to the mapping file. Set: every ``ds:Signature`` is
                    checked at the alert's ``sent`` time and a bad one rejects the alert.
                    Unset: signatures are not checked (counted as a note).
  ``required``      reject unsigned alerts (default false; needs ``trust_anchors``).
  ``allow_sha1``    accept SHA-1 digests and signatures, as older CAP feeds use (default false).

Unknown keys are errors (with a "did you mean").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from connectors.mapping import EVENT_TYPE
from hub.configfile import StrictModel, read_toml, validate
from hub.errors import ConfigError

Code = Annotated[str, Field(pattern=EVENT_TYPE.pattern)]


class CapMappingError(ConfigError, ValueError):
    """The CAP mapping file cannot be used; the message names the file and every problem."""


class SourceSection(StrictModel):
    system: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    connector: Annotated[str, Field(min_length=1, max_length=200)] = "cap"


class EventSection(StrictModel):
    languages: list[str] = Field(default_factory=list)
    event_types: dict[str, Code] = Field(default_factory=dict)
    event_codes: dict[str, Code] = Field(default_factory=dict)
    unmapped: Literal["normalise", "default"] = "normalise"
    default: Code = "cap_alert"

    @field_validator("event_codes")
    @classmethod
    def _named(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if ":" not in k]
        if bad:
            raise ValueError(f"keys are 'valueName:value', got {', '.join(map(repr, bad))}")
        return value


class AreaSection(StrictModel):
    circle_segments: Annotated[int, Field(ge=8, le=360)] = 32


class Place(StrictModel):
    lon: Annotated[float, Field(ge=-180, le=180)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    radius_km: Annotated[float, Field(gt=0, le=5000)] | None = None


class SignatureSection(StrictModel):
    trust_anchors: Path | None = None
    required: bool = False
    allow_sha1: bool = False

    @model_validator(mode="after")
    def _anchored(self) -> Self:
        if self.required and self.trust_anchors is None:
            raise ValueError("required = true needs trust_anchors (a PEM bundle)")
        return self


class CapMapping(StrictModel):
    """A whole CAP mapping file (see the module docstring for every key)."""

    source: SourceSection
    event: EventSection = Field(default_factory=EventSection)
    area: AreaSection = Field(default_factory=AreaSection)
    geocode: dict[str, dict[str, Place]] = Field(default_factory=dict)
    signatures: SignatureSection = Field(default_factory=SignatureSection)


def load_cap_mapping(path: Path) -> CapMapping:
    """Read and validate a CAP mapping; ``trust_anchors`` resolved against the file's folder
    and checked to exist. Raises ``CapMappingError`` with every problem found."""
    mapping = parse_cap_mapping(read_toml(path, CapMappingError, "the mapping"), str(path))
    anchors = mapping.signatures.trust_anchors
    if anchors is None:
        return mapping
    resolved = anchors if anchors.is_absolute() else (path.parent / anchors)
    if not resolved.is_file():
        raise CapMappingError(f"{path}: [signatures] trust_anchors: no file {resolved}")
    signatures = mapping.signatures.model_copy(update={"trust_anchors": resolved})
    return mapping.model_copy(update={"signatures": signatures})


def parse_cap_mapping(data: dict[str, Any], source: str = "mapping") -> CapMapping:
    return validate(CapMapping, data, source, CapMappingError, header="invalid CAP mapping")
