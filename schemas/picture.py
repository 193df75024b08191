"""The picture's vocabulary: the words fusion writes into the fused picture and the store and the
API read back (risk and threshold levels, verification and incident states, CAP's orders, what a
neighbour may see, the connector of the warnings fusion derives).

A leaf like ``schemas.event``: one definition of each word, so that fusion, the store and the API
agree without importing each other. Literals double as pydantic field types in the API.
"""

from __future__ import annotations

from typing import Literal, get_args

from schemas.event import SEVERITIES, Certainty, Status

# --- risk per grid cell (``hub.fusion.risk``) ---------------------------------------------------

RiskLevel = Literal["blue", "yellow", "orange", "red"]
RISK_LEVELS: tuple[RiskLevel, ...] = get_args(RiskLevel)  # in rising order

# --- sensor thresholds (``hub.fusion.thresholds``) ----------------------------------------------

RaisedLevel = Literal["yellow", "orange", "red"]  # a warning's levels
ThresholdLevel = Literal["normal", RaisedLevel]
RAISED_LEVELS: tuple[RaisedLevel, ...] = get_args(RaisedLevel)  # in rising order
THRESHOLD_LEVELS: tuple[ThresholdLevel, ...] = get_args(ThresholdLevel)  # in rising order
NORMAL: ThresholdLevel = THRESHOLD_LEVELS[0]
# source.connector of the alerts fusion derives from readings that cross a threshold
DERIVED_ALERT_CONNECTOR = "hub-thresholds"

# --- incidents ----------------------------------------------------------------------------------

Decision = Literal["verified", "refuted"]  # a principal's word on an incident
Verification = Literal["reported", "corroborated", Decision]
VERIFICATIONS: tuple[Verification, ...] = get_args(Verification)
IncidentState = Literal["open", "closed"]
INCIDENT_STATES: tuple[IncidentState, ...] = get_args(IncidentState)

# CAP's orders, most serious / most certain first: the order the contract's Literals list them in.
SEVERITY_ORDER: tuple[str, ...] = SEVERITIES
CERTAINTY_ORDER: tuple[str, ...] = get_args(Certainty)
# Certainties too weak to set an incident's severity (unless no report is any surer).
NOT_CREDIBLE = frozenset({"Unlikely", "Unknown"})

# --- pictures and sharing -----------------------------------------------------------------------

PICTURES: tuple[Status, ...] = get_args(Status)  # the real one, and the drills

# The picture other communities may see of a community's incidents, risk and resources: the real
# one; its drills and tests are its own business.
SHARED_STATUS: Status = "actual"
