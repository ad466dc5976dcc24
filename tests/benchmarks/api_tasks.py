"""Benchmark of the task API's acceptance. Prints figures; asserts nothing.

POST /tasks stands beside a no-op route measured in the same run on the same stack: GET /whoami,
served by the same API Lambda behind the same API Gateway, doing nothing. So `tasks / no-op`
shows what storing a task in PostgreSQL and sending it to SQS adds to the cost of a request.
The two alternate (no-op, tasks, no-op, tasks, ...: --rounds) so drift hits both. Then
POST /tasks/batch with 100 tasks per request gives tasks/s accepted in batches.

Each client thread reuses one requests.Session (keep-alive). A warm-up of every kind runs
first and is not counted, so cold starts of the API's execution environments are excluded.
Every non-2xx answer and every transport error counts as an error and is reported.

The tasks are real echo tasks: the worker processes them. After sending, the benchmark waits
(bounded: --drain-seconds) for them to reach `done` in PostgreSQL and reports how many did,
and the drain rate (done tasks / (last finished_at - first accepted_at)).

CPU per phase, from /proc (% of one core): LocalStack's own process; its children, the Lambda
execution environments of the API and of the worker; PostgreSQL and its backends; this client;
the machine, and what of it none of these used (another program: the figures are then suspect).
Also per phase: how many API environments there were, and how many started (cold) during it.

Usage: scripts/bench-api [--requests N] [--threads N] [--batches N] [--rounds N] [--json PATH]
(the local cloud must be up and the app deployed: scripts/localcloud up && scripts/deploy)
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import itertools
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import requests

from burst.analysis import percentile
from burst.sender import ThreadSessions
from burst.settings import LOOPBACK_HOSTS
from chalicelib.validation import MAX_BATCH_TASKS
from deployment import database
from localcloud import endpoints, environments
from localcloud.aws import client_for_running

REPO = Path(__file__).resolve().parents[2]
ENDPOINTS = Path(os.environ.get("LOCALCLOUD_STATE_DIR", REPO / ".localcloud")) / "endpoints.json"

MAX_REQUESTS = 5000
MAX_THREADS = 64
MAX_BATCHES = 200  # 20,000 tasks
MAX_ROUNDS = 10
MAX_WARMUP = 500
# The single-task warm-up already starts and warms the API's environments (the same function
# serves every route); two batches warm the batch path without queueing much ahead of the run.
WARMUP_BATCHES = 2
MAX_SECONDS = 1800.0
MAX_DRAIN_SECONDS = 600.0
REQUEST_TIMEOUT_SECONDS = 30.0
DRAIN_POLL_SECONDS = 1.0
TARGET_RATIO = 0.8
BATCH_SIZE = MAX_BATCH_TASKS

NOOP, TASKS, BATCH = "no-op", "tasks", "batch"
ROUTES = {NOOP: ("GET", "whoami"), TASKS: ("POST", "tasks"), BATCH: ("POST", "tasks/batch")}
JSON_HEADERS = {"Content-Type": "application/json"}
CPU_GROUPS = ("localstack", "api", "worker", "postgres", "client", "machine")


class BenchError(RuntimeError):
    """The benchmark cannot run; the message says what to fix."""


# --- what is sent and what comes back


def echo_task(n: int) -> dict[str, Any]:
    return {"type": "echo", "payload": {"i": n}}


def request_body(kind: str, n: int) -> bytes | None:
    """The body of request number `n` of `kind`; batches hold tasks n*100 .. n*100+99."""
    if kind == NOOP:
        return None
    if kind == TASKS:
        return json.dumps(echo_task(n)).encode()
    tasks = [echo_task(n * BATCH_SIZE + k) for k in range(BATCH_SIZE)]
    return json.dumps({"tasks": tasks}).encode()


def accepted_from(kind: str, body: Any) -> tuple[list[str], int]:
    """(ids of the tasks accepted, tasks refused as conflicts) from a 2xx answer's JSON body.
    Raises KeyError / TypeError / ValueError when the body is not what the route answers."""
    if kind == NOOP:
        return [], 0
    if kind == TASKS:
        return [str(uuid.UUID(body["id"]))], 0
    results = body["results"]
    ids = [str(uuid.UUID(r["id"])) for r in results if r["outcome"] == "accepted"]
    return ids, sum(1 for r in results if r["outcome"] == "conflict")


@dataclass(frozen=True)
class Outcome:
    """One request: its status (None when no answer came), latency, and what it accepted."""

    status: int | None
    ms: float
    task_ids: Sequence[str] = ()
    rejected: int = 0
    error: str | None = None  # transport error, or an unreadable 2xx body
    sample: str | None = None  # the start of a non-2xx body

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None


@dataclass
class Phase:
    """The outcomes of one phase (or of several of one kind, combined)."""

    kind: str
    label: str
    threads: int
    planned: int
    sent: int = 0
    ok: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: dict[str, str] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # of ok requests only
    task_ids: list[str] = field(default_factory=list)
    rejected: int = 0
    seconds: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    api_environments: int = 0  # the API function's execution environments at the end
    api_cold_starts: int = 0  # environments of the API function started during the phase

    def record(self, outcome: Outcome) -> None:
        self.sent += 1
        if outcome.status is not None:
            self.statuses[outcome.status] += 1
        if outcome.error is not None:
            self.errors[outcome.error] += 1
        if outcome.sample is not None and outcome.status is not None:
            self.samples.setdefault(str(outcome.status), outcome.sample)
        if outcome.ok:
            self.ok += 1
            self.latencies_ms.append(outcome.ms)
            self.task_ids.extend(outcome.task_ids)
        self.rejected += outcome.rejected

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    @property
    def cut_short(self) -> bool:
        return self.sent < self.planned


def combine(phases: Sequence[Phase], label: str) -> Phase:
    """Phases of one kind as one: counts and seconds add up, so rates are over the total time."""
    first = phases[0]
    total = Phase(first.kind, label, first.threads, sum(p.planned for p in phases))
    for p in phases:
        total.sent += p.sent
        total.ok += p.ok
        total.statuses.update(p.statuses)
        total.errors.update(p.errors)
        for status, text in p.samples.items():
            total.samples.setdefault(status, text)
        total.latencies_ms.extend(p.latencies_ms)
        total.task_ids.extend(p.task_ids)
        total.rejected += p.rejected
        total.seconds += p.seconds
        total.api_environments = p.api_environments
        total.api_cold_starts += p.api_cold_starts
        for group, seconds in p.cpu_seconds.items():
            total.cpu_seconds[group] = total.cpu_seconds.get(group, 0.0) + seconds
    return total


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def figures(phase: Phase) -> dict[str, Any]:
    """The phase's figures, JSON-ready. Rates count ok requests (2xx with a readable body)."""
    lat = phase.latencies_ms
    return {
        "kind": phase.kind,
        "route": " ".join(ROUTES[phase.kind]),
        "label": phase.label,
        "threads": phase.threads,
        "planned": phase.planned,
        "sent": phase.sent,
        "ok": phase.ok,
        "failed": phase.failed,
        "statuses": {str(k): v for k, v in sorted(phase.statuses.items())},
        "errors": dict(phase.errors),
        "error_samples": phase.samples,
        "seconds": round(phase.seconds, 3),
        "requests_per_s": rate(phase.ok, phase.seconds),
        "tasks_accepted": len(phase.task_ids),
        "tasks_rejected": phase.rejected,
        "tasks_per_s": rate(len(phase.task_ids), phase.seconds),
        "latency_ms": {
            "p50": statistics.median(lat) if lat else None,
            "p95": percentile(lat, 0.95) if lat else None,
            "p99": percentile(lat, 0.99) if lat else None,
        },
        "cpu_percent": cpu_percent(phase.cpu_seconds, phase.seconds),
        "api_environments": phase.api_environments,
        "api_cold_starts": phase.api_cold_starts,
        # What one answered request costs the stack's bottleneck, LocalStack's own process.
        "localstack_cpu_ms_per_request": (
            1000 * phase.cpu_seconds["localstack"] / phase.ok
            if "localstack" in phase.cpu_seconds and phase.ok
            else None
        ),
    }


def cpu_percent(cpu_seconds: Mapping[str, float], seconds: float) -> dict[str, float]:
    """% of one core per group over `seconds`, and "other": what the machine used beyond the
    groups (another program on this machine, or processes that ended during the phase)."""
    if seconds <= 0:
        return {}
    percent = {g: 100 * cpu_seconds[g] / seconds for g in CPU_GROUPS if g in cpu_seconds}
    if "machine" in percent:
        ours = sum(v for g, v in percent.items() if g != "machine")
        percent["other"] = max(0.0, percent["machine"] - ours)
    return percent


def ratio(tasks: Phase, noop: Phase) -> float | None:
    """POST /tasks requests/s over the no-op's; None when the no-op got nothing through."""
    base = rate(noop.ok, noop.seconds)
    return rate(tasks.ok, tasks.seconds) / base if base > 0 else None


def verdict(value: float | None, threads: int) -> str:
    shown = "n/a (no no-op request succeeded)" if value is None else f"{value:.2f}x"
    return f"POST /tasks vs no-op at {threads} threads: {shown} (target >= {TARGET_RATIO})"


# --- CPU from /proc


def parse_stat(text: str) -> tuple[int, int, int]:
    """(pid, parent pid, user + system clock ticks) from a /proc/<pid>/stat line. The command
    name sits in parentheses and may itself hold spaces and parentheses: split after the last."""
    pid = int(text[: text.index(" ")])
    fields = text[text.rindex(")") + 2 :].split()
    return pid, int(fields[1]), int(fields[11]) + int(fields[12])


def descendants(parents: Mapping[int, int], root: int) -> set[int]:
    """`root` and every process below it, from a pid -> parent pid map."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, parent in parents.items():
        children[parent].append(pid)
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


CpuSnapshot = dict[str, dict[int, float]]  # group -> pid -> CPU seconds used so far


def function_name(environ: bytes) -> str | None:
    """AWS_LAMBDA_FUNCTION_NAME from a /proc/<pid>/environ (NUL-separated NAME=value)."""
    for item in environ.split(b"\0"):
        name, _, value = item.partition(b"=")
        if name == b"AWS_LAMBDA_FUNCTION_NAME":
            return value.decode(errors="replace")
    return None


class CpuProbe:
    """CPU seconds so far per group, from /proc: LocalStack's own process; the execution
    environments (its child processes) of the API function and of the worker; PostgreSQL and
    its backends; this client; the whole machine (all CPUs, as pid 0)."""

    def __init__(
        self,
        localstack_pid: int,
        postgres_pid: int | None,
        api_function: str,
        worker_function: str,
    ) -> None:
        self._localstack = localstack_pid
        self._postgres = postgres_pid
        self._groups = {api_function: "api", worker_function: "worker"}
        self._functions: dict[int, str | None] = {}  # pid -> function name, read once

    def _function_of(self, pid: int) -> str | None:
        if pid not in self._functions:
            # Forked environments: their pid records name the function (their environ is the
            # runtime template's); an exec'd one's environ names it too.
            recorded = environments.function_processes(ENDPOINTS.parent / "run" / "functions")
            if pid in recorded:
                self._functions[pid] = recorded[pid]
                return recorded[pid]
            try:
                self._functions[pid] = function_name(Path(f"/proc/{pid}/environ").read_bytes())
            except OSError:
                return None
        return self._functions[pid]

    def snapshot(self) -> CpuSnapshot:
        parents: dict[int, int] = {}
        ticks: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                pid, parent, used = parse_stat(Path(entry.path, "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # exited while we looked
            parents[pid], ticks[pid] = parent, used
        hz = os.sysconf("SC_CLK_TCK")
        snapshot: CpuSnapshot = {group: {} for group in CPU_GROUPS}
        snapshot["localstack"] = {self._localstack: ticks.get(self._localstack, 0) / hz}
        snapshot["client"] = {os.getpid(): ticks.get(os.getpid(), 0) / hz}
        for pid in descendants(parents, self._localstack) - {self._localstack}:
            group = self._groups.get(self._function_of(pid) or "")
            if group is not None:
                snapshot[group][pid] = ticks[pid] / hz
        if self._postgres:
            for pid in descendants(parents, self._postgres):
                snapshot["postgres"][pid] = ticks.get(pid, 0) / hz
        cpu_line = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        jiffies = [int(v) for v in cpu_line[:8]]  # user nice system idle iowait irq softirq steal
        snapshot["machine"] = {0: (sum(jiffies) - jiffies[3] - jiffies[4]) / hz}
        return snapshot


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds per group between two snapshots, process by process: a process started in
    between counts from zero; one that ended in between (a stopped Lambda environment) is
    missed for its last moments, so a group's figure is a lower bound."""
    return {
        group: sum(used - before.get(group, {}).get(pid, 0.0) for pid, used in pids.items())
        for group, pids in after.items()
    }


# --- sending


class Client:
    """T client threads that live for the whole run, each with its own requests.Session."""

    def __init__(self, base_url: str, threads: int, api_key: str | None = None) -> None:
        self.base_url = base_url
        self._headers = {**JSON_HEADERS, **({"x-api-key": api_key} if api_key else {})}
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="client")
        self._sessions = ThreadSessions()

    def _session(self) -> requests.Session:
        return self._sessions.get()

    def send(self, kind: str, n: int) -> Outcome:
        method, path = ROUTES[kind]
        body = request_body(kind, n)
        session = self._session()
        started = time.perf_counter()
        try:
            response = session.request(
                method,
                self.base_url + path,
                data=body,
                headers=self._headers if body is not None else None,
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except requests.RequestException as e:
            return Outcome(None, (time.perf_counter() - started) * 1000, error=type(e).__name__)
        ms = (time.perf_counter() - started) * 1000
        if not 200 <= response.status_code < 300:
            return Outcome(response.status_code, ms, sample=response.text[:300])
        try:
            ids, rejected = accepted_from(kind, response.json())
        except (KeyError, TypeError, ValueError):
            return Outcome(response.status_code, ms, error=f"unreadable {response.status_code}")
        return Outcome(response.status_code, ms, ids, rejected)

    def run(
        self,
        phase: Phase,
        numbers: Iterable[int],
        deadline: float,
        cpu: Callable[[], CpuSnapshot],
    ) -> Phase:
        """Send phase.planned requests from phase.threads threads, each sending its next one as
        soon as its previous one is answered; stop early at `deadline` (time.monotonic)."""
        take = iter(itertools.islice(numbers, phase.planned))
        lock = threading.Lock()

        def loop() -> None:
            while time.monotonic() < deadline:
                with lock:
                    n = next(take, None)
                if n is None:
                    return
                outcome = self.send(phase.kind, n)
                with lock:
                    phase.record(outcome)

        before = cpu()
        started = time.perf_counter()
        workers = [self._pool.submit(loop) for _ in range(phase.threads)]
        for worker in workers:
            worker.result()
        phase.seconds = time.perf_counter() - started
        after = cpu()
        phase.cpu_seconds = cpu_delta(before, after)
        phase.api_environments = len(after["api"])
        phase.api_cold_starts = len(after["api"].keys() - before["api"].keys())
        return phase

    def close(self) -> None:
        self._pool.shutdown()
        self._sessions.close()


# --- the drain, in PostgreSQL


@dataclass
class Drain:
    total: int
    statuses: dict[str, int] = field(default_factory=dict)
    waited_seconds: float = 0.0
    first_accepted: datetime | None = None
    last_finished: datetime | None = None

    @property
    def done(self) -> int:
        return self.statuses.get("done", 0)

    @property
    def finished(self) -> int:
        return self.done + self.statuses.get("failed", 0)

    @property
    def tasks_per_s(self) -> float | None:
        if self.first_accepted is None or self.last_finished is None:
            return None
        return rate(self.done, (self.last_finished - self.first_accepted).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": self.total,
            "statuses": self.statuses,
            "missing": self.total - sum(self.statuses.values()),
            "waited_seconds": round(self.waited_seconds, 1),
            "first_accepted": self.first_accepted.isoformat() if self.first_accepted else None,
            "last_finished": self.last_finished.isoformat() if self.last_finished else None,
            "tasks_per_s": self.tasks_per_s,
        }


def wait_for_drain(running: Mapping[str, Any], task_ids: Sequence[str], wait: float) -> Drain:
    """Poll the tasks' statuses until all are done or failed, or `wait` seconds passed."""
    ids = [uuid.UUID(i) for i in task_ids]
    drain = Drain(len(ids))
    started = time.monotonic()
    next_report = started + 10
    with psycopg.connect(database.conninfo(running), autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT status, count(*) FROM tasks WHERE id = ANY(%s) GROUP BY status", (ids,)
            ).fetchall()
            drain.statuses = {status: int(n) for status, n in rows}
            drain.waited_seconds = time.monotonic() - started
            if drain.finished >= drain.total or drain.waited_seconds >= wait:
                break
            if time.monotonic() >= next_report:
                print(f"  ... {drain.waited_seconds:.0f} s: {dict(sorted(rows))}", flush=True)
                next_report += 10
            time.sleep(DRAIN_POLL_SECONDS)
        row = conn.execute(
            "SELECT min(accepted_at), max(finished_at) FILTER (WHERE status = 'done') "
            "FROM tasks WHERE id = ANY(%s)",
            (ids,),
        ).fetchone()
    if row is not None:
        drain.first_accepted, drain.last_finished = row
    return drain


# --- the run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--requests",
        type=int,
        default=400,
        help=f"requests per measured no-op / POST /tasks phase, per round (1..{MAX_REQUESTS})",
    )
    parser.add_argument("--threads", type=int, default=8, help=f"client threads (1..{MAX_THREADS})")
    parser.add_argument(
        "--batches",
        type=int,
        default=20,
        help=f"POST /tasks/batch requests of {BATCH_SIZE} tasks (1..{MAX_BATCHES})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help=f"no-op / POST /tasks rounds, alternated so drift hits both (1..{MAX_ROUNDS})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=50,
        help=f"uncounted requests of each kind first, batches: at most {WARMUP_BATCHES} "
        f"(0..{MAX_WARMUP})",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        help=f"stop sending after this, warm-up included (<= {MAX_SECONDS:.0f})",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=120.0,
        help=f"wait this long at most for the tasks to be done (0 skips; <= "
        f"{MAX_DRAIN_SECONDS:.0f})",
    )
    parser.add_argument(
        "--pause-worker",
        action="store_true",
        help="disable the SQS mapping while measuring, so LocalStack serves only the API "
        "(the handler's own cost); the worker drains afterwards",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")


def validate(args: argparse.Namespace, url: str) -> None:
    bounds = (
        ("--requests", args.requests, 1, MAX_REQUESTS),
        ("--threads", args.threads, 1, MAX_THREADS),
        ("--batches", args.batches, 1, MAX_BATCHES),
        ("--rounds", args.rounds, 1, MAX_ROUNDS),
        ("--warmup", args.warmup, 0, MAX_WARMUP),
    )
    for option, value, low, high in bounds:
        if not low <= value <= high:
            raise BenchError(f"{option} must be between {low} and {high}, got {value}")
    if not 0 < args.max_seconds <= MAX_SECONDS:
        raise BenchError(f"--max-seconds must be in (0, {MAX_SECONDS:.0f}], got {args.max_seconds}")
    if not 0 <= args.drain_seconds <= MAX_DRAIN_SECONDS:
        raise BenchError(
            f"--drain-seconds must be in [0, {MAX_DRAIN_SECONDS:.0f}], got {args.drain_seconds}"
        )
    if urlparse(url).hostname not in LOOPBACK_HOSTS:
        raise BenchError(
            f"the API URL {url} is not on loopback: the benchmark only loads this machine"
        )


def load_running() -> dict[str, Any]:
    running = endpoints.load(ENDPOINTS)
    if not running:
        raise BenchError(f"the local cloud is not up ({ENDPOINTS} missing): scripts/localcloud up")
    if "api" not in running:
        raise BenchError("the app is not deployed to this local cloud: run scripts/deploy")
    return running


def queue_state(client: Client) -> str:
    """The API's own /status, one line: what was queued before (a backlog slows the drain)."""
    try:
        response = requests.get(client.base_url + "status", timeout=REQUEST_TIMEOUT_SECONDS)
        body = response.json()
        return f"queue {body['queue']}, tasks {body['tasks']}"
    except (requests.RequestException, ValueError, KeyError, TypeError) as e:
        return f"GET /status failed: {e}"


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = (*CPU_GROUPS, "other")
OTHER_CPU_NOTE_PERCENT = 25.0
HEADER = (
    f"{'phase':<26}{'thr':>4}{'sent':>6}{'fail':>5}{'req/s':>8}{'tasks/s':>9}"
    f"{'p50':>7}{'p95':>7}{'p99':>7}   "
    + "".join(
        f"{name:>5}"
        for name in ("LS%", "api%", "wrk%", "pg%", "cli%", "all%", "oth%", "envs", "cold")
    )
)


def table_row(f: Mapping[str, Any]) -> str:
    lat, cpu = f["latency_ms"], f["cpu_percent"]
    name = f"{f['route']} {f['label']}"
    if f["sent"] < f["planned"]:
        name += "*"
    return (
        f"{name:<26}{f['threads']:>4}{f['sent']:>6}{f['failed']:>5}"
        f"{f['requests_per_s']:>8.1f}{f['tasks_per_s']:>9.1f}"
        f"{fmt(lat['p50']):>7}{fmt(lat['p95']):>7}{fmt(lat['p99']):>7}   "
        + "".join(f"{fmt(cpu.get(g)):>5}" for g in COLUMNS)
        + f"{f['api_environments']:>5}{f['api_cold_starts']:>5}"
    )


def describe_failures(f: Mapping[str, Any]) -> str | None:
    if not f["failed"] and not f["tasks_rejected"]:
        return None
    parts = [f"statuses {f['statuses']}"]
    if f["errors"]:
        parts.append(f"errors {f['errors']}")
    if f["tasks_rejected"]:
        parts.append(f"{f['tasks_rejected']} tasks rejected inside 2xx batches")
    for status, text in f["error_samples"].items():
        parts.append(f"first {status} body: {text!r}")
    return f"  {f['route']} {f['label']}: " + "; ".join(parts)


@dataclass
class Measured:
    warmups: list[Phase]
    rounds: list[tuple[Phase, Phase]]  # (no-op, POST /tasks), in the order they ran
    batch: Phase

    @property
    def phases(self) -> list[Phase]:
        return [p for pair in self.rounds for p in pair] + [self.batch]

    @property
    def task_ids(self) -> list[str]:
        return [i for p in self.warmups + self.phases for i in p.task_ids]


def measure(args: argparse.Namespace, client: Client, cpu: Callable[[], CpuSnapshot]) -> Measured:
    """Warm-up, then --rounds of (no-op, POST /tasks), then the batches; one deadline for all."""
    threads, batch_threads = args.threads, min(args.threads, args.batches)
    numbers = itertools.count()  # payload "i": unique across the run
    deadline = time.monotonic() + args.max_seconds

    def phase(kind: str, label: str, width: int, count: int) -> Phase:
        return client.run(Phase(kind, label, width, count), numbers, deadline, cpu)

    warmups = []
    if args.warmup:
        batches = min(args.warmup, WARMUP_BATCHES)
        print(
            f"Warm-up, not counted (cold starts excluded): {args.warmup} x GET whoami, "
            f"{args.warmup} x POST tasks, {batches} x POST tasks/batch"
        )
        warmups = [
            phase(NOOP, "warm-up", threads, args.warmup),
            phase(TASKS, "warm-up", threads, args.warmup),
            phase(BATCH, "warm-up", batch_threads, batches),
        ]
    rounds = []
    for r in range(1, args.rounds + 1):
        print(f"Round {r}/{args.rounds}: {args.requests} x GET whoami, then POST tasks")
        noop = phase(NOOP, f"r{r}", threads, args.requests)
        rounds.append((noop, phase(TASKS, f"r{r}", threads, args.requests)))
    print(f"Batches: {args.batches} x POST tasks/batch ({BATCH_SIZE} tasks each)")
    return Measured(warmups, rounds, phase(BATCH, "", batch_threads, args.batches))


def print_table(m: Measured) -> None:
    noop_all = combine([n for n, _ in m.rounds], "all")
    tasks_all = combine([t for _, t in m.rounds], "all")
    print(
        "\nResults: rates count 2xx answers per second of the phase; latency ms of 2xx "
        "answers; CPU % of one core over the phase (LS LocalStack's own process, api / wrk the "
        "API's / the worker's Lambda environments, pg PostgreSQL, cli this client, all the "
        f"machine: {100 * (os.cpu_count() or 1)}% max, oth the rest of it); envs: the API "
        "function's environments at the phase's end, cold: how many of them started during it"
    )
    print(HEADER)
    for p in [*m.warmups, *m.phases[:-1], noop_all, tasks_all, m.batch]:
        print(table_row(figures(p)))
    if any(p.cut_short for p in m.phases):
        print("  * cut short by --max-seconds: fewer requests sent than planned")
    busy = [
        f"{p.kind} {p.label}".strip()
        for p in m.phases
        if figures(p)["cpu_percent"].get("other", 0.0) > OTHER_CPU_NOTE_PERCENT
    ]
    if busy:
        print(
            f"  note: other programs used more than {OTHER_CPU_NOTE_PERCENT:.0f}% of a core "
            f"during {', '.join(busy)}: the machine was shared, figures may be low"
        )
    cold = sum(p.api_cold_starts for p in m.phases)
    if cold:
        print(
            f"  note: {cold} API environments started during measured phases: their cold "
            "starts are inside the figures (LocalStack starts one when a request finds no idle "
            "environment, e.g. one that has answered but not yet asked for its next event)"
        )
    print("\nFailures (non-2xx, transport errors, rejected tasks):")
    lines = [describe_failures(figures(p)) for p in m.warmups + m.phases]
    print("\n".join(line for line in lines if line) or "  none")


def print_ratios(m: Measured, threads: int) -> dict[str, Any]:
    noop_all = combine([n for n, _ in m.rounds], "all")
    tasks_all = combine([t for _, t in m.rounds], "all")
    per_round = [ratio(t, n) for n, t in m.rounds]
    overall = ratio(tasks_all, noop_all)
    print("\nPOST /tasks req/s over no-op req/s:")
    for r, value in enumerate(per_round, 1):
        print(f"  round {r}: {fmt(value, '.2f')}x")
    print(f"  overall: {fmt(overall, '.2f')}x")
    noop_f, tasks_f, batch_f = figures(noop_all), figures(tasks_all), figures(m.batch)
    print(
        "LocalStack's own CPU per 2xx request, ms: "
        f"no-op {fmt(noop_f['localstack_cpu_ms_per_request'], '.1f')}, "
        f"POST /tasks {fmt(tasks_f['localstack_cpu_ms_per_request'], '.1f')}, "
        f"POST /tasks/batch {fmt(batch_f['localstack_cpu_ms_per_request'], '.1f')}"
    )
    single = tasks_f["tasks_per_s"]
    print(
        f"Tasks accepted per second: POST /tasks {single:.1f}/s ({threads} threads), "
        f"POST /tasks/batch {batch_f['tasks_per_s']:.1f}/s ({m.batch.threads} threads, "
        f"{BATCH_SIZE} per request: {batch_f['requests_per_s']:.2f} req/s)"
        + (f", {batch_f['tasks_per_s'] / single:.1f}x" if single > 0 else "")
    )
    return {
        "no-op": noop_f,
        "tasks": tasks_f,
        "batch": batch_f,
        "ratio": {"per_round": per_round, "overall": overall, "target": TARGET_RATIO},
    }


@contextlib.contextmanager
def worker_paused(running: Mapping[str, Any], pause: bool) -> Iterator[None]:
    """Disable the worker's SQS mapping for the block (and enable it again, whatever happens)."""
    if not pause:
        yield
        return
    lambda_client = client_for_running(running, "lambda")
    mapping = running["api"]["event_source_mapping"]
    lambda_client.update_event_source_mapping(UUID=mapping, Enabled=False)
    deadline = time.monotonic() + 30
    while lambda_client.get_event_source_mapping(UUID=mapping)["State"] != "Disabled":
        if time.monotonic() > deadline:
            raise BenchError(f"the SQS mapping {mapping} did not stop within 30 s")
        time.sleep(0.2)
    print("  the worker's SQS mapping is disabled while measuring (--pause-worker)")
    try:
        yield
    finally:
        lambda_client.update_event_source_mapping(UUID=mapping, Enabled=True)


def run(args: argparse.Namespace) -> int:
    running = load_running()
    base = running["api"]["url"]
    if not base.endswith("/"):
        base += "/"
    validate(args, base)
    postgres_pid = running.get("postgres", {}).get("pid")
    probe = CpuProbe(
        int(running["localstack"]["pid"]),
        int(postgres_pid) if postgres_pid else None,
        running["api"]["api_function"],
        running["api"]["worker_function"],
    )
    client = Client(base, args.threads, running["api"].get("api_key"))
    print(f"API benchmark against {base} ({os.cpu_count()} CPUs here, shared with the stack)")
    print(f"  before: {queue_state(client)}")
    try:
        with worker_paused(running, args.pause_worker):
            m = measure(args, client, probe.snapshot)
    finally:
        client.close()

    drain = None
    task_ids = m.task_ids
    if args.drain_seconds > 0 and task_ids:
        print(
            f"Waiting up to {args.drain_seconds:.0f} s for the {len(task_ids)} accepted tasks "
            "(warm-up included) to be done in PostgreSQL"
        )
        drain = wait_for_drain(running, task_ids, args.drain_seconds)

    print_table(m)
    summary = print_ratios(m, args.threads)
    if drain is not None:
        print(
            f"Drain: {drain.done} of {drain.total} tasks done ({drain.to_json()['missing']} "
            f"not found) after waiting {drain.waited_seconds:.0f} s; statuses {drain.statuses}; "
            f"{fmt(drain.tasks_per_s, '.1f')} tasks/s from the first accept to the last "
            "finished_at (the worker drains while the phases run, sharing the CPU)"
        )
    print(f"  after: {queue_state(client)}")
    print(verdict(summary["ratio"]["overall"], args.threads))

    if args.json is not None:
        report = {
            "api_url": base,
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "warmup": [figures(p) for p in m.warmups],
            "rounds": [{"no-op": figures(n), "tasks": figures(t)} for n, t in m.rounds],
            **summary,
            "drain": drain.to_json() if drain is not None else None,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"Figures written to {args.json}")
    failed = sum(p.failed + p.rejected for p in m.warmups + m.phases)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as e:
        print(f"bench-api: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
