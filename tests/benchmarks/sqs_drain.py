"""Benchmark of the worker's SQS trigger (local cloud up, app deployed), side by side in one run:

- raw: how fast this LocalStack's SQS lets 10 client threads receive (10 at a time) and delete
  a backlog, with no function at all: the ceiling any poller works under;
- drain: a backlog of `--tasks` echo tasks, accepted by the API while the trigger is off, then
  drained by the trigger at BatchSize 10, MaximumConcurrency 10 (target: >= 200 tasks/s and
  >= 0.6 x raw);
- window: the same backlog with BatchSize 100 and a 1 s batching window;
- ramp: an idle trigger gets `--sleep-tasks` sleep tasks at once; how long from the first
  message until MaximumConcurrency batches run at once.

Rounds alternate raw and drains (ABAB), so a noisy neighbour hits both. The trigger's settings
are put back as they were, whatever happens.
    scripts/bench-drain [--tasks N] [--rounds N] [--sleep-tasks N] [--sleep-ms MS] [--json PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from burst.analysis import TaskRow, batch_intervals, peak_overlap
from burst.cloud import NOT_DEPLOYED_FIX, Target, database, run_rows
from localcloud import endpoints
from localcloud.settings import Settings

MAX_TASKS = 20_000
MAX_ROUNDS = 5
RAW_THREADS = 10  # as many receivers as the trigger's MaximumConcurrency
DRAIN_WAIT_SECONDS = 300.0
POST_BATCH = 100
TARGET_RATE = 200.0
TARGET_RATIO = 0.6
TRIGGER_SETTINGS = ("BatchSize", "MaximumBatchingWindowInSeconds", "ScalingConfig")


DONE_POLL_SECONDS = 0.5


class BenchError(RuntimeError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=2000, help="backlog per drain (<= 20000)")
    parser.add_argument("--rounds", type=int, default=2, help="raw/drain rounds (1..5)")
    parser.add_argument("--maximum-concurrency", type=int, default=10, help="2..1000")
    parser.add_argument("--sleep-tasks", type=int, default=300, help="tasks for the ramp")
    parser.add_argument("--sleep-ms", type=int, default=500, help="each ramp task's sleep")
    parser.add_argument("--json", type=Path, help="also write the figures here")


def validate(args: argparse.Namespace) -> None:
    if not 10 <= args.tasks <= MAX_TASKS:
        raise BenchError(f"--tasks {args.tasks}: use 10..{MAX_TASKS}")
    if not 1 <= args.rounds <= MAX_ROUNDS:
        raise BenchError(f"--rounds {args.rounds}: use 1..{MAX_ROUNDS}")
    if not 2 <= args.maximum_concurrency <= 1000:
        raise BenchError(f"--maximum-concurrency {args.maximum_concurrency}: use 2..1000")
    if not 1 <= args.sleep_tasks <= 5000 or not 1 <= args.sleep_ms <= 5000:
        raise BenchError("--sleep-tasks and --sleep-ms: use 1..5000")


# --- raw SQS -----------------------------------------------------------------------------------


def fill(sqs: Any, queue_url: str, count: int) -> None:
    def send(start: int) -> None:
        entries = [
            {"Id": str(n), "MessageBody": json.dumps({"n": start + n})}
            for n in range(min(10, count - start))
        ]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)

    with concurrent.futures.ThreadPoolExecutor(RAW_THREADS) as pool:
        list(pool.map(send, range(0, count, 10)))


def raw_receive_delete(target: Target, count: int) -> float:
    """Messages/s that RAW_THREADS receivers take off a backlog of `count` (receive 10, delete
    them in one batch), on a scratch queue of the same LocalStack."""
    sqs = target.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"bench-drain-raw-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    try:
        fill(sqs, queue_url, count)
        taken = 0

        def drain() -> int:
            mine = 0
            while True:
                messages = sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                ).get("Messages", [])
                if not messages:
                    return mine
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                        for n, m in enumerate(messages)
                    ],
                )
                mine += len(messages)

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(RAW_THREADS) as pool:
            taken = sum(pool.map(lambda _: drain(), range(RAW_THREADS)))
        seconds = time.perf_counter() - started
        if taken != count:
            raise BenchError(f"raw: {taken} of {count} messages received and deleted")
        return count / seconds
    finally:
        sqs.delete_queue(QueueUrl=queue_url)


# --- the trigger -------------------------------------------------------------------------------


def trigger(target: Target) -> dict[str, Any]:
    mapping: dict[str, Any] = target.client("lambda").get_event_source_mapping(
        UUID=target.event_source_mapping
    )
    return mapping


def set_trigger(target: Target, **changes: Any) -> None:
    lambda_client = target.client("lambda")
    lambda_client.update_event_source_mapping(UUID=target.event_source_mapping, **changes)
    wanted = "Disabled" if changes.get("Enabled") is False else "Enabled"
    deadline = time.monotonic() + 30
    while trigger(target)["State"] != wanted:
        if time.monotonic() > deadline:
            raise BenchError(f"the trigger {target.event_source_mapping} is not {wanted} in 30 s")
        time.sleep(0.1)


@contextmanager
def trigger_restored(target: Target) -> Iterator[None]:
    before = trigger(target)
    try:
        yield
    finally:
        set_trigger(
            target,
            Enabled=True,
            **{key: before[key] for key in TRIGGER_SETTINGS if key in before},
        )


def post_tasks(target: Target, tasks: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    with requests.Session() as http:
        for start in range(0, len(tasks), POST_BATCH):
            response = http.post(
                f"{target.api_url}tasks/batch",
                json={"tasks": tasks[start : start + POST_BATCH]},
                headers={"x-api-key": target.api_key} if target.api_key else None,
                timeout=60,
            )
            if response.status_code != 202:
                raise BenchError(f"POST tasks/batch: {response.status_code} {response.text}")
            ids += [result["id"] for result in response.json()["results"]]
    if len(ids) != len(tasks):
        raise BenchError(f"{len(ids)} of {len(tasks)} tasks accepted")
    return ids


def wait_done(target: Target, ids: list[str], key_prefix: str) -> list[TaskRow]:
    deadline = time.monotonic() + DRAIN_WAIT_SECONDS
    with database(target) as connection:
        while True:
            done = connection.execute(
                "SELECT count(*) AS n FROM tasks WHERE id = ANY(%s::uuid[]) AND status = 'done'",
                (ids,),
            ).fetchone()
            if done is not None and done["n"] == len(ids):
                return run_rows(connection, ids, key_prefix)
            if time.monotonic() > deadline:
                raise BenchError(f"only {done} of {len(ids)} done after {DRAIN_WAIT_SECONDS} s")
            # The rate comes from the rows' finished_at, not from when this poll saw them: a
            # slower poll costs no precision, and at 20 a second its count over thousands of
            # ids (a parallel scan once the table is large) took CPU from the drain it measured.
            time.sleep(DONE_POLL_SECONDS)


def echo_tasks(count: int, key_prefix: str) -> list[dict[str, Any]]:
    return [
        {"type": "echo", "payload": {"n": n}, "idempotency_key": f"{key_prefix}{n}"}
        for n in range(count)
    ]


def drain_rate(target: Target, count: int, maximum: int, **trigger_settings: Any) -> float:
    """Tasks/s from the moment the trigger is switched on over a waiting backlog until the
    last row is done."""
    key_prefix = f"bench-drain-{uuid.uuid4().hex[:8]}-"
    set_trigger(target, Enabled=False)
    ids = post_tasks(target, echo_tasks(count, key_prefix))
    switched_on = datetime.now(UTC)
    set_trigger(
        target, Enabled=True, ScalingConfig={"MaximumConcurrency": maximum}, **trigger_settings
    )
    rows = wait_done(target, ids, key_prefix)
    last = max(row.finished_at for row in rows if row.finished_at is not None)
    return count / (last - switched_on).total_seconds()


def time_to_maximum(target: Target, count: int, ms: int, maximum: int) -> dict[str, Any]:
    """An idle trigger (one poller long-polling) gets `count` sleep tasks at once: seconds from
    the first task accepted to `maximum` batches running at once (from the rows)."""
    set_trigger(
        target,
        Enabled=True,
        BatchSize=10,
        MaximumBatchingWindowInSeconds=0,
        ScalingConfig={"MaximumConcurrency": maximum},
    )
    time.sleep(3.0)  # empty polls scale it down to its idle poller
    key_prefix = f"bench-ramp-{uuid.uuid4().hex[:8]}-"
    tasks = [
        {"type": "sleep", "payload": {"ms": ms}, "idempotency_key": f"{key_prefix}{n}"}
        for n in range(count)
    ]
    ids = post_tasks(target, tasks)
    rows = wait_done(target, ids, key_prefix)
    first = min(row.accepted_at for row in rows)
    intervals = batch_intervals(rows)
    peak = peak_overlap(intervals.values())
    return {
        "peak_batches": peak.count,
        "seconds_to_peak": (peak.at - first).total_seconds() if peak.at else None,
        "seconds_to_first_batch": (
            min(start for start, _ in intervals.values()) - first
        ).total_seconds(),
    }


# --- the run -----------------------------------------------------------------------------------


def load_target() -> Target:
    cfg = Settings.from_env()
    if not cfg.endpoints_file.exists():
        raise BenchError(f"{cfg.endpoints_file} is missing: {NOT_DEPLOYED_FIX}")
    return Target.from_endpoints(endpoints.load(cfg.endpoints_file), str(cfg.endpoints_file))


def run(args: argparse.Namespace) -> dict[str, Any]:
    validate(args)
    target = load_target()
    maximum = args.maximum_concurrency
    figures: dict[str, list[float]] = {"raw": [], "drain": [], "window": []}
    print(f"{args.rounds} round(s): {args.tasks} messages/tasks each, MaximumConcurrency {maximum}")
    with trigger_restored(target):
        drain_rate(target, 100, maximum, BatchSize=10, MaximumBatchingWindowInSeconds=0)  # warm
        for round_number in range(1, args.rounds + 1):
            figures["raw"].append(raw_receive_delete(target, args.tasks))
            figures["drain"].append(
                drain_rate(
                    target, args.tasks, maximum, BatchSize=10, MaximumBatchingWindowInSeconds=0
                )
            )
            figures["window"].append(
                drain_rate(
                    target, args.tasks, maximum, BatchSize=100, MaximumBatchingWindowInSeconds=1
                )
            )
            print(
                f"  round {round_number}: raw {figures['raw'][-1]:.0f} msg/s, "
                f"drain {figures['drain'][-1]:.0f} tasks/s, "
                f"window {figures['window'][-1]:.0f} tasks/s",
                flush=True,
            )
        ramp = time_to_maximum(target, args.sleep_tasks, args.sleep_ms, maximum)
    summary = summarise(figures, ramp, maximum)
    print_summary(summary)
    return summary


def summarise(
    figures: Mapping[str, list[float]], ramp: dict[str, Any], maximum: int
) -> dict[str, Any]:
    medians = {name: statistics.median(values) for name, values in figures.items()}
    ratio = medians["drain"] / medians["raw"]
    return {
        "rounds": {name: [round(v, 1) for v in values] for name, values in figures.items()},
        "median": {name: round(value, 1) for name, value in medians.items()},
        "drain_over_raw": round(ratio, 2),
        "window_over_drain": round(medians["window"] / medians["drain"], 2),
        "drain_meets_rate": medians["drain"] >= TARGET_RATE,
        "drain_meets_ratio": ratio >= TARGET_RATIO,
        "ramp": ramp,
        "maximum_concurrency": maximum,
    }


def print_summary(s: Mapping[str, Any]) -> None:
    m = s["median"]
    ramp = s["ramp"]
    print()
    print(f"  raw receive+delete ({RAW_THREADS} threads)  {m['raw']:7.0f} msg/s")
    print(
        f"  drain, BatchSize 10              {m['drain']:7.0f} tasks/s   "
        f"{s['drain_over_raw']:.2f} x raw   (targets: >= {TARGET_RATE:.0f}/s "
        f"{'met' if s['drain_meets_rate'] else 'NOT met'}, >= {TARGET_RATIO} x raw "
        f"{'met' if s['drain_meets_ratio'] else 'NOT met'})"
    )
    print(
        f"  drain, BatchSize 100, window 1 s {m['window']:7.0f} tasks/s   "
        f"{s['window_over_drain']:.2f} x BatchSize 10"
    )
    print(
        f"  idle -> {ramp['peak_batches']} batches at once (MaximumConcurrency "
        f"{s['maximum_concurrency']}): first batch {ramp['seconds_to_first_batch']:.2f} s, "
        f"peak {ramp['seconds_to_peak']:.2f} s after the first task was accepted"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-drain", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        summary = run(args)
    except BenchError as error:
        print(f"bench-drain: {error}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
