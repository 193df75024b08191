"""The report of one connector run: what was read, sent, rejected and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table


@dataclass
class ConnectorReport:
    """Counts of one run. After a delivered run
    ``rows_read == events_produced + rejected + unchanged`` (``unchanged``: rows an incremental
    source had already sent as they are; ``changed``: the produced events that update one)."""

    source: str
    system: str
    outbox: str
    rows_read: int = 0
    events_produced: int = 0  # this run's events acknowledged by Kafka
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # reject reason -> rows
    unassigned: int = 0  # events published without a community (fusion decides)
    unchanged: int = 0  # rows already sent as they are (incremental sources: xlsx, sql)
    changed: int = 0  # produced events updating a row sent before (refs its event)
    notes: Counter[str] = field(default_factory=Counter)  # e.g. DST folds, per kind
    earlier_delivered: int = 0  # events an earlier run left in the outbox, delivered first
    pending: int = 0  # events still in the outbox (the broker never acknowledged them)
    broker_error: str | None = None
    elapsed_s: float = 0.0

    @property
    def delivered(self) -> bool:
        return self.pending == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "system": self.system,
            "outbox": self.outbox,
            "rows_read": self.rows_read,
            "events_produced": self.events_produced,
            "rejected": self.rejected,
            "reasons": dict(self.reasons.most_common()),
            "unassigned": self.unassigned,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "notes": dict(self.notes),
            "earlier_delivered": self.earlier_delivered,
            "pending": self.pending,
            "delivered": self.delivered,
            "broker_error": self.broker_error,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def summary_table(report: ConnectorReport) -> Table:
    table = Table(title=f"connector run: {report.system}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = report.rows_read / report.elapsed_s if report.elapsed_s else 0.0
    rows: list[tuple[str, str]] = [
        ("rows read", f"{report.rows_read:,}"),
        ("events produced (acknowledged)", f"{report.events_produced:,}"),
        ("rejected", f"{report.rejected:,}"),
        *((f"  {reason}", f"{n:,}") for reason, n in report.reasons.most_common()),
        ("published without community", f"{report.unassigned:,}"),
        ("unchanged since the last run (not sent)", f"{report.unchanged:,}"),
        ("updates of rows sent before", f"{report.changed:,}"),
        *((f"note: {note}", f"{n:,}") for note, n in report.notes.most_common()),
        ("earlier events delivered first", f"{report.earlier_delivered:,}"),
        ("left in the outbox", _pending(report)),
        ("elapsed", f"{report.elapsed_s:.2f} s ({rate:,.0f} rows/s)"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return table


def _pending(report: ConnectorReport) -> str:
    if report.delivered:
        return "0"
    return f"[red]{report.pending:,}[/] ({report.broker_error or 'broker unreachable'})"
