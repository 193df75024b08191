"""The ``properties`` of a ``kind=resource`` event: part of the event contract (``event.v1``).

A resource event is a community's statement of what it has available or what it needs, one
resource at a time. Its ``properties``:

- ``resource_type`` (required): a code like ``event_type`` (``^[a-z][a-z0-9_]{0,63}$``), e.g.
  ``drinking_water``, ``sandbags``, ``volunteers``, ``rescue_team``;
- ``quantity`` (required): a finite JSON number >= 0, how much of it (0 states that nothing is
  available, or nothing is needed any more);
- ``unit`` (required): short text (1 to 32 characters, no leading or trailing space), e.g.
  ``litre``, ``bag``, ``person``, ``team``; quantities in different units are never added up or
  matched against each other;
- ``direction`` (required): ``available`` (stock the community could lend) or ``needed``;
- ``note`` (optional): free text for people, at most 500 characters.

Other members are allowed and kept with the event; the hub does not read them.

Each statement replaces the community's earlier statement of the same resource type, unit,
direction and picture (``status``): the latest by ``observed_at`` counts, a late-arriving older
one does not. A ``cancel`` event of the same community and picture whose ``refs`` name a
statement withdraws it (the one before it counts again). Fusion dead-letters a resource event
whose properties break these rules (``schema_violation``, the detail names the field).

Example::

    {"resource_type": "drinking_water", "quantity": 1200, "unit": "litre",
     "direction": "available", "note": "bottled, at the community hall"}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Direction = Literal["available", "needed"]
DIRECTIONS: tuple[str, ...] = ("available", "needed")

ResourceType = Annotated[str, Field(strict=True, pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# strict: a JSON number, never "12" nor true; JSON has no NaN or Infinity, nor does the contract.
Quantity = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Unit = Annotated[str, Field(strict=True, min_length=1, max_length=32, pattern=r"^\S(?:.*\S)?$")]


class ResourceProperties(BaseModel):
    """A resource statement (the module doc is its contract)."""

    # extra members are allowed (and ignored here); frozen: a statement is a value.
    model_config = ConfigDict(extra="allow", frozen=True)

    resource_type: ResourceType
    quantity: Quantity
    unit: Unit
    direction: Direction
    note: Annotated[str | None, Field(strict=True, max_length=500)] = None


def parse_resource(properties: Any) -> ResourceProperties:
    """Validate a resource event's ``properties``; raises ``pydantic.ValidationError``."""
    return ResourceProperties.model_validate(properties)
