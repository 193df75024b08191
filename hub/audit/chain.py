"""The audit hash chain: canonical form of an entry, linking, and verification (no I/O).

Each row carries ``hash = sha256(prev_hash || canonical_json(id, record))`` and the ``prev_hash``
it was linked to; the first row links to :data:`GENESIS`. Ids are gapless (1, 2, 3, ...), so a
deleted row shows as a gap, and a changed row as a hash that no longer matches its contents.

The canonical form is fixed here and nowhere else, because every stored hash depends on it:
a JSON object with sorted keys and no whitespace (orjson, UTF-8, non-ASCII unescaped), holding
``id`` and every :class:`AuditRecord` field; ``at`` as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``;
``duration_ms`` as a string with exactly three decimals (so a float on the way in and a
``numeric(12,3)`` on the way back out hash alike). Changing any of this invalidates the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

GENESIS = bytes(32)  # prev_hash of row 1
MILLI = Decimal("0.001")


@dataclass(frozen=True)
class AuditRecord:
    """One audited request: who, what, when, from where, and what came of it."""

    at: datetime  # request start, tz-aware
    method: str
    endpoint: str | None  # route template ("/v1/events/{event_id}"); None: no route matched
    path: str  # the path as requested
    params: Mapping[str, Any]  # {"path": {...}, "query": {name: value | [values]}}
    status: int
    rows: int | None  # rows returned or written, as the view reported it; None: not reported
    duration_ms: Decimal
    client_addr: str | None = None
    subject: str | None = None  # None: anonymous (no principal on the request)
    principal_kind: str | None = None
    client_id: str | None = None
    issuer: str | None = None


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AuditRecord))


def canonical_json(entry_id: int, record: AuditRecord) -> bytes:
    """The bytes that get hashed; see the module docstring for the exact form."""
    prefix, suffix = canonical_parts(record)
    return prefix + str(entry_id).encode() + suffix


def canonical_parts(record: AuditRecord) -> tuple[bytes, bytes]:
    """``canonical_json(id, record) == prefix + str(id) + suffix``.

    The append lets PostgreSQL splice the id in and hash, so that taking the next id, linking
    and writing are one statement (one round trip) under the head lock.
    """
    if record.at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    doc: dict[str, Any] = {name: getattr(record, name) for name in RECORD_FIELDS}
    doc["at"] = record.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc["duration_ms"] = format(Decimal(record.duration_ms).quantize(MILLI), "f")
    # Sorted keys, no whitespace: the keys before "id" and those after it serialise apart.
    before = orjson.dumps({k: v for k, v in doc.items() if k < "id"}, option=orjson.OPT_SORT_KEYS)
    after = orjson.dumps({k: v for k, v in doc.items() if k > "id"}, option=orjson.OPT_SORT_KEYS)
    return before[:-1] + b',"id":', b"," + after[1:]


def link_hash(prev_hash: bytes, entry_id: int, record: AuditRecord) -> bytes:
    return hashlib.sha256(prev_hash + canonical_json(entry_id, record)).digest()


@dataclass(frozen=True)
class ChainRow:
    """A stored row as the verifier sees it."""

    id: int
    record: AuditRecord
    prev_hash: bytes
    hash: bytes

    @classmethod
    def link(cls, entry_id: int, record: AuditRecord, prev_hash: bytes) -> ChainRow:
        return cls(entry_id, record, prev_hash, link_hash(prev_hash, entry_id, record))


def build_chain(records: Iterable[AuditRecord]) -> list[ChainRow]:
    """A fresh chain from genesis (tests, and the reference of what append must produce)."""
    rows: list[ChainRow] = []
    prev = GENESIS
    for n, record in enumerate(records, start=1):
        rows.append(ChainRow.link(n, record, prev))
        prev = rows[-1].hash
    return rows


@dataclass(frozen=True)
class Head:
    """The last appended row, as recorded next to the log (catches deleted tail rows)."""

    last_id: int
    last_hash: bytes


ProblemKind = Literal["changed", "deleted", "broken_link", "truncated"]


@dataclass(frozen=True)
class Problem:
    row_id: int  # the stored row at which the problem shows (for "truncated": the head's id)
    kind: ProblemKind
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"row_id": self.row_id, "kind": self.kind, "detail": self.detail}


@dataclass
class Verification:
    rows: int = 0
    last_id: int = 0
    last_hash: bytes = GENESIS
    problems: list[Problem] = field(default_factory=list)  # the first max_problems
    problem_count: int = 0

    @property
    def intact(self) -> bool:
        return self.problem_count == 0

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None


class ChainVerifier:
    """Checks rows one at a time, in id order, so a log of any size streams through it.

    After a problem it resynchronises on the stored values (next id = this id + 1, previous
    hash = this row's stored hash), so one edit or one deletion is reported once, not as a
    cascade over every later row.
    """

    def __init__(self, max_problems: int = 100) -> None:
        self.max_problems = max_problems
        self.result = Verification()
        self._expected_id = 1
        self._prev = GENESIS

    def feed(self, row: ChainRow) -> None:
        problem = self._check(row)
        if problem is not None:
            self._report(problem)
        self._expected_id = row.id + 1
        self._prev = row.hash
        self.result.rows += 1
        self.result.last_id = row.id
        self.result.last_hash = row.hash

    def _check(self, row: ChainRow) -> Problem | None:
        # Order matters: a deletion also breaks the link, and should be named as a deletion.
        if row.id != self._expected_id:
            if row.id > self._expected_id:
                span = _span(self._expected_id, row.id - 1)
                return Problem(
                    row.id,
                    "deleted",
                    f"{span} missing (deleted): ids jump from {self._expected_id - 1} to {row.id}",
                )
            return Problem(
                row.id, "changed", f"id {row.id} out of order: expected {self._expected_id}"
            )
        if row.prev_hash != self._prev:
            return Problem(
                row.id,
                "broken_link",
                f"prev_hash {row.prev_hash.hex()[:16]}... is not the hash of row {row.id - 1} "
                f"({self._prev.hex()[:16]}...): the row before it was replaced or re-hashed",
            )
        if link_hash(row.prev_hash, row.id, row.record) != row.hash:
            return Problem(
                row.id,
                "changed",
                f"row {row.id} was edited: its contents no longer match its stored hash",
            )
        return None

    def finish(self, head: Head | None = None) -> Verification:
        """Close the walk; ``head`` (when known) catches rows deleted from the end."""
        if head is not None and (head.last_id, head.last_hash) != (
            self.result.last_id,
            self.result.last_hash,
        ):
            if head.last_id > self.result.last_id:
                detail = (
                    f"{_span(self.result.last_id + 1, head.last_id)} missing at the end "
                    f"(deleted): the head records row {head.last_id} as the last"
                )
            else:
                detail = (
                    f"the head records row {head.last_id} ({head.last_hash.hex()[:16]}...) "
                    f"but the log ends at row {self.result.last_id} "
                    f"({self.result.last_hash.hex()[:16]}...)"
                )
            self._report(Problem(head.last_id, "truncated", detail))
        return self.result

    def _report(self, problem: Problem) -> None:
        self.result.problem_count += 1
        if len(self.result.problems) < self.max_problems:
            self.result.problems.append(problem)


def verify(
    rows: Iterable[ChainRow], head: Head | None = None, max_problems: int = 100
) -> Verification:
    verifier = ChainVerifier(max_problems)
    for row in rows:
        verifier.feed(row)
    return verifier.finish(head)


def _span(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first}..{last}"
