"""Per-community feeds: the real SFPD export split the way communities would each send it."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

UNASSIGNED = "(no neighbourhood)"


@dataclass(frozen=True)
class Feed:
    community: str  # the neighbourhood, or UNASSIGNED for rows that name none
    path: Path
    rows: int


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "feed"


def split_by_community(source: Path, column: str, out_dir: Path) -> list[Feed]:
    """One CSV per value of ``column`` (rows with an empty value go to their own feed, whose
    connector assigns communities from the polygons and rejects what has no coordinates)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with source.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        groups: dict[str, list[dict[str, str]]] = {}
        for row in reader:
            groups.setdefault(row.get(column) or UNASSIGNED, []).append(row)
    feeds = []
    for community, rows in sorted(groups.items()):
        path = out_dir / f"{slug(community)}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        feeds.append(Feed(community, path, len(rows)))
    return feeds
