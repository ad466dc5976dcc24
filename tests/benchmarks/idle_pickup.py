"""Benchmark of an idle trigger's pickup: one task posted to an idle system, N times. Prints
figures; asserts nothing.

Each round posts one `echo` task (POST /tasks), waits until its row is `done`, then waits a
little more (--idle-seconds) so that the next task again finds the worker's trigger idle. From
the task's row (same machine, same clock as this client):
- POST-to-done: finished_at - the moment the POST was sent;
- queue wait: started_at - accepted_at (the API stored the row, sent the message, committed;
  the mapping received it, invoked the worker, the worker marked it running): what an idle
  trigger's polling adds shows here;
- run: finished_at - started_at.

The worker's execution environment is warm after the first round (a warm-up round runs first
and is not counted), so cold starts stay out of the figures.

Usage: scripts/bench-idle-pickup [--tasks N] [--idle-seconds S] [--json PATH]
(the local cloud must be up and the app deployed: scripts/localcloud up && scripts/deploy)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import requests

from burst.analysis import percentile
from burst.settings import LOOPBACK_HOSTS
from deployment import database
from localcloud import endpoints

REPO = Path(__file__).resolve().parents[2]
ENDPOINTS = Path(os.environ.get("LOCALCLOUD_STATE_DIR", REPO / ".localcloud")) / "endpoints.json"

MAX_TASKS = 200
MAX_IDLE_SECONDS = 30.0
WARMUP_TASKS = 1
TASK_TIMEOUT_SECONDS = 30.0
ROW_POLL_SECONDS = 0.02
REQUEST_TIMEOUT_SECONDS = 30.0


class BenchError(RuntimeError):
    """The benchmark cannot run; the message says what to fix."""


@dataclass(frozen=True)
class Pickup:
    """One task's times, in milliseconds."""

    post_ms: float  # the POST's own latency (the API's answer)
    post_to_done_ms: float
    queue_wait_ms: float
    run_ms: float


def one_task(
    http: requests.Session, base: str, headers: Mapping[str, str], conn: psycopg.Connection[Any]
) -> Pickup:
    body = json.dumps({"type": "echo", "payload": {"idle_pickup": uuid.uuid4().hex}})
    posted_at = time.time()
    response = http.post(
        base + "tasks", data=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS
    )
    answered_at = time.time()
    if response.status_code != 202:
        raise BenchError(f"POST /tasks answered {response.status_code}: {response.text[:200]}")
    task_id = uuid.UUID(response.json()["id"])
    accepted, started, finished = wait_for_done(conn, task_id)
    return Pickup(
        post_ms=(answered_at - posted_at) * 1000,
        post_to_done_ms=(finished.timestamp() - posted_at) * 1000,
        queue_wait_ms=(started - accepted).total_seconds() * 1000,
        run_ms=(finished - started).total_seconds() * 1000,
    )


def wait_for_done(
    conn: psycopg.Connection[Any], task_id: uuid.UUID
) -> tuple[datetime, datetime, datetime]:
    """(accepted_at, started_at, finished_at) once the task is done (bounded)."""
    deadline = time.monotonic() + TASK_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT status, accepted_at, started_at, finished_at FROM tasks WHERE id = %s",
            (task_id,),
        ).fetchone()
        if row is not None and row[0] == "done":
            return row[1], row[2], row[3]
        if row is not None and row[0] == "failed":
            raise BenchError(f"task {task_id} failed: the worker is broken, see its logs")
        time.sleep(ROW_POLL_SECONDS)
    raise BenchError(f"task {task_id} not done within {TASK_TIMEOUT_SECONDS:.0f} s")


def summary(pickups: Sequence[Pickup]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name in ("post_to_done_ms", "queue_wait_ms", "run_ms", "post_ms"):
        values = [getattr(p, name) for p in pickups]
        out[name] = {
            "p50": percentile(values, 0.50),
            "p95": percentile(values, 0.95),
            "max": max(values, default=None),
        }
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=20, help=f"rounds, 1-{MAX_TASKS}")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=2.0,
        help="pause after each task so the next finds the trigger idle (default 2)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")


def validate(args: argparse.Namespace, base: str) -> None:
    if not 1 <= args.tasks <= MAX_TASKS:
        raise BenchError(f"--tasks must be between 1 and {MAX_TASKS}, got {args.tasks}")
    if not 0 <= args.idle_seconds <= MAX_IDLE_SECONDS:
        raise BenchError(f"--idle-seconds must be in [0, {MAX_IDLE_SECONDS:.0f}]")
    if urlparse(base).hostname not in LOOPBACK_HOSTS:
        raise BenchError(f"the API URL {base} is not on loopback: the benchmark loads this machine")


def load_running() -> dict[str, Any]:
    running = endpoints.load(ENDPOINTS)
    if not running:
        raise BenchError(f"the local cloud is not up ({ENDPOINTS} missing): scripts/localcloud up")
    if "api" not in running:
        raise BenchError("the app is not deployed to this local cloud: run scripts/deploy")
    return running


def run(args: argparse.Namespace) -> int:
    running = load_running()
    base = running["api"]["url"].rstrip("/") + "/"
    validate(args, base)
    headers = {"Content-Type": "application/json"}
    if api_key := running["api"].get("api_key"):
        headers["x-api-key"] = api_key
    print(f"Idle pickup: {args.tasks} single tasks to {base}, {args.idle_seconds:g} s apart")
    pickups: list[Pickup] = []
    with (
        requests.Session() as http,
        psycopg.connect(database.conninfo(running), autocommit=True) as conn,
    ):
        for n in range(WARMUP_TASKS + args.tasks):
            pickup = one_task(http, base, headers, conn)
            if n >= WARMUP_TASKS:
                pickups.append(pickup)
                print(
                    f"  {n - WARMUP_TASKS + 1:>3}: POST-to-done {pickup.post_to_done_ms:6.0f} ms, "
                    f"queue wait {pickup.queue_wait_ms:6.0f} ms, run {pickup.run_ms:5.0f} ms",
                    flush=True,
                )
            time.sleep(args.idle_seconds)
    figures = summary(pickups)
    print(f"{'ms':<16}{'p50':>8}{'p95':>8}{'max':>8}")
    for name, values in figures.items():
        cells = "".join(f"{v:>8.0f}" if v is not None else f"{'-':>8}" for v in values.values())
        print(f"{name:<16}{cells}")
    if args.json is not None:
        report = {"tasks": [asdict(p) for p in pickups], "summary": figures}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"Figures written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        print(f"bench-idle-pickup: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
