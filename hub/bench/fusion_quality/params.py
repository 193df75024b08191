"""The knobs of the report generator and of the scenarios built on the real incidents."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GeneratorParams:
    seed: int = 7
    sigma_m: float = 50.0  # GPS noise per axis (metres)
    noise: float = 1.0  # stress knob: multiplies sigma_m
    density: int = 1  # stress knob: days folded onto one (truth.fold_days)
    delay_mean_s: float = 180.0
    delay_cap_s: float = 1800.0
    confusion: float = 0.05
    sources_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)  # P(1 source), P(2) ...
    system_share: float = 0.2  # of sources: an automated system rather than a resident
    neighbour_share: float = 0.3  # of resident sources: from a neighbouring community
    reporters_per_community: int = 100
    time_jitter_s: float = 0.0  # normal jitter of observed_at around the true time
    id_salt: str = ""  # set per run to get fresh event ids against the same database
    # Scenarios (hub.bench.fusion_quality.scenarios); the defaults leave the incidents as they are.
    dataset: str = "sfpd"  # whose true incidents: "sfpd" (police) or "sffd" (fire calls)
    storm_hours: float = 0.0  # > 0: every day's incidents packed into these hours (truth.storm)
    hotspots: int = 0  # real places that draw hotspot_share of the incidents onto themselves
    hotspot_share: float = 0.12
    mixed_share: float = 0.0  # incidents made a collision with injured beside a medical call
    floods: int = 0  # area-wide, lasting floods added at real places and times
    offset_source: str = ""  # the system that geocodes to a street centroid (offset_m off)
    offset_m: tuple[float, float] = (80.0, 150.0)  # its displacement, drawn per incident

    def variant_tag(self) -> str:
        """Distinct per parameter set, so each variant's events have ids of their own."""
        return "|".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))
