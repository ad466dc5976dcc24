"""Fuzz the deployed API from its OpenAPI document (chalicelib/openapi.py): schemathesis'
negative cases for POST /tasks, POST /tasks/batch and GET /tasks/{task_id}, and hypothesis
strategies of our own for what schemathesis does not make (malformed JSON, wrong content types,
one field wrong at a known place, bodies at and over the byte limits, SQL-looking strings).
Every case must be refused with a 4xx whose Chalice error body names the problem, and the whole
run must leave the tasks table and the queue as they were. Reproducible: derandomized."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from burst.cloud import database
from chalicelib import openapi, validation
from chalicelib.dashboard import MetricsWindow
from chalicelib.errors import InvalidRequest
from chalicelib.task_types import TASK_TYPES
from tests.e2e.conftest import Stage
from tests.polling import wait_for

CASES_AT_LEAST = 1_000
# About 45 s on this 2-core machine (12 s of it drawing the cases); several times that only when
# other work starves it, hence a generous bound: the run is bounded by its case counts.
FUZZ_SECONDS_AT_MOST = 300
MAX_FAILURES_SHOWN = 20
RATE_LIMITED_RETRIES = 6
# Two requests in flight: the API function answers from two environments while the next case
# is on its way; more only queue up in LocalStack on a 2-core machine.
SENDER_THREADS = 2
QUEUE_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
SQL_LOOKING = [
    "'; DROP TABLE tasks; --",
    "1' OR '1'='1",
    "echo' UNION SELECT * FROM pg_user --",
    '"); DELETE FROM tasks WHERE ("1"="1',
    "$$; TRUNCATE tasks; $$",
    "\\x00'; COMMIT; --",
]
WRONG_CONTENT_TYPES = [
    "text/plain",
    "text/html; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz",
    "application/xml",
    "application/octet-stream",
    "application/merge-patch+json",
    "image/png",
]
VALID_TASKS: list[dict[str, Any]] = [
    {"type": "echo", "payload": {"n": 1}},
    {"type": "sleep", "payload": {"ms": 10}},
    {"type": "cpu", "payload": {"rounds": 10}},
    {"type": "fail", "payload": {"reason": "fuzz"}},
    {"type": "flaky", "payload": {"failure_rate": 0.5}},
]


@dataclass(frozen=True)
class Probe:
    """One request, and what its refusal must say: `names` is a fragment of the message
    (None: a `field: problem` message, as every 400 of the API is)."""

    family: str
    method: str
    path: str  # relative to the API's root URL
    body: bytes | None = None
    content_type: str | None = "application/json"
    statuses: frozenset[int] = frozenset({400})
    names: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A case ready to send: its request (requests' keyword arguments) and what the answer
    must be."""

    probe: Probe
    request: dict[str, Any]


@dataclass
class FuzzRun:
    """Prepares every case first (hypothesis draws them one at a time), then sends them from a
    few threads, each with a session of its own and the stage's auth headers on every request;
    counts each case sent, and keeps what went wrong (a failing case is not shrunk: the run
    stays bounded, and every failure is listed at the end)."""

    stage: Stage
    prepared: list[Prepared] = field(default_factory=list)
    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    rate_limited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sessions: threading.local = field(default_factory=threading.local)

    def add(self, probe: Probe) -> None:
        headers = dict(self.stage.auth_headers)
        if probe.content_type is not None:
            headers["Content-Type"] = probe.content_type
        url = f"{self.stage.api}{probe.path}"
        request = {"method": probe.method, "url": url, "data": probe.body, "headers": headers}
        self.prepared.append(Prepared(probe, request))

    def add_generated(self, family: str, case: schemathesis.Case) -> None:
        """A schemathesis case: its own request, our auth headers, the same checks."""
        request = case.as_transport_kwargs(base_url=self.stage.api.rstrip("/"))
        request["headers"] = {**request.get("headers", {}), **self.stage.auth_headers}
        data = request.get("data")
        body = data if isinstance(data, bytes) else json.dumps(request.get("json")).encode()
        statuses = frozenset({400, 404} if case.method == "GET" else {400, 413})
        path = case.formatted_path.lstrip("/")
        self.prepared.append(
            Prepared(Probe(family, case.method, path, body, statuses=statuses), request)
        )

    def send_all(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(SENDER_THREADS) as pool:
            for _ in pool.map(self.send, self.prepared):
                pass  # map re-raises a sender's exception here

    def send(self, case: Prepared) -> None:
        """One case's request. A 429 (a usage plan's rate limit on the write routes) says
        nothing about the case: it is sent again, a few times, after the pause asked for."""
        session = getattr(self._sessions, "http", None)
        if session is None:
            session = self._sessions.http = requests.Session()
        for attempt in range(RATE_LIMITED_RETRIES):
            response = session.request(**case.request, timeout=60)
            if response.status_code != 429:
                break
            with self._lock:
                self.rate_limited += 1
            time.sleep(float(response.headers.get("Retry-After", 0.2 * 2**attempt)))
        self.record(case.probe, response)

    def record(self, probe: Probe, response: requests.Response) -> None:
        problem = refusal_problem(probe, response)
        with self._lock:
            self.sent[probe.family] += 1
            if problem:
                self.failures.append(
                    f"[{probe.family}] {probe.method} {probe.path[:80]} "
                    f"{(probe.body or b'')[:160]!r} -> {response.status_code} "
                    f"{response.text[:300]!r}: {problem}"
                )


def refusal_problem(probe: Probe, response: requests.Response) -> str | None:
    """What is wrong with the answer to a malformed request, or None when it is a refusal
    that names the problem."""
    if response.status_code not in probe.statuses:
        return f"expected {sorted(probe.statuses)}"
    try:
        body = response.json()
    except ValueError:
        return "the body is not JSON"
    if not isinstance(body, dict) or set(body) != {"Code", "Message"}:
        return 'the body is not Chalice\'s {"Code", "Message"}'
    message = body["Message"]
    if probe.names is not None:
        return None if probe.names in message else f"the message does not name {probe.names!r}"
    if response.status_code == 400 and ": " not in message:
        return "the message names no field"
    return None


# --- what to send -------------------------------------------------------------------------------


def encoded(value: Any) -> bytes:
    """Compact, as validation measures a batch's items."""
    return json.dumps(value, separators=(",", ":")).encode()


def task_probe(
    family: str, item: Any, names: str, statuses: frozenset[int] = frozenset({400})
) -> Probe:
    return Probe(family, "POST", "tasks", encoded(item), statuses=statuses, names=names)


def batch_probe(
    family: str, body: Any, names: str, statuses: frozenset[int] = frozenset({400})
) -> Probe:
    return Probe(family, "POST", "tasks/batch", encoded(body), statuses=statuses, names=names)


# Finite floats: json.dumps writes NaN as NaN, which the API refuses as not JSON at all (a case
# of the malformed-JSON family, where the message names the body, not the field).
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text(max_size=20)
huge_numbers = st.integers(-(10**300), 10**300) | st.sampled_from(
    [10**1000, -(10**1000), 2**63, 2**64 + 1, -(2**63) - 1, 1e308, -1e308, 5e-324]
)
texts = st.text(max_size=30) | st.sampled_from(SQL_LOOKING)
NOT_PRINTABLE = ["\x00", "\n", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u200b", "\xa0", "\ufeff"]
bad_idempotency_keys = st.one_of(
    st.just(""),
    st.text(alphabet="k", min_size=validation.MAX_IDEMPOTENCY_KEY_LENGTH + 1, max_size=300),
    st.tuples(texts, st.sampled_from(NOT_PRINTABLE), texts).map("".join),
    scalars.filter(lambda v: v is not None and not isinstance(v, str)),
    st.lists(st.text(max_size=5), max_size=2),
)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


# What JSON can say and PostgreSQL's jsonb cannot hold (a lone surrogate survives json.dumps as
# an escape; a high surrogate before a low one would be one character, so none is made).
unstorable_values = st.one_of(
    st.text(max_size=10).map(lambda t: t + "\x00"),
    st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800"]),
    st.dictionaries(st.sampled_from(["k\x00", "\x00"]), scalars, min_size=1, max_size=1),
    st.integers(validation.MAX_PAYLOAD_DEPTH + 1, 400).map(nested),
)
valid_tasks = st.sampled_from(VALID_TASKS).map(lambda task: json.loads(json.dumps(task)))


# One thing wrong in a valid task: each mutation changes the task in place and returns the
# start of the message that must name it.
Mutation = Callable[[st.DrawFn, dict[str, Any]], str]


def no_type(draw: st.DrawFn, item: dict[str, Any]) -> str:
    del item["type"]
    return "type: must be one of"


def unknown_type(draw: st.DrawFn, item: dict[str, Any]) -> str:
    item["type"] = draw(texts.filter(lambda t: t not in TASK_TYPES))
    return "type: must be one of"


def type_not_a_string(draw: st.DrawFn, item: dict[str, Any]) -> str:
    not_strings = scalars.filter(lambda v: not isinstance(v, str))
    item["type"] = draw(not_strings | st.lists(st.sampled_from(list(TASK_TYPES)), max_size=2))
    return "type: must be one of"


def unknown_field(draw: st.DrawFn, item: dict[str, Any]) -> str:
    name = draw(texts.filter(lambda n: n not in validation.TASK_FIELDS))
    item[name] = draw(scalars | texts)
    return f"{name}: unknown field"


def payload_not_an_object(draw: st.DrawFn, item: dict[str, Any]) -> str:
    item["payload"] = draw(scalars | st.lists(scalars, max_size=3))
    return "payload: must be a JSON object"


def bad_idempotency_key(draw: st.DrawFn, item: dict[str, Any]) -> str:
    item["idempotency_key"] = draw(bad_idempotency_keys)
    return "idempotency_key: must be a printable string"


def unstorable_payload(draw: st.DrawFn, item: dict[str, Any]) -> str:
    item.update(type="echo", payload={"deep": draw(unstorable_values)})
    return "payload.deep"


def field_value_refused(draw: st.DrawFn, item: dict[str, Any]) -> str:
    payload_field = draw(st.sampled_from(TASK_TYPES[item["type"]].fields))
    values = scalars | huge_numbers | texts | st.lists(scalars, max_size=2)
    item["payload"][payload_field.name] = draw(
        values.filter(lambda v: not payload_field.accepts(v))
    )
    return f"payload.{payload_field.name}: {payload_field.rule}"


def unknown_payload_field(draw: st.DrawFn, item: dict[str, Any]) -> str:
    known = {f.name for f in TASK_TYPES[item["type"]].fields}
    name = draw(texts.filter(lambda n: n not in known))
    item["payload"][name] = draw(scalars)
    return f"payload.{name}: unknown field"


MUTATIONS: list[Mutation] = [
    no_type,
    unknown_type,
    type_not_a_string,
    unknown_field,
    payload_not_an_object,
    bad_idempotency_key,
    unstorable_payload,
]
CLOSED_PAYLOAD_MUTATIONS: list[Mutation] = [field_value_refused, unknown_payload_field]


@st.composite
def one_field_wrong(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid task with one thing wrong, and the start of the message that must name it."""
    item = draw(valid_tasks)
    closed = not TASK_TYPES[item["type"]].open_payload
    mutate = draw(st.sampled_from(MUTATIONS + (CLOSED_PAYLOAD_MUTATIONS if closed else [])))
    return item, mutate(draw, item)


def not_a_json_object(raw: bytes) -> bool:
    try:
        return not isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return True


@st.composite
def malformed_json(draw: st.DrawFn) -> Probe:
    """A body that is not a JSON object: bytes, a valid task cut short or with garbage after
    it, NaN, a number too big for a double, nesting past any parser's stack."""
    task = json.dumps(draw(valid_tasks))
    raw, names = draw(
        st.binary(max_size=300).filter(not_a_json_object).map(lambda raw: (raw, "body"))
        | st.integers(1, len(task) - 1).map(lambda cut: (task[:cut].encode(), "body"))
        | st.sampled_from(["}", ",", "x", "{}", "]", "\x00", "'"]).map(
            lambda tail: ((task + tail).encode(), "body")
        )
        | st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(
            lambda c: (b'{"type": "flaky", "payload": {"failure_rate": %s}}' % c.encode(), "body")
        )
        | st.sampled_from([b"[]", b"1", b'"tasks"', b"null", b"true", b"  ", b""]).map(
            lambda raw: (raw, "body")
        )
        | st.integers(1_000, 8_000).map(lambda n: (b"[" * n + b"]" * n, "body"))
        # objects this deep may parse: then the outermost key is the unknown field named
        | st.integers(1_000, 2_700).map(lambda n: (b'{"a":' * n + b"1" + b"}" * n, None))
        # more digits than Python reads as an int; a number bigger than any double
        | st.integers(4_301, 10_000).map(
            lambda n: (b'{"type": "echo", "payload": {"x": %s}}' % (b"9" * n), "body")
        )
        | st.just((b'{"type": "echo", "payload": {"x": 1e400}}', "payload.x: must be a finite"))
    )
    path = draw(st.sampled_from(["tasks", "tasks/batch"]))
    if path == "tasks/batch" and names not in ("body", None):
        raw, names = b'{"tasks": [%s]}' % raw, f"tasks[0].{names}"
    return Probe("malformed JSON", "POST", path, raw, names=names)


@st.composite
def wrong_content_type(draw: st.DrawFn) -> Probe:
    """A valid body, sent as something other than JSON: refused for its content type alone."""
    task = draw(valid_tasks)
    path, body = draw(st.sampled_from([("tasks", task), ("tasks/batch", {"tasks": [task]})]))
    content_type = draw(st.sampled_from(WRONG_CONTENT_TYPES))
    return Probe(
        "wrong content type",
        "POST",
        path,
        encoded(body),
        content_type,
        statuses=frozenset({415}),
        names="Unsupported media type",
    )


@st.composite
def one_task_wrong(draw: st.DrawFn) -> Probe:
    item, names = draw(one_field_wrong())
    return task_probe("one field wrong", item, names)


@st.composite
def one_batch_item_wrong(draw: st.DrawFn) -> Probe:
    """A batch of valid tasks but one: all of it refused, naming the one by its index."""
    tasks = draw(st.lists(valid_tasks, min_size=1, max_size=validation.MAX_BATCH_TASKS - 1))
    index = draw(st.integers(0, len(tasks)))
    item, names = draw(one_field_wrong() | st.tuples(scalars | st.lists(scalars), st.just("")))
    # names == "": not an object at all
    names = f"tasks[{index}].{names}" if names else f"tasks[{index}]: must be a JSON object"
    return batch_probe(
        "one batch item wrong", {"tasks": [*tasks[:index], item, *tasks[index:]]}, names
    )


@st.composite
def batch_wrong(draw: st.DrawFn) -> Probe:
    """The batch itself wrong: no list, an empty or a too long one, an unknown field,
    a repeated idempotency key."""
    task = draw(valid_tasks)
    many = st.integers(validation.MAX_BATCH_TASKS + 1, 3 * validation.MAX_BATCH_TASKS)
    body, names = draw(
        st.sampled_from([({}, "tasks: must be a list"), ({"tasks": []}, "tasks: must be a list")])
        | scalars.map(lambda v: ({"tasks": v}, "tasks: must be a list"))
        | many.map(lambda n: ({"tasks": [task] * n}, "tasks: must be a list of 1 to 100"))
        | texts.filter(lambda n: n != "tasks").map(
            lambda n: ({"tasks": [task], n: 1}, f"{n}: unknown field (allowed: tasks)")
        )
        | st.integers(1, 20).map(
            lambda n: (
                {"tasks": [{**task, "idempotency_key": "same"} for _ in range(n + 1)]},
                "tasks[1].idempotency_key: repeats tasks[0].idempotency_key",
            )
        )
    )
    return batch_probe("batch wrong", body, names)


@st.composite
def at_and_over_the_byte_limits(draw: st.DrawFn) -> Probe:
    """A task at its limit is still read and checked (an unknown field named); one byte over,
    or over SQS's 256 KiB message limit, it is a 413; the same for a batch's items."""
    limit = validation.MAX_TASK_BYTES
    size = draw(
        st.integers(limit - 64, limit) | st.integers(limit + 1, limit + 64) | st.just(300 * 1024)
    )
    template = {"type": "echo", "payload": {"blob": ""}, "unknown": 1}
    padding = size - len(json.dumps(template, separators=(",", ":")))
    item = {"type": "echo", "payload": {"blob": "x" * padding}, "unknown": 1}
    raw = json.dumps(item, separators=(",", ":")).encode()
    assert len(raw) == size
    if draw(st.booleans()):
        if size <= limit:
            return Probe("byte limits", "POST", "tasks", raw, names="unknown: unknown field")
        return Probe("byte limits", "POST", "tasks", raw, statuses=frozenset({413}), names="limit")
    index = draw(st.integers(0, 9))
    tasks = [*[VALID_TASKS[0]] * index, item]
    if size <= limit:
        return batch_probe(
            "byte limits", {"tasks": tasks}, f"tasks[{index}].unknown: unknown field"
        )
    return batch_probe(
        "byte limits", {"tasks": tasks}, f"tasks[{index}] is {size} bytes", frozenset({413})
    )


def huge_batches() -> list[Probe]:
    """Whole batches near and over the batch's byte limit (1.6 MB), and twice that: a
    full batch of big tasks with its last one wrong is read to the end and refused."""
    item_size = (validation.MAX_BATCH_BYTES - 100) // validation.MAX_BATCH_TASKS - 2
    blob = "x" * (item_size - len('{"type":"echo","payload":{"blob":""}}'))
    full = [{"type": "echo", "payload": {"blob": blob}}] * validation.MAX_BATCH_TASKS
    last_wrong = [*full[:-1], {"type": "sleep", "payload": {"ms": -1, "blob": blob[:100]}}]
    over = [*full, *full[:10]]
    raw_over = encoded({"tasks": full}) + b" " * validation.MAX_BATCH_BYTES
    return [
        batch_probe("huge batches", {"tasks": last_wrong}, "tasks[99].payload.blob: unknown field"),
        batch_probe("huge batches", {"tasks": over}, "limit", frozenset({413})),
        Probe(
            "huge batches",
            "POST",
            "tasks/batch",
            raw_over,
            statuses=frozenset({413}),
            names="limit",
        ),
        Probe("huge batches", "POST", "tasks", raw_over, statuses=frozenset({413}), names="limit"),
    ]


@st.composite
def invalid_task_ids(draw: st.DrawFn) -> Probe:
    """GET /tasks/{id} with what is not a task's id: 400 naming task_id; a well-formed UUID no
    task has: 404."""
    task_id = draw(
        st.text(min_size=1, max_size=60)
        | st.sampled_from(SQL_LOOKING)
        | st.uuids().map(str)
        | st.uuids().map(lambda u: str(u)[:-1] + "g")
        | st.integers().map(str)
    )
    try:
        uuid.UUID(task_id)
    except ValueError:
        statuses, names = frozenset({400}), "task_id: "
    else:
        statuses, names = frozenset({404}), "no task with id"
    # Every character escaped, dots too: a path segment of '..' must reach the API as itself.
    path = "tasks/" + quote(task_id, safe="").replace(".", "%2E")
    return Probe("invalid task ids", "GET", path, None, None, statuses, names)


def window_refused(query: dict[str, str]) -> bool:
    try:
        MetricsWindow.parse(query)
    except InvalidRequest:
        return True
    return False


@st.composite
def bad_metrics_windows(draw: st.DrawFn) -> Probe:
    """GET /metrics with a parameter it does not know or a value out of its range, digits
    that are not ASCII among them: 400 naming the parameter."""
    name = draw(st.sampled_from(["minutes", "period"]) | st.text(string.ascii_letters, min_size=1))
    odd = ["\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT ONE}", "0", "181", "-1", "7", "1.5", "1e2"]
    value = draw(st.sampled_from(odd) | st.integers(-(10**6), 10**6).map(str) | st.text(min_size=1))
    query = {name: value}
    assume(window_refused(query))
    return Probe(
        "bad metrics windows", "GET", f"metrics?{urlencode(query)}", None, None, names=f"{name}: "
    )


# --- the run ------------------------------------------------------------------------------------

OUR_CASES: list[tuple[st.SearchStrategy[Probe], int]] = [
    (malformed_json(), 120),
    (wrong_content_type(), 50),
    (one_task_wrong(), 220),
    (one_batch_item_wrong(), 100),
    (batch_wrong(), 60),
    (at_and_over_the_byte_limits(), 40),
    (invalid_task_ids(), 100),
    (bad_metrics_windows(), 60),
]
SCHEMATHESIS_CASES = [
    ("/tasks", "POST", 250),
    ("/tasks/batch", "POST", 150),
    ("/tasks/{task_id}", "GET", 80),
]


def drive(strategy: st.SearchStrategy[Any], examples: int, add: Callable[[Any], None]) -> None:
    """Draw `examples` cases, the same ones every run, and hand each to `add`."""

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Any) -> None:
        add(case)

    run()


def tasks_and_messages(stage: Stage) -> tuple[int, int]:
    """The tasks table's rows and the task queue's messages (visible, in flight, delayed)."""
    with database(stage.target()) as connection:
        row = connection.execute("SELECT count(*) AS n FROM tasks").fetchone()
    attributes = stage.client("sqs").get_queue_attributes(
        QueueUrl=stage.queue_url, AttributeNames=list(QUEUE_COUNTS)
    )["Attributes"]
    return int(row["n"] if row else 0), sum(int(attributes[name]) for name in QUEUE_COUNTS)


@pytest.fixture
def settled(stage: Stage) -> Iterator[tuple[int, int]]:
    """The counts once the queue is empty (earlier tests' tasks may still be draining)."""
    yield wait_for(lambda: tasks_and_messages(stage), lambda c: c[1] == 0, 90, "an empty queue")


def test_the_deployed_document_is_the_one_fuzzed(stage: Stage) -> None:
    response = stage.http.get(f"{stage.api}openapi.json", timeout=30)

    assert response.status_code == 200
    assert response.json() == openapi.document()


def test_a_thousand_malformed_requests_are_refused_naming_the_problem_and_change_nothing(
    stage: Stage, settled: tuple[int, int]
) -> None:
    fuzz = FuzzRun(stage)
    started = time.monotonic()

    for probe in huge_batches():
        fuzz.add(probe)
    for strategy, examples in OUR_CASES:
        drive(strategy, examples, fuzz.add)
    api = schemathesis.openapi.from_dict(openapi.document())
    for path, method, examples in SCHEMATHESIS_CASES:
        family = f"schemathesis {method} {path}"
        operation = api[path][method]
        strategy = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        drive(strategy, examples, lambda case, family=family: fuzz.add_generated(family, case))
    generated = time.monotonic()
    fuzz.send_all()
    seconds = time.monotonic() - started

    print(
        f"fuzz: {sum(fuzz.sent.values())} cases in {seconds:.1f} s "
        f"({generated - started:.1f} s drawing them, {SENDER_THREADS} sender threads) "
        f"({fuzz.rate_limited} answers of 429 sent again): {dict(fuzz.sent)}"
    )
    wrong = "\n".join(fuzz.failures[:MAX_FAILURES_SHOWN])
    assert not fuzz.failures, f"{len(fuzz.failures)} cases answered wrong, e.g.:\n{wrong}"
    assert sum(fuzz.sent.values()) >= CASES_AT_LEAST
    assert tasks_and_messages(stage) == settled  # no row kept, no message enqueued
    assert seconds < FUZZ_SECONDS_AT_MOST
