"""Where a fusion worker's batches spend their time: ``hub_fusion_step_seconds`` (the insert,
each stage of the picture, the commit) scraped from the worker's own metrics endpoint before
and after a phase, as the mean milliseconds per batch of each step in between."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Totals = dict[str, tuple[float, float]]  # step -> (seconds summed, batches)

_FAMILY = "hub_fusion_step_seconds"


def scrape_steps(port: int, timeout_s: float = 5.0) -> Totals:
    """The step histogram's sums and counts on the worker at ``port`` (loopback)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as answer:
        text = answer.read().decode()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != _FAMILY:
            continue
        for sample in family.samples:
            step = sample.labels.get("step", "")
            if sample.name == f"{_FAMILY}_sum":
                sums[step] = sample.value
            elif sample.name == f"{_FAMILY}_count":
                counts[step] = sample.value
    return {step: (sums.get(step, 0.0), counts[step]) for step in counts}


def scrape_or_none(port: int) -> Totals | None:
    """``scrape_steps``, or None when the worker does not answer: a figure of where the time
    goes is a diagnosis, never a reason to fail a benchmark."""
    try:
        return scrape_steps(port)
    except OSError:
        return None


def mean_ms(before: Mapping[str, tuple[float, float]], after: Totals) -> dict[str, float]:
    """Per step, its mean milliseconds per batch between two scrapes (steps that ran)."""
    out = {}
    for step, (seconds, batches) in after.items():
        s0, b0 = before.get(step, (0.0, 0.0))
        if batches > b0:
            out[step] = round(1000 * (seconds - s0) / (batches - b0), 1)
    return out
