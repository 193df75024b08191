"""How good a grouping of reports is, against the true incidents.

* B-cubed precision, recall and F1 (``bcubed``): the headline.
* Corroboration (``corroboration``): an incident is corroborated when >= 2 independent sources
  (distinct ``source_key``s) stand behind it. It is FALSELY corroborated when no true incident
  among its members has >= 2 sources there: the second source only came with a different
  emergency merged in, and people would trust a rumour for it. ``mixed`` is the stricter count:
  corroborated incidents that hold reports of more than one true incident at all.
* The largest incident (``largest_incident``): one huge incident made of many emergencies is
  the failure single linkage risks in a dense place; its size, how many true incidents it
  holds and its purity, and how many incidents reach 10 reports against the truth.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from hub.bench.fusion_quality.generator import GeneratedReport

ClusterId = Hashable
BIG_INCIDENT = 10  # reports: "a big incident", counted against the truth


class Clusterer(Protocol):
    """Groups reports into incidents: report_id -> cluster id (any hashable label)."""

    def __call__(self, reports: Sequence[GeneratedReport], /) -> Mapping[str, ClusterId]: ...


@dataclass(frozen=True)
class BCubed:
    precision: float
    recall: float
    f1: float


def bcubed(predicted: Mapping[str, ClusterId], truth: Mapping[str, ClusterId]) -> BCubed:
    """B-cubed (Bagga & Baldwin 1998), averaged over items, in O(n).

    A report's precision is |its predicted cluster ∩ its true cluster| / |predicted cluster|;
    summed over the reports sharing one (predicted, true) pair that is n_pt² / n_p, so three
    counters suffice. F1 is the harmonic mean of the averaged precision and recall.
    """
    if predicted.keys() != truth.keys():
        raise ValueError("predicted and truth must label the same reports")
    if not truth:
        raise ValueError("B-cubed of no reports is undefined")
    pairs = Counter((predicted[k], t) for k, t in truth.items())
    size_p = Counter(predicted.values())
    size_t = Counter(truth.values())
    precision = sum(n * n / size_p[p] for (p, _), n in pairs.items()) / len(truth)
    recall = sum(n * n / size_t[t] for (_, t), n in pairs.items()) / len(truth)
    return BCubed(precision, recall, 2 * precision * recall / (precision + recall))


def _members(
    reports: Sequence[GeneratedReport], clusters: Mapping[str, ClusterId]
) -> dict[ClusterId, list[GeneratedReport]]:
    out: dict[ClusterId, list[GeneratedReport]] = defaultdict(list)
    for r in reports:
        out[clusters[r.report_id]].append(r)
    return out


def corroborated_share(
    reports: Sequence[GeneratedReport], clusters: Mapping[str, ClusterId]
) -> float:
    """Share of clusters holding >= 2 independent sources (distinct ``source_key``s)."""
    members = _members(reports, clusters)
    if not members:
        return 0.0
    return sum(len({r.source_key for r in m}) >= 2 for m in members.values()) / len(members)


@dataclass(frozen=True)
class Corroboration:
    corroborated: int  # clusters with >= 2 distinct source_keys
    false: int  # of those: no true incident among the members has >= 2 sources there
    mixed: int  # of those: members of more than one true incident

    @property
    def false_share(self) -> float:
        return self.false / self.corroborated if self.corroborated else 0.0

    @property
    def mixed_share(self) -> float:
        return self.mixed / self.corroborated if self.corroborated else 0.0


class Claimed(dict[str, ClusterId]):
    """A clustering that also says which of its clusters it calls corroborated (the hub's
    verification state); a plain mapping claims every cluster with >= 2 sources."""

    def __init__(self, labels: Mapping[str, ClusterId], corroborated: Collection[ClusterId]):
        super().__init__(labels)
        self.corroborated = frozenset(corroborated)


def corroboration(
    reports: Sequence[GeneratedReport],
    clusters: Mapping[str, ClusterId],
    claimed: Collection[ClusterId] | None = None,
) -> Corroboration:
    """Corroborated clusters (those ``claimed``, or else those with >= 2 distinct sources),
    and how many of them owe it to merging (module doc)."""
    corroborated = false = mixed = 0
    for cluster, members in _members(reports, clusters).items():
        if len({r.source_key for r in members}) < 2:
            continue
        if claimed is not None and cluster not in claimed:
            continue
        corroborated += 1
        sources: dict[str, set[str]] = defaultdict(set)  # true incident -> its sources here
        for r in members:
            sources[r.incident_id].add(r.source_key)
        false += all(len(s) < 2 for s in sources.values())
        mixed += len(sources) > 1
    return Corroboration(corroborated, false, mixed)


@dataclass(frozen=True)
class Largest:
    reports: int
    true_incidents: int  # distinct true incidents among its reports
    purity: float  # share of its reports from its largest true incident


def largest_incident(
    reports: Sequence[GeneratedReport], clusters: Mapping[str, ClusterId]
) -> Largest:
    """The cluster with the most reports; of equal ones, the first in report order."""
    best: list[GeneratedReport] = []
    for members in _members(reports, clusters).values():
        if len(members) > len(best):
            best = members
    if not best:
        return Largest(0, 0, 1.0)
    per_true = Counter(r.incident_id for r in best)
    return Largest(len(best), len(per_true), max(per_true.values()) / len(best))


def big_incidents(clusters: Mapping[str, ClusterId], at_least: int = BIG_INCIDENT) -> int:
    """How many clusters hold ``at_least`` reports."""
    return sum(n >= at_least for n in Counter(clusters.values()).values())


def evaluate(reports: Sequence[GeneratedReport], clusterer: Clusterer) -> dict[str, Any]:
    """Run ``clusterer`` on ``reports`` and score it against the true incidents.

    A report the clusterer leaves out (e.g. lost on the way through the pipeline) counts as an
    incident of its own, and is counted in ``unclustered``.
    """
    started = time.perf_counter()
    found = clusterer(reports)
    seconds = time.perf_counter() - started
    ids = {r.report_id for r in reports}
    if not found.keys() <= ids:
        raise ValueError("the clusterer labelled reports it was not given")
    predicted: dict[str, ClusterId] = {r.report_id: ("unclustered", r.report_id) for r in reports}
    predicted.update(found)
    truth = {r.report_id: r.incident_id for r in reports}
    score = bcubed(predicted, truth)
    n = len(reports)
    n_pred, n_true = len(set(predicted.values())), len(set(truth.values()))
    corroborated = corroboration(reports, predicted, getattr(found, "corroborated", None))
    return {
        "reports": n,
        "unclustered": n - len(found),
        "true_incidents": n_true,
        "predicted_incidents": n_pred,
        "precision": score.precision,
        "recall": score.recall,
        "f1": score.f1,
        "corroborated_share": corroborated_share(reports, predicted),
        "true_corroborated_share": corroborated_share(reports, truth),
        "false_corroboration": corroborated.false_share,
        "mixed_corroborated": corroborated.mixed_share,
        "corroborated_incidents": corroborated.corroborated,
        "largest_incident": asdict(largest_incident(reports, predicted)),
        "true_largest_incident": largest_incident(reports, truth).reports,
        "incidents_10_plus": big_incidents(predicted),
        "true_incidents_10_plus": big_incidents(truth),
        "incidents_per_1000_reports": 1000 * n_pred / n,
        "true_incidents_per_1000_reports": 1000 * n_true / n,
        "seconds": seconds,
        "reports_per_s": n / seconds if seconds > 0 else math.inf,
    }
