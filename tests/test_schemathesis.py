"""schemathesis over the checked-in ``openapi.yaml`` against the running app, with real tokens.

The store holds real SFPD incidents run through the real fusion worker; the real app
(``create_app``) serves them under uvicorn on a loopback port, in a thread of this process;
admin and community clients are registered and get their access tokens from the app's own
``POST /oauth/token``. Then, for EVERY operation of ``openapi.yaml`` (whatever set of operations
the document holds when this runs), the test sends over HTTP, with ``Authorization: Bearer ...``:
schemathesis' coverage cases (boundaries, wrong types, unexpected methods), one string at a time
with a NUL character in it, and cases Hypothesis draws from schemathesis' strategies, valid and
invalid (derandomized: the same requests on every run; stored ids for path parameters that name
them). Every response is checked: no 5xx, a documented status code, a documented content type,
a body that matches the documented schema, and no 401 for a valid token. Every request sent is
counted; the test needs at least ``MIN_REQUESTS``. Failures are collected over the whole run (one
entry per operation and kind of failure, with a curl command that reproduces it) and reported
together at the end, so one run lists every finding instead of stopping at the first.
"""

from __future__ import annotations

import copy
import functools
import itertools
import operator
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub.api.factory import create_app
from hub.bench.workload import build
from hub.settings import Settings
from hub.stack.broker import free_port
from tests.auth_helpers import register
from tests.conftest import ROOT
from tests.fusion_helpers import fusion_stats, produce, running_worker, wait_until

OPENAPI = ROOT / "openapi.yaml"
MIN_REQUESTS = 1_000
# The run aims at TARGET_REQUESTS: the coverage cases of every operation (at most COVERAGE_CAP
# each) and the stored-id cases are counted first, and Hypothesis draws fill the rest, shared
# evenly by the (operation, generation mode) pairs of the operations that take input (never fewer
# than MIN_EXAMPLES a pair). So the run time stays about the same when the document grows. An
# operation without input has exactly one possible case: Hypothesis stops after it.
TARGET_REQUESTS = 1_200
COVERAGE_CAP = 150
MIN_EXAMPLES = 40
NUL_CAP = 40  # NUL-character cases an operation gets at most (see `nul_cases`)
# Stored ids sent to operations whose path parameters name them (see `known_strategies`).
KNOWN_EXAMPLES = 60
EVENTS = 1_500
COMMUNITY = "Mission"
FORM = "application/x-www-form-urlencoded"
NUL = "\x00"

TOKEN_PATH = "/oauth/token"


def valid_token_accepted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A request that carried a valid token is never answered 401 (403 may be policy).

    The token endpoint is the exception: a Bearer token is no client authentication there.
    """
    sent = response.request.headers.get("Authorization") or ""
    if isinstance(sent, bytes):
        sent = sent.decode("latin-1")
    if response.status_code == 401 and sent.startswith("Bearer ") and case.path != TOKEN_PATH:
        raise AssertionError(f"a valid access token was refused: {response.text[:300]}")
    return None


CHECKS = [
    not_a_server_error,  # no 5xx, documented or not
    status_code_conformance,  # the status code is documented for the operation
    content_type_conformance,  # the Content-Type is documented for that status
    response_schema_conformance,  # the body matches the documented schema
    valid_token_accepted,
]

HYPOTHESIS = hypothesis_settings(
    derandomize=True,  # a fixed seed: CI sends the same requests on every run
    database=None,  # no example database: nothing from an earlier run changes what is sent
    deadline=None,  # a request's time is the server's, not the generator's
    # No shrinking: a failure is recorded and the run goes on (Hypothesis only shrinks on raise).
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


# --- the running app -------------------------------------------------------------------------


@dataclass
class LiveApp:
    base_url: str
    settings: Settings


@pytest.fixture
def stored_ids(hub_settings: Settings, sf_communities: list[str]) -> list[str]:
    """Real SFPD incidents, through the real fusion worker into the store."""
    workload = build(EVENTS, seed=50_501)
    produce(hub_settings, workload.messages)
    with running_worker(hub_settings):
        wait_until(
            lambda: fusion_stats(hub_settings)["consumed"] == len(workload.messages),
            120,
            f"{EVENTS} events consumed",
        )
    stats = fusion_stats(hub_settings)
    assert stats["stored"] + stats["duplicates"] == EVENTS and stats["dlq"] == 0, stats
    return sorted(workload.valid_ids)


@pytest.fixture
def live_app(hub_settings: Settings, stored_ids: list[str]) -> Iterator[LiveApp]:
    """``create_app`` under uvicorn on a free loopback port, in a thread; stopped on exit.

    The settings are the test's own (its topics: a ``POST /v1/events`` publishes where nothing
    else listens), with the rate limits raised so that 429s do not crowd out the real answers.
    """
    port = free_port()
    settings = hub_settings.model_copy(
        update={"api_port": port, "rate_limit_per_s": 100_000.0, "rate_limit_burst": 100_000}
    )
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_config=None,  # uvicorn's loggers propagate to pytest's capture, untouched
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve, name="api-schemathesis", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, "uvicorn to start")
    assert server.started, f"uvicorn did not start: {errors}"
    try:
        yield LiveApp(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive(), "uvicorn did not stop"
    if errors:
        raise errors[0]


# --- findings ----------------------------------------------------------------------------------


@dataclass
class Finding:
    label: str  # operation [generation mode, principal]
    status: int | None
    title: str
    message: str
    curl: str
    count: int = 1


@dataclass
class Run:
    """What the run sent and what it found."""

    base_url: str
    session: requests.Session
    tokens: list[tuple[str, str]]  # (principal, access token), used in turn
    sent: int = 0
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    findings: dict[tuple[str, str, int | None], Finding] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def send(self, case: Case, mode: str, **kwargs: Any) -> None:
        principal, token = self.tokens[self.sent % len(self.tokens)]
        headers = {"Authorization": f"Bearer {token}"}
        who = "HTTP Basic client" if kwargs.get("auth") else principal  # Basic wins over Bearer
        label = f"{case.operation.label} [{mode}, {who}]"
        self.sent += 1
        try:
            response = case.call(
                base_url=self.base_url, session=self.session, headers=headers, timeout=30, **kwargs
            )
        except requests.RequestException as exc:  # the server hung up or hung: a finding too
            self.record(case, label, None, f"no response: {type(exc).__name__}", str(exc), headers)
            return
        self.statuses[(case.operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                self.record_failure(case, label, response, failure, headers)

    def record_failure(
        self,
        case: Case,
        label: str,
        response: Response,
        failure: Failure,
        headers: dict[str, str],
    ) -> None:
        body = response.text[:400]
        message = f"{failure.message.strip()}\nanswer: {response.status_code} {body}".strip()
        self.record(case, label, response.status_code, failure.title, message, headers)

    def record(
        self,
        case: Case,
        label: str,
        status: int | None,
        title: str,
        message: str,
        headers: dict[str, str],
    ) -> None:
        key = (case.operation.label, title, status)
        if key in self.findings:
            self.findings[key].count += 1
            return
        # The token is masked in the curl command (schemathesis sanitizes Authorization).
        curl = case.as_curl_command(headers=headers, base_url=self.base_url)
        self.findings[key] = Finding(label, status, title, message.strip()[:1500], curl)

    def report(self) -> str:
        lines = [f"{self.sent} requests; {len(self.findings)} distinct findings"]
        for f in self.findings.values():
            lines += [
                "",
                f"== {f.label}: {f.title} (status {f.status}, {f.count}x)",
                f.message,
                f"reproduce: {f.curl}",
            ]
        return "\n".join(lines)


# --- what is generated -----------------------------------------------------------------------


def drive(run: Run, strategy: st.SearchStrategy[Case], mode: str, examples: int) -> None:
    """Send every case Hypothesis draws from ``strategy`` (up to ``examples``)."""

    @hypothesis_settings(HYPOTHESIS, max_examples=examples)
    @given(case=strategy)
    def each(case: Case) -> None:
        run.send(case, mode)

    each()


def known_strategies(
    operation: Any, known: dict[str, list[str]]
) -> list[tuple[str, st.SearchStrategy[Case]]]:
    """Cases whose path parameters are ids that exist, so 200 answers are checked too.

    Random UUIDs only ever find 404s; an operation whose path parameters are all named in
    ``known`` (``event_id``: the stored events) also gets cases with the real ids, every other
    part of the request generated as usual.
    """
    names = [p.name for p in operation.path_parameters]
    if not names or not all(name in known for name in names):
        return []

    def with_ids(values: tuple[str, ...]) -> st.SearchStrategy[Case]:
        fixed = dict(zip(names, values, strict=True))
        strategy: st.SearchStrategy[Case] = operation.as_strategy(
            generation_mode=GenerationMode.POSITIVE, path_parameters=fixed
        )
        return strategy

    ids = st.tuples(*(st.sampled_from(known[name]) for name in names))
    return [("positive, stored ids", ids.flatmap(with_ids))]


def takes_input(operation: Any) -> bool:
    return any(True for _ in operation.iter_parameters()) or bool(operation.body)


def coverage_cases(schema: Any, operation: Any) -> tuple[list[Case], int]:
    """schemathesis' coverage phase: a fixed list of boundary and near-boundary values, wrong
    types, missing required parts, bad content types and unexpected HTTP methods (for those
    request-shape probes only "no 5xx" applies: schemathesis skips the conformance checks).

    A large body schema yields hundreds (mostly "array with invalid items" variants): at most
    COVERAGE_CAP are kept, taken in turn from each kind of case, so every kind is sent. Returns
    the cases kept and how many there were.
    """
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    config = schema.config.generation_for(operation=operation)
    kinds: dict[str, list[Case]] = {}
    for case in schema.iter_coverage_cases(
        operation, generation_modes=modes, generation_config=config
    ):
        data = getattr(getattr(case.meta, "phase", None), "data", None)
        kinds.setdefault(str(getattr(data, "description", "")), []).append(case)
    in_turn = itertools.chain.from_iterable(itertools.zip_longest(*kinds.values()))
    cases = [case for case in in_turn if case is not None]
    return cases[:COVERAGE_CAP], len(cases)


def string_leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to the strings inside a JSON-like value."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_leaves(item, (*path, index))


def nul_cases(operation: Any, coverage: list[Case]) -> list[Case]:
    """Cases in which one string (path, query, form or JSON body) carries a NUL character.

    PostgreSQL text cannot hold NUL, so a value that reaches SQL unchecked answers 500: a kind
    of bug that random generation finds only by luck, hence this deterministic pass. Each case
    starts from the first valid coverage case; a query string or a field of an object body is
    sent with only the required parameters or fields beside it (so that no other value is
    refused before it), a string deeper in a body inside the whole valid body. Headers are left
    alone: HTTP itself forbids NUL there.
    """
    base = next(
        (c for c in coverage if c.meta and c.meta.generation.mode == GenerationMode.POSITIVE),
        None,
    )
    if base is None:
        return []
    path_parameters = dict(base.path_parameters or {})
    query = dict(base.query or {})
    required = {p.name for p in operation.query if p.is_required}
    query_required = {k: v for k, v in query.items() if k in required}

    def variant(**changes: Any) -> Case:
        fields: dict[str, Any] = {
            "method": base.method,
            "path_parameters": path_parameters,
            "query": query_required,
        }
        if not isinstance(base.body, NotSet):
            fields.update(body=copy.deepcopy(base.body), media_type=base.media_type)
        case: Case = operation.Case(**{**fields, **changes})
        return case

    cases = [
        variant(path_parameters={**path_parameters, name: value + NUL})
        for name, value in path_parameters.items()
        if isinstance(value, str)
    ]
    cases += [
        variant(query={**query_required, name: value + NUL})
        for name, value in query.items()
        if isinstance(value, str)
    ]
    body: Any = base.body
    if isinstance(body, dict):
        definition = operation.get_body_for_media_type(base.media_type)
        schema = getattr(definition, "raw_schema", None)
        needed = set(schema.get("required", [])) if isinstance(schema, dict) else set(body)
        for key, value in body.items():
            if isinstance(value, str):
                fields = {k: v for k, v in body.items() if k in needed}
                cases.append(variant(body={**fields, key: value + NUL}))
    for path in string_leaves(body):
        if isinstance(body, dict) and len(path) == 1:
            continue  # a top-level field: sent above
        changed: Any = copy.deepcopy(body)
        parent = functools.reduce(operator.getitem, path[:-1], changed)
        parent[path[-1]] += NUL
        cases.append(variant(body=changed))
    return cases[:NUL_CAP]


def fuzz_operation(
    run: Run,
    operation: Any,
    coverage: list[Case],
    known: dict[str, list[str]],
    examples: int,
) -> None:
    started = time.monotonic()
    for case in coverage:
        run.send(case, "coverage")
    for case in nul_cases(operation, coverage):
        run.send(case, "NUL character")
    # Then Hypothesis: valid data, and data the document says is invalid.
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        before = run.sent
        try:
            drive(run, operation.as_strategy(generation_mode=mode), mode.value, examples)
        except Unsatisfiable:
            # Only an operation with nothing to make invalid (no parameters, no body) cannot
            # have negative cases; its positive cases were sent. Said, not skipped silently.
            assert mode == GenerationMode.NEGATIVE, f"{operation.label}: no {mode.value} case"
            run.notes.append(f"{operation.label}: no negative case exists (no parameters)")
        assert run.sent > before or mode == GenerationMode.NEGATIVE, operation.label
    for mode_name, strategy in known_strategies(operation, known):
        drive(run, strategy, mode_name, KNOWN_EXAMPLES)
    run.seconds[operation.label] += time.monotonic() - started


def fetch_token(
    schema: Any, live: LiveApp, session: requests.Session, run: Run, client_id: str, secret: str
) -> str:
    """A real token from the running app's ``POST /oauth/token`` (HTTP Basic client auth).

    Sent as a schemathesis case, so the 200 answer is checked against the document as well.
    """
    operation = schema[TOKEN_PATH]["POST"]
    case = operation.Case(body={"grant_type": "client_credentials"}, media_type=FORM)
    response = case.call(
        base_url=live.base_url, session=session, auth=(client_id, secret), timeout=30
    )
    run.sent += 1
    run.statuses[(operation.label, response.status_code)] += 1
    assert response.status_code == 200, response.text
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            run.record_failure(case, f"{operation.label} [real client]", response, failure, {})
    token: str = response.json()["access_token"]
    return token


# --- the test ----------------------------------------------------------------------------------


ENDLESS = {"/v1/stream"}  # text/event-stream routes: see the test


def test_schemathesis_over_openapi_yaml(
    live_app: LiveApp, stored_ids: list[str], sf_communities: list[str]
) -> None:
    started = time.monotonic()
    # Loaded from the checked-in file, not from the app: the document is the contract under test.
    schema = schemathesis.openapi.from_path(OPENAPI)
    operations = []
    for result in schema.get_all_operations():
        # An operation schemathesis cannot read is a defect of the document, not one to skip.
        assert isinstance(result, Ok), f"openapi.yaml: {result.err()}"
        operations.append(result.ok())
    assert operations, "openapi.yaml has no operations"
    # An event stream answers 200 and never ends (heartbeats keep it open), so a generated
    # request to it would never return: its answers, the 4xx ones included, are tested by
    # tests/test_stream.py against the real pipeline.
    streams = [op for op in operations if op.path in ENDLESS]
    assert [op.path for op in streams] == sorted(ENDLESS), "an endless stream is not documented"
    operations = [op for op in operations if op.path not in ENDLESS]

    admin, admin_secret = register(live_app.settings, kind="admin")
    assert COMMUNITY in sf_communities
    member, member_secret = register(live_app.settings, kind="community", community_id=COMMUNITY)
    assert admin_secret and member_secret

    with requests.Session() as session:
        run = Run(live_app.base_url, session, tokens=[])
        run.tokens = [
            ("admin", fetch_token(schema, live_app, session, run, admin.client_id, admin_secret)),
            (
                f"community {COMMUNITY}",
                fetch_token(schema, live_app, session, run, member.client_id, member_secret),
            ),
        ]
        # Every request carries one of the two tokens, in turn (admin, community, admin, ...),
        # including the ones to operations that need none. Notes on those:
        # - /metrics answers only the scrape addresses (settings.metrics_scrapers, default
        #   loopback); this test's requests come from 127.0.0.1, so it is exercised for real.
        # - /oauth/token takes a form, which schemathesis generates from the documented
        #   x-www-form-urlencoded body; the generated client ids do not exist, so those cases
        #   check the RFC 6749 error answers, and `fetch_token` above checked the 200 answer.
        # The token endpoint's client authentication with a NUL in the client id, through the
        # form (client_secret_post) and HTTP Basic (client_secret_basic, which wins over the
        # Bearer header). Generated forms almost never pair a client id with a secret, which is
        # what reaches the client lookup; `nul_cases` covers the other fields.
        token_endpoint = schema[TOKEN_PATH]["POST"]
        grant: dict[str, Any] = {"grant_type": "client_credentials"}
        for body, auth in [
            ({**grant, "client_id": f"a{NUL}b", "client_secret": "x"}, None),
            (grant, (f"a{NUL}b", "x")),
        ]:
            run.send(token_endpoint.Case(body=body, media_type=FORM), "NUL character", auth=auth)
        known = {"event_id": stored_ids[:: max(1, len(stored_ids) // 200)]}
        coverage: dict[str, list[Case]] = {}
        for op in operations:
            coverage[op.label], total = coverage_cases(schema, op)
            if total > len(coverage[op.label]):
                run.notes.append(f"{op.label}: {len(coverage[op.label])} of {total} coverage cases")
        planned = sum(
            len(coverage[op.label])
            + len(nul_cases(op, coverage[op.label]))
            + KNOWN_EXAMPLES * bool(known_strategies(op, known))
            for op in operations
        )
        pairs = 2 * max(1, sum(takes_input(op) for op in operations))
        examples = max(MIN_EXAMPLES, -(-(TARGET_REQUESTS - planned) // pairs))
        for operation in operations:
            fuzz_operation(run, operation, coverage[operation.label], known, examples)

    elapsed = time.monotonic() - started
    per_operation = Counter[str]()
    for (label, _), n in run.statuses.items():
        per_operation[label] += n
    print(f"\nschemathesis: {run.sent} requests in {elapsed:.1f}s ({examples} draws a mode)")
    for label in sorted(per_operation):
        codes = ", ".join(f"{s}: {n}" for (op, s), n in sorted(run.statuses.items()) if op == label)
        took = run.seconds[label]
        print(f"  {label}: {per_operation[label]} in {took:.1f}s ({codes})")
    for note in run.notes:
        print(f"  note: {note}")

    unreached = [op.label for op in operations if per_operation[op.label] == 0]
    assert not unreached, f"operations never answered: {unreached}"
    findings = len(run.findings)
    assert findings == 0, run.report()
    assert run.sent >= MIN_REQUESTS, run.report()
