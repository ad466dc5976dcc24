"""The main job's burst: a few hundred tasks posted to the deployed API, followed from request
to row, and a report of what happened. Bounded in count and time, and sent to loopback only."""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import psycopg
import requests
from psycopg.rows import dict_row

from chalicelib.model import FINAL_STATUSES
from deployment import database as app_database
from localcloud import endpoints
from localcloud.aws import client_for_running
from localcloud.settings import Settings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_TASKS = 5000
MAX_SECONDS = 300.0
Connection = psycopg.Connection[dict[str, Any]]
# The default mix: mostly quick tasks, some that hold a worker for a moment.
MIX: list[tuple[float, dict[str, Any]]] = [
    (0.6, {"type": "echo", "payload": {"hello": "demo"}}),
    (0.3, {"type": "sleep", "payload": {"ms": 200}}),
    (0.1, {"type": "cpu", "payload": {"rounds": 20_000}}),
]


class DemoError(RuntimeError):
    """The demo cannot run; the message says what to fix."""


@dataclass
class BurstResult:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies_ms: list[float] = field(default_factory=list)
    environments: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    accepted: list[str] = field(default_factory=list)  # task ids answered 202
    seconds: float = 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=300, help=f"tasks to post (1..{MAX_TASKS})")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="requests in flight at once (1..64)"
    )
    parser.add_argument(
        "--fail",
        type=int,
        default=0,
        help="of those, `fail` tasks: each is retried 5 times, one visibility timeout apart, "
        "before the dead-letter queue (minutes with the default timeouts)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=120.0,
        help=f"stop sending, and stop waiting for the drain, after this (<= {MAX_SECONDS})",
    )


def validate(args: argparse.Namespace, url: str) -> None:
    if not 1 <= args.tasks <= MAX_TASKS:
        raise DemoError(f"--tasks must be between 1 and {MAX_TASKS}, got {args.tasks}")
    if not 0 <= args.fail <= args.tasks:
        raise DemoError(f"--fail must be between 0 and --tasks ({args.tasks}), got {args.fail}")
    if not 1 <= args.concurrency <= 64:
        raise DemoError(f"--concurrency must be between 1 and 64, got {args.concurrency}")
    if not 0 < args.max_seconds <= MAX_SECONDS:
        raise DemoError(f"--max-seconds must be in (0, {MAX_SECONDS}], got {args.max_seconds}")
    if urlparse(url).hostname not in LOOPBACK_HOSTS:
        raise DemoError(f"the API URL {url} is not on loopback: the demo only loads this machine")


def task_mix(count: int, fail: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    weights = [weight for weight, _ in MIX]
    tasks = [rng.choices([t for _, t in MIX], weights)[0] for _ in range(count - fail)]
    tasks += [{"type": "fail", "payload": {"reason": "the demo asked for it"}}] * fail
    rng.shuffle(tasks)
    return tasks


def _fan_out(
    count: int, concurrency: int, max_seconds: float, call: Callable[[requests.Session, int], None]
) -> float:
    """Run `call(session, i)` for i < count on `concurrency` threads, each with its own
    session (connections reused); calls not started before the deadline are skipped."""
    deadline = time.monotonic() + max_seconds
    local = threading.local()

    def one(i: int) -> None:
        if time.monotonic() > deadline:
            return
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        call(session, i)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - started


def burst(url: str, count: int, concurrency: int, max_seconds: float) -> BurstResult:
    """`count` GETs of `url` (GET /whoami: which execution environment answered)."""
    result = BurstResult()
    lock = threading.Lock()

    def get(session: requests.Session, _: int) -> None:
        started = time.perf_counter()
        try:
            response = session.get(url, timeout=30)
        except requests.RequestException as error:
            with lock:
                result.errors[type(error).__name__] += 1
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        stream = response.json().get("log_stream", "?") if response.ok else None
        with lock:
            result.statuses[response.status_code] += 1
            result.latencies_ms.append(elapsed_ms)
            if stream:
                result.environments[stream] += 1

    result.seconds = _fan_out(count, concurrency, max_seconds, get)
    return result


def post_tasks(
    api: str, tasks: list[dict[str, Any]], concurrency: int, max_seconds: float
) -> BurstResult:
    """POST /tasks once per task; the ids answered 202 are the tasks accepted."""
    result = BurstResult()
    lock = threading.Lock()

    def post(session: requests.Session, i: int) -> None:
        started = time.perf_counter()
        try:
            response = session.post(f"{api}tasks", json=tasks[i], timeout=30)
        except requests.RequestException as error:
            with lock:
                result.errors[type(error).__name__] += 1
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        with lock:
            result.statuses[response.status_code] += 1
            result.latencies_ms.append(elapsed_ms)
            if response.status_code == 202:
                result.accepted.append(response.json()["id"])

    result.seconds = _fan_out(len(tasks), concurrency, max_seconds, post)
    return result


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "n/a"
    return (
        f"p50 {statistics.median(samples):.0f}, p95 {percentile(samples, 0.95):.0f}, "
        f"p99 {percentile(samples, 0.99):.0f}"
    )


@contextmanager
def database(running: dict[str, Any]) -> Iterator[Connection]:
    with psycopg.connect(
        app_database.conninfo(running), autocommit=True, row_factory=dict_row
    ) as connection:
        yield connection


def task_rows(connection: Connection, ids: list[str]) -> list[dict[str, Any]]:
    return connection.execute(
        "SELECT id, status, attempts, accepted_at, started_at, finished_at, worker_request_id "
        "FROM tasks WHERE id = ANY(%s::uuid[])",
        (ids,),
    ).fetchall()


def wait_for_drain(connection: Connection, ids: list[str], deadline: float) -> list[dict[str, Any]]:
    """Poll the rows until every task is done or failed, or the deadline passes; print the
    progress when it changes (one line each, so it reads the same in a log as on a terminal)."""
    shown = ""
    started = time.monotonic()
    while True:
        rows = task_rows(connection, ids)
        counts = collections.Counter(r["status"] for r in rows)
        final = sum(counts[status] for status in FINAL_STATUSES)
        progress = f"  drained {final}/{len(ids)}: {dict(sorted(counts.items()))}"
        if progress != shown:
            print(f"{progress}  (+{time.monotonic() - started:.0f} s)" if shown else progress)
            shown = progress
        if final == len(ids) or time.monotonic() > deadline:
            return rows
        time.sleep(1.0)


def peak_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one moment (a sweep over starts and ends)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def batches(rows: list[dict[str, Any]]) -> dict[str, tuple[datetime, datetime]]:
    """Each worker invocation (request id) with the span of the tasks it ran."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for row in rows:
        if row["worker_request_id"] and row["started_at"] and row["finished_at"]:
            start, end = spans.get(
                row["worker_request_id"], (row["started_at"], row["finished_at"])
            )
            spans[row["worker_request_id"]] = (
                min(start, row["started_at"]),
                max(end, row["finished_at"]),
            )
    return spans


def run(cfg: Settings, args: argparse.Namespace) -> int:
    running = endpoints.load(cfg.endpoints_file)
    if "api" not in running:
        raise DemoError("the app is not deployed to this local cloud: run scripts/deploy")
    api = running["api"]["url"]
    validate(args, api)
    deadline = time.monotonic() + args.max_seconds
    tasks = task_mix(args.tasks, args.fail)
    kinds = collections.Counter(t["type"] for t in tasks)
    print(f"\nBurst: {args.tasks} x POST {api}tasks, {args.concurrency} in flight: {dict(kinds)}")
    sent = post_tasks(api, tasks, args.concurrency, args.max_seconds)
    requests_sent = sum(sent.statuses.values()) + sum(sent.errors.values())
    rate = requests_sent / sent.seconds
    print(
        f"  sent {requests_sent} in {sent.seconds:.1f} s ({rate:.0f} req/s);"
        f" status codes {dict(sorted(sent.statuses.items()))}"
        + (f", errors {dict(sent.errors)}" if sent.errors else "")
    )
    print(f"  API latency ms: {percentiles(sent.latencies_ms)}")

    with database(running) as connection:
        rows = wait_for_drain(connection, sent.accepted, deadline)
    by_status = collections.Counter(r["status"] for r in rows)
    pending = len(rows) - sum(by_status[status] for status in FINAL_STATUSES)
    end_to_end = [
        (r["finished_at"] - r["accepted_at"]).total_seconds() * 1000
        for r in rows
        if r["status"] == "done"
    ]
    finished = [r["finished_at"] for r in rows if r["finished_at"]]
    spans = batches(rows)
    dead_letters = client_for_running(running, "sqs").get_queue_attributes(
        QueueUrl=running["api"]["outputs"]["DeadLetterQueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages"],
    )["Attributes"]["ApproximateNumberOfMessages"]
    print(f"\nWhat happened to the {len(sent.accepted)} accepted tasks:")
    print(f"  rows: {len(rows)} (one per accepted task: {len(rows) == len(sent.accepted)})")
    print(
        f"  processed (done): {by_status['done']}, failed: {by_status['failed']}, "
        f"still in progress: {pending}"
    )
    print(f"  dead-letter queue: {dead_letters} message(s)")
    print(f"  end-to-end ms (accepted -> row done): {percentiles(end_to_end)}")
    if finished:
        first = min(r["accepted_at"] for r in rows)
        print(
            f"  drain: last task finished {(max(finished) - first).total_seconds():.1f} s "
            "after the first was accepted"
        )
    print(
        f"  worker batches: {len(spans)}; most running at once: "
        f"{peak_overlap(list(spans.values())) if spans else 0}"
    )
    outputs = running["api"]["outputs"]
    worker = running["api"]["worker_function"]
    print(f"""
Where to look next (awslocal is in .venv/bin: `source .venv/bin/activate`):
  curl {api}status
  curl {api}tasks/{sent.accepted[0] if sent.accepted else "TASK_ID"}
  awslocal sqs get-queue-attributes --queue-url {outputs["TaskQueueUrl"]} --attribute-names All
  awslocal lambda list-event-source-mappings --function-name {worker}
  awslocal logs tail /aws/lambda/{worker} --since 10m
  scripts/localcloud status   (what runs, where; endpoints in {cfg.endpoints_file})
  scripts/localcloud down     (stop everything)""")
    rejected = sum(n for code, n in sent.statuses.items() if code != 202)
    return 1 if rejected or sent.errors or pending or len(rows) != len(sent.accepted) else 0
