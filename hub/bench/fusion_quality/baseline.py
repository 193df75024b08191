"""The issue's naive baseline: the nearest open cluster within 300 m / 30 min, in arrival
order, blind to types and sources. The hub must beat it on the same reports."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hub.bench.fusion_quality.generator import GeneratedReport
from hub.bench.fusion_quality.world import local_metric


@dataclass
class _Cluster:
    sx: float  # sums of member coordinates (metres), for the centroid
    sy: float
    n: int
    t_min: float
    t_max: float
    keys: list[tuple[int, int, int]] = field(default_factory=list)  # where it is in the grid

    @property
    def centroid(self) -> tuple[float, float]:
        return self.sx / self.n, self.sy / self.n


def naive_baseline(
    reports: Sequence[GeneratedReport], *, radius_m: float = 300.0, window_s: float = 1800.0
) -> dict[str, int]:
    """The issue's naive baseline: in arrival order, each report joins the nearest open cluster
    whose centroid is within ``radius_m``, or starts one. A cluster is open for a report whose
    ``observed_at`` lies within ``window_s`` of the cluster's span of observed times. Types and
    sources are ignored.

    The centroid (mean of the members, in metres) rather than the first report: with GPS noise
    the first report is as far off as any, the mean converges on the true place.
    Spatial hashing: a cluster sits in the grid cell (``radius_m`` square) of its centroid, once
    per ``window_s`` time bucket its span touches; a report only looks at the 3 x 3 cells and
    3 buckets around it, which hold every cluster that can qualify.
    """
    if not reports:
        return {}
    x, y = _project(reports)
    clusters: list[_Cluster] = []
    grid: dict[tuple[int, int, int], set[int]] = defaultdict(set)
    out: dict[str, int] = {}
    for i in sorted(range(len(reports)), key=lambda j: reports[j].arrival_order):
        px, py, t = float(x[i]), float(y[i]), reports[i].observed_s
        best = _nearest_open(grid, clusters, px, py, t, radius_m, window_s)
        if best is None:
            best = len(clusters)
            clusters.append(_Cluster(px, py, 1, t, t))
        else:
            c = clusters[best]
            c.sx, c.sy, c.n = c.sx + px, c.sy + py, c.n + 1
            c.t_min, c.t_max = min(c.t_min, t), max(c.t_max, t)
        _rehash(grid, best, clusters[best], radius_m, window_s)
        out[reports[i].report_id] = best
    return out


def _project(reports: Sequence[GeneratedReport]) -> tuple[np.ndarray, np.ndarray]:
    lon = np.array([r.lon for r in reports])
    lat = np.array([r.lat for r in reports])
    to_m = local_metric(float(lon.mean()), float(lat.mean()))
    x, y = to_m.transform(lon, lat)
    return np.asarray(x), np.asarray(y)


def _nearest_open(
    grid: Mapping[tuple[int, int, int], set[int]],
    clusters: Sequence[_Cluster],
    px: float,
    py: float,
    t: float,
    radius_m: float,
    window_s: float,
) -> int | None:
    cx, cy, tb = math.floor(px / radius_m), math.floor(py / radius_m), math.floor(t / window_s)
    best, best_d2 = None, radius_m * radius_m
    for gx in (cx - 1, cx, cx + 1):
        for gy in (cy - 1, cy, cy + 1):
            for gt in (tb - 1, tb, tb + 1):
                for k in grid.get((gx, gy, gt), ()):
                    c = clusters[k]
                    if not c.t_min - window_s <= t <= c.t_max + window_s:
                        continue
                    mx, my = c.centroid
                    d2 = (mx - px) ** 2 + (my - py) ** 2
                    # Ties go to the older cluster, so the result never depends on set order.
                    if d2 < best_d2 or (d2 == best_d2 and best is not None and k < best):
                        best, best_d2 = k, d2
    return best


def _rehash(
    grid: dict[tuple[int, int, int], set[int]],
    k: int,
    c: _Cluster,
    radius_m: float,
    window_s: float,
) -> None:
    mx, my = c.centroid
    cx, cy = math.floor(mx / radius_m), math.floor(my / radius_m)
    lo, hi = math.floor(c.t_min / window_s), math.floor(c.t_max / window_s)
    keys = [(cx, cy, tb) for tb in range(lo, hi + 1)]
    if keys == c.keys:
        return
    for key in c.keys:
        grid[key].discard(k)
    for key in keys:
        grid[key].add(k)
    c.keys = keys
