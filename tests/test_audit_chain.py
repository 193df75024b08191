"""The audit hash chain, without a database: any single change or deletion is named."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hub.audit.chain import (
    GENESIS,
    RECORD_FIELDS,
    AuditRecord,
    ChainRow,
    Head,
    build_chain,
    canonical_json,
    link_hash,
    verify,
)
from hub.audit.record import audited, client_address, request_params, trusted_networks

text = st.text(max_size=12)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "at": st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    "method": st.sampled_from(["GET", "POST", "HEAD", "DELETE"]),
    "endpoint": st.none() | st.sampled_from(["/v1/events", "/v1/events/{event_id}"]),
    "path": text,
    "params": st.fixed_dictionaries(
        {
            "path": st.dictionaries(text, text, max_size=2),
            "query": st.dictionaries(
                text, text | st.lists(text, min_size=2, max_size=3), max_size=3
            ),
        }
    ),
    "status": st.integers(100, 599),
    "rows": st.none() | st.integers(0, 10**6),
    "duration_ms": st.integers(0, 10**9).map(lambda n: Decimal(n).scaleb(-3)),
    "client_addr": st.none() | text,
    "subject": st.none() | text,
    "principal_kind": st.none() | st.sampled_from(["community", "department"]),
    "client_id": st.none() | text,
    "issuer": st.none() | text,
}
assert set(FIELDS) == set(RECORD_FIELDS), "a new record field needs a strategy here"
records = st.builds(AuditRecord, **FIELDS)
chains = st.lists(records, min_size=3, max_size=12).map(build_chain)


def head_of(rows: list[ChainRow]) -> Head:
    return Head(rows[-1].id, rows[-1].hash) if rows else Head(0, GENESIS)


@given(st.lists(records, max_size=12).map(build_chain))
def test_intact_chain_verifies(rows: list[ChainRow]) -> None:
    result = verify(rows, head_of(rows))
    assert result.intact, result.problems
    assert result.rows == len(rows)
    assert [r.id for r in rows] == list(range(1, len(rows) + 1))


@settings(max_examples=300)
@given(chains, st.data())
def test_any_single_record_field_change_names_that_row(
    rows: list[ChainRow], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    name = data.draw(st.sampled_from(RECORD_FIELDS), label="field")
    old = getattr(rows[i].record, name)
    new = data.draw(FIELDS[name], label="new value")
    assume(new != old)
    tampered = list(rows)
    tampered[i] = dataclasses.replace(
        rows[i], record=dataclasses.replace(rows[i].record, **{name: new})
    )
    result = verify(tampered, head_of(rows))
    assert result.first is not None
    assert (result.first.row_id, result.first.kind) == (rows[i].id, "changed")
    assert result.problem_count == 1  # reported once, not as a cascade


@given(chains, st.data())
def test_any_chain_column_change_names_that_row(rows: list[ChainRow], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    column = data.draw(st.sampled_from(["id", "prev_hash", "hash"]), label="column")
    new: Any = data.draw(
        st.integers(1, 10**6) if column == "id" else st.binary(min_size=32, max_size=32)
    )
    assume(new != getattr(rows[i], column))
    tampered = list(rows)
    tampered[i] = dataclasses.replace(rows[i], **{column: new})
    result = verify(tampered, head_of(rows))
    assert result.first is not None
    assert result.first.row_id == tampered[i].id


@given(chains, st.data())
def test_deleting_any_middle_row_names_the_gap(rows: list[ChainRow], data: st.DataObject) -> None:
    i = data.draw(st.integers(1, len(rows) - 2), label="deleted")
    result = verify(rows[:i] + rows[i + 1 :], head_of(rows))
    assert result.first is not None
    assert (result.first.row_id, result.first.kind) == (rows[i + 1].id, "deleted")
    assert f"row {rows[i].id} missing" in result.first.detail
    assert result.problem_count == 1


@given(records, st.integers(1, 2**63 - 1))
def test_spliced_form_is_the_sorted_json_of_the_entry(record: AuditRecord, entry_id: int) -> None:
    # The append hashes prefix || id || suffix in PostgreSQL; that must be the documented form.
    doc = {name: getattr(record, name) for name in RECORD_FIELDS}
    doc.update(
        id=entry_id,
        at=record.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        duration_ms=f"{record.duration_ms:.3f}",
    )
    assert canonical_json(entry_id, record) == orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def sample(**changes: Any) -> AuditRecord:
    record = AuditRecord(
        at=datetime(2026, 11, 30, 8, 25, 0, 123456, tzinfo=UTC),
        method="GET",
        endpoint="/v1/events/{event_id}",
        path="/v1/events/0b6e1c1e-0000-4000-8000-000000000001",
        params={"path": {"event_id": "0b6e1c1e-0000-4000-8000-000000000001"}, "query": {}},
        status=200,
        rows=1,
        duration_ms=Decimal("3.250"),
        client_addr="127.0.0.1",
        subject="dept-fire",
        principal_kind="department",
        client_id="dept-fire",
        issuer="http://127.0.0.1:8000",
    )
    return dataclasses.replace(record, **changes)


def test_canonical_form_is_pinned() -> None:
    # Every stored hash depends on these exact bytes: changing the form breaks every log.
    assert canonical_json(7, sample()) == (
        b'{"at":"2026-11-30T08:25:00.123456Z","client_addr":"127.0.0.1",'
        b'"client_id":"dept-fire","duration_ms":"3.250",'
        b'"endpoint":"/v1/events/{event_id}","id":7,"issuer":"http://127.0.0.1:8000",'
        b'"method":"GET","params":{"path":{"event_id":"0b6e1c1e-0000-4000-8000-000000000001"},'
        b'"query":{}},"path":"/v1/events/0b6e1c1e-0000-4000-8000-000000000001",'
        b'"principal_kind":"department","rows":1,"status":200,"subject":"dept-fire"}'
    )
    assert link_hash(GENESIS, 7, sample()).hex() == (
        "d98334d37d4defd2e7182cf19c75a7152b63aef744d2453c4786550361d84aff"
    )


def test_canonical_form_ignores_representation_not_value() -> None:
    # What the database hands back (another zone, numeric with its scale) hashes alike.
    shanghai = timezone(timedelta(hours=8))
    base = sample()
    same = sample(at=base.at.astimezone(shanghai), duration_ms=Decimal("3.25"))
    assert canonical_json(1, base) == canonical_json(1, same)
    with pytest.raises(ValueError, match="timezone-aware"):
        canonical_json(1, sample(at=datetime(2026, 1, 1)))


def test_deleted_first_and_last_rows() -> None:
    rows = build_chain([sample(rows=n) for n in range(4)])
    first = verify(rows[1:], head_of(rows)).first
    assert first is not None and (first.row_id, first.kind) == (2, "deleted")
    last = verify(rows[:-1], head_of(rows)).first
    assert last is not None and (last.row_id, last.kind) == (4, "truncated")
    assert "row 4 missing at the end" in last.detail


# --- what a request's row says (hub.audit.record) -------------------------------------------


def test_audited_paths() -> None:
    for path in ("/v1", "/v1/events", "/v1/events/x", "/ogc/collections"):
        assert audited(path)
    for path in ("/healthz", "/readyz", "/metrics", "/.well-known/jwks.json", "/oauth/token"):
        assert not audited(path)
    for path in ("/docs", "/openapi.json", "/v1x", "/ogcx/y", "/"):
        assert not audited(path)


def scope(peer: str, xff: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", xff.encode())] if xff is not None else []
    return {"client": (peer, 50000), "headers": headers}


def test_forwarded_for_only_from_a_trusted_proxy() -> None:
    proxies = trusted_networks(["10.0.0.0/8", "127.0.0.1"])
    assert client_address(scope("203.0.113.5", "198.51.100.7"), proxies) == "203.0.113.5"
    assert client_address(scope("127.0.0.1", "198.51.100.7"), ()) == "127.0.0.1"
    assert client_address(scope("127.0.0.1", "198.51.100.7"), proxies) == "198.51.100.7"
    # a client-written hop to the left of the real one is never believed
    forged = "1.2.3.4, 198.51.100.7, 10.1.1.1"
    assert client_address(scope("127.0.0.1", forged), proxies) == "198.51.100.7"
    assert client_address(scope("127.0.0.1", "not-an-ip"), proxies) == "127.0.0.1"
    assert client_address({"headers": []}, proxies) is None


def test_params_keep_repeats_and_drop_nul() -> None:
    s = {"query_string": b"a=1&b=2&a=3&c=%00x&d=", "path_params": {"event_id": 5}}
    assert request_params(s) == {
        "path": {"event_id": "5"},
        "query": {"a": ["1", "3"], "b": "2", "c": "\ufffdx", "d": ""},
    }
