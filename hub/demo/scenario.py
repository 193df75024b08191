"""The scripted scenario of ``hub demo``, played after the SF replay through the running API.

Two stories at real San Francisco places, told by the communities' own clients
(``POST /v1/events``; a community client writes only its own community's events) and then
observed through the API like any client would:

* **A flood along Mission Creek**, across the border of Mission Bay and South of Market (the low,
  filled-in ground of the old Mission Bay marsh, where the creek's channel meets the streets
  north of the Caltrain yard). A water-level gauge on each side reports the water rising past
  the limits of ``config/thresholds.toml`` (the creek's gauge up to red, the street drain's to
  orange), and one resident on each side reports the flooded street. Fusion raises warnings,
  joins them and the residents' reports into one flood incident corroborated across the border,
  flags it to the communities around it (a client of Potrero Hill sees it flagged to it), and
  colours the cells.
* **A rumour** across the border of Mission and Bernal Heights (Folsom St, either side of Cesar
  Chavez St): a resident on each side reports a gas explosion that did not happen. Two
  independent sources corroborate it; a department whose jurisdiction covers both communities
  refutes it (``POST /v1/incidents/{id}/verification``). It stays visible, as refuted, with who
  decided and why, so that neighbours stop spreading it.

The places are real; the gauge readings, the residents and the rumour are SYNTHETIC: no sensor
data of December 2018 ships with the project, and the rumour is invented for the demo.

Times: right after the replay's last report (the latest observed_at of the SFPD events), so the
scenario lands in the December 2018 picture, whose risk and warnings run on the picture's own
clock; the wall clock would age the whole replay out of the risk. Event ids are
``uuid5(NAMESPACE, name)``: a re-run sends the very same events (fusion drops them as
duplicates), and a rumour already refuted is not refuted again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from hub.demo.clients import DemoClient, area, auth_headers, create_demo_client
from hub.demo.counters import fusion_counters
from hub.demo.feeds import slug
from hub.settings import Settings
from hub.stack.probes import api_url
from hub.store.db import connect, get_engine
from hub.store.stats import FusionCounters
from schemas.event import utc_text

NAMESPACE = uuid.UUID("0b7c4d52-93a1-5e0f-8c2d-6f1e9a3b7d40")
REPLAY_SYSTEM = "sfpd-incidents"  # source.system of the replayed reports (its mapping's)
SYNTHETIC = "synthetic: invented for the demo at a real place"
WAIT_S = 60.0
POLL_S = 0.25


@dataclass(frozen=True)
class Place:
    community: str  # the SF Analysis Neighborhood it lies in (tests check it with shapely)
    label: str
    lon: float
    lat: float


FLOOD_SIDES = ("Mission Bay", "South of Market")
CREEK = Place("Mission Bay", "Mission Creek at the 4th St bridge", -122.3920, 37.7741)
CHANNEL = Place("Mission Bay", "Channel St by Mission Creek Park", -122.3930, 37.7748)
BRANNAN = Place("South of Market", "4th St & Brannan St", -122.3966, 37.7781)
TOWNSEND = Place("South of Market", "4th St & Townsend St", -122.3954, 37.7772)
RUMOUR_SIDES = ("Mission", "Bernal Heights")
FOLSOM = Place("Mission", "Folsom St & 26th St", -122.4137, 37.7494)
PRECITA = Place("Bernal Heights", "Precita Ave & Folsom St", -122.4138, 37.7473)
FLOOD_PLACES = (CREEK, CHANNEL, BRANNAN, TOWNSEND)
RUMOUR_PLACES = (FOLSOM, PRECITA)
FLAGGED = "Potrero Hill"  # a neighbour of the flood, not flooded: it sees the warning flagged
REFUTATION = (
    "SFFD and the gas utility checked both blocks: no leak, no explosion, no damage. "
    "The report spread from a social-media post; do not share it."
)

# (place, sensor id, [(minutes after the replay's last report, metres)]): synthetic readings.
# The creek's gauge climbs through yellow (0.15), orange (0.30) and red (0.60); the street
# drain's through yellow and orange. The last creek reading stays within red's band.
GAUGES: tuple[tuple[Place, str, tuple[tuple[int, float], ...]], ...] = (
    (CREEK, "mission-creek-4th-st", ((5, 0.06), (15, 0.17), (25, 0.33), (35, 0.64), (45, 0.58))),
    (BRANNAN, "4th-brannan-drain", ((10, 0.04), (20, 0.16), (30, 0.31), (40, 0.36))),
)
# (place, minutes, event_type, severity, what the resident says): synthetic reports.
FLOOD_REPORTS = (
    (CHANNEL, 28, "flood", "Severe", "Creek over the path and into Channel St, still rising"),
    (TOWNSEND, 33, "flood", "Severe", "Street flooded at the Caltrain station, cars stuck"),
)
RUMOUR_REPORTS = (
    (FOLSOM, 50, "gas_leak", "Extreme", "Loud explosion, smell of gas, people running"),
    (PRECITA, 56, "gas_leak", "Extreme", "Gas explosion near the park, houses on fire"),
)


def event_id(name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, name)


def _point(place: Place) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [place.lon, place.lat]}


def gauge_events(t0: datetime) -> list[dict[str, Any]]:
    """The gauges' water_level observations (kind observation, value in metres)."""
    return [
        {
            "event_id": str(event_id(f"gauge/{sensor}/{minutes}")),
            "community_id": place.community,
            "source": {"system": f"{slug(place.community)}-gauges", "connector": "mqtt"},
            "kind": "observation",
            "category": "Met",
            "certainty": "Observed",
            "event_type": "water_level",
            "observed_at": utc_text(t0 + timedelta(minutes=minutes)),
            "geometry": _point(place),
            "properties": {
                "sensor_id": sensor,
                "value": value,
                "unit": "m",
                "place": place.label,
                "note": SYNTHETIC,
            },
        }
        for place, sensor, readings in GAUGES
        for minutes, value in readings
    ]


def resident_events(
    t0: datetime, reports: Iterable[tuple[Place, int, str, str, str]], category: str
) -> list[dict[str, Any]]:
    """Residents' reports (kind incident), each by a pseudonymous resident of its community."""
    out = []
    for place, minutes, event_type, severity, text in reports:
        name = f"resident/{event_type}/{slug(place.label)}/{minutes}"
        out.append(
            {
                "event_id": str(event_id(name)),
                "community_id": place.community,
                "source": {
                    "system": f"{slug(place.community)}-residents-app",
                    "connector": "webhook",
                    "reporter": "resident-" + event_id("reporter/" + name).hex[:12],
                },
                "kind": "incident",
                "category": category,
                "severity": severity,
                "urgency": "Immediate",
                "certainty": "Observed",
                "event_type": event_type,
                "observed_at": utc_text(t0 + timedelta(minutes=minutes)),
                "geometry": _point(place),
                "properties": {"description": text, "place": place.label, "note": SYNTHETIC},
            }
        )
    return out


def scenario_events(t0: datetime) -> list[dict[str, Any]]:
    """Every event the scenario sends, in observed_at order."""
    events = [
        *gauge_events(t0),
        *resident_events(t0, FLOOD_REPORTS, "Met"),
        *resident_events(t0, RUMOUR_REPORTS, "Safety"),
    ]
    return sorted(events, key=lambda e: e["observed_at"])


# --- the cast: one client per community involved, a neighbour and a department --------------


@dataclass(frozen=True)
class Cast:
    writers: dict[str, DemoClient]  # community -> its community client
    neighbour: DemoClient  # a community client of FLAGGED
    department: DemoClient  # jurisdiction: the rumour's two communities


def register_cast(settings: Settings) -> Cast:
    """Register the scenario's clients (``demo-community-<slug>``, ``demo-department-...``);
    call after ``register_demo_clients``, which revokes every earlier ``demo-*`` client."""
    base = api_url(settings)
    with get_engine(settings).begin() as conn:

        def community(name: str) -> DemoClient:
            label = f"community {name}"
            return create_demo_client(
                conn, base, "community", f"community-{slug(name)}", label, community_id=name
            )

        writers = {name: community(name) for name in (*FLOOD_SIDES, *RUMOUR_SIDES)}
        department = create_demo_client(
            conn,
            base,
            "department",
            "department-" + "-".join(slug(n) for n in RUMOUR_SIDES),
            f"department with jurisdiction {' + '.join(RUMOUR_SIDES)}",
            jurisdiction=area(*RUMOUR_SIDES),
        )
        return Cast(writers, community(FLAGGED), department)


# --- sending, and waiting for fusion ----------------------------------------------------------


def replay_clock(settings: Settings) -> datetime:
    """The replay's last report: the scenario's time zero (the same on every run)."""
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT max(observed_at) FROM event WHERE source_system = %s", (REPLAY_SYSTEM,)
        ).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError("no replayed report is stored: the scenario has no time to start at")
    at: datetime = row[0]
    return at


def send(http: httpx.Client, cast: Cast, events: list[dict[str, Any]]) -> int:
    """POST each community's events with its own client; returns how many were accepted."""
    accepted = 0
    for community, client in cast.writers.items():
        batch = [e for e in events if e["community_id"] == community]
        if batch:
            answer = http.post("/v1/events", json=batch, headers=auth_headers(http, client))
            answer.raise_for_status()
            accepted += len(answer.json()["accepted"])
    return accepted


def wait_for(what: str, found: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """``found()``'s first truthy answer; TimeoutError naming ``what`` when none comes."""
    deadline = time.monotonic() + timeout_s
    while not (answer := found()):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"scenario: {what} within {timeout_s:.0f} s (does fusion run with "
                "HUB_FUSION_INCIDENTS=1? a fusion worker already running keeps its settings)"
            )
        time.sleep(POLL_S)
    return answer


def wait_fused(settings: Settings, before: FusionCounters, sent: int) -> FusionCounters:
    """Wait until fusion consumed what the scenario sent; returns the counters' deltas."""

    def consumed() -> FusionCounters | None:
        delta = fusion_counters(settings) - before
        return delta if delta.consumed >= sent else None

    found: FusionCounters = wait_for(f"fusion consuming the {sent} events sent", consumed)
    return found


# --- observing through the API ----------------------------------------------------------------


def _bbox(*places: Place, pad: float = 0.003) -> str:
    lons, lats = [p.lon for p in places], [p.lat for p in places]
    return f"{min(lons) - pad},{min(lats) - pad},{max(lons) + pad},{max(lats) + pad}"


def _features(http: httpx.Client, headers: dict[str, str], path: str, **params: Any) -> Any:
    answer = http.get(path, params={"limit": 100, **params}, headers=headers)
    answer.raise_for_status()
    return answer.json()["features"]


def flood_warning(http: httpx.Client, headers: dict[str, str]) -> dict[str, Any] | None:
    """The flood's warning incident with both sides in it (None until fusion has it)."""
    warnings = _features(http, headers, "/v1/warnings", bbox=_bbox(CREEK, BRANNAN))
    both = [
        w
        for w in warnings
        if w["properties"]["event_type"] == "flood"
        and set(FLOOD_SIDES) <= set(w["properties"]["communities"])
    ]
    return max(both, key=lambda w: w["properties"]["reports"], default=None)


def flagged_to(http: httpx.Client, neighbour: DemoClient, incident_id: str) -> bool:
    """Whether the neighbour's own client sees the warning flagged to it."""
    headers = auth_headers(http, neighbour)
    warnings = _features(http, headers, "/v1/warnings", community=FLAGGED)
    return any(w["id"] == incident_id and w["properties"]["flagged_to_caller"] for w in warnings)


def rumour_incident(http: httpx.Client, headers: dict[str, str]) -> dict[str, Any] | None:
    """The rumour's incident once both residents' reports are in it."""
    found = _features(
        http, headers, "/v1/incidents", event_type="gas_leak", bbox=_bbox(FOLSOM, PRECITA)
    )
    both = [i for i in found if set(RUMOUR_SIDES) <= set(i["properties"]["communities"])]
    return both[0] if both else None


def refute(http: httpx.Client, headers: dict[str, str], incident: dict[str, Any]) -> bool:
    """Refute the rumour as the department, unless it is refuted already (a re-run);
    returns whether a decision was sent."""
    if incident["properties"]["verification"] == "refuted":
        return False
    answer = http.post(
        f"/v1/incidents/{incident['id']}/verification",
        json={"decision": "refuted", "reason": REFUTATION},
        headers=headers,
    )
    answer.raise_for_status()
    return True


# --- the whole scenario -----------------------------------------------------------------------


def run(settings: Settings, analyst: DemoClient) -> dict[str, Any]:
    """Send the scenario, wait for fusion, refute the rumour; what happened, as the API shows
    it (the keys of the demo's JSON summary ``scenario``)."""
    cast = register_cast(settings)
    t0 = replay_clock(settings)
    events = scenario_events(t0)
    before = fusion_counters(settings)
    with httpx.Client(base_url=api_url(settings), timeout=30) as http:
        sent = send(http, cast, events)
        delta = wait_fused(settings, before, sent)
        dept, whole = auth_headers(http, cast.department), auth_headers(http, analyst)
        found = wait_for("the rumour's incident", lambda: rumour_incident(http, dept))
        decided = refute(http, dept, found)
        rumour = wait_for("the refutation", lambda: _refuted(http, dept, found["id"]))
        flood = wait_for("the flood warning", lambda: flood_warning(http, whole))
        flagged = flagged_to(http, cast.neighbour, flood["id"])
    return _outcome(t0, sent, delta, decided, flood, flagged, rumour, cast)


def _refuted(http: httpx.Client, headers: dict[str, str], incident_id: str) -> Any:
    answer = http.get(f"/v1/incidents/{incident_id}", headers=headers)
    answer.raise_for_status()
    body = answer.json()
    return body if body["properties"]["verification"] == "refuted" else None


def _outcome(
    t0: datetime,
    sent: int,
    delta: FusionCounters,
    decided: bool,
    flood: dict[str, Any],
    flagged: bool,
    rumour: dict[str, Any],
    cast: Cast,
) -> dict[str, Any]:
    fp, rp = flood["properties"], rumour["properties"]
    return {
        "starts_at": utc_text(t0),
        "events_sent": sent,
        "events_stored": delta.stored,
        "duplicates_dropped": delta.duplicates,
        "dlq": delta.dlq,
        "flood_incident": flood["id"],
        "flood_verification": fp["verification"],
        "flood_communities": fp["communities"],
        "flood_warning_level": fp["level"],
        "flood_warning_neighbours": fp["neighbours"],
        "flood_flagged_neighbour": FLAGGED,
        "flood_flagged_neighbour_sees_it": flagged,
        "rumour_incident": rumour["id"],
        "rumour_communities": rp["communities"],
        "rumour_verification": rp["verification"],
        "rumour_decided_by": rp["decided_by"],
        "rumour_reason": rp["decision_reason"],
        "rumour_refuted_now": decided,
        "department_client": cast.department.client_id,
        "department": cast.department.label,
        "synthetic": "gauge readings, residents and the rumour (places are real)",
    }
