"""Benchmark of recovery from a PostgreSQL outage, retry backoff on vs off, side by side in one
run: two stages of the app on a local cloud of the benchmark's own (tests/faults.py: its own
state dir and ports, so stopping its PostgreSQL disturbs nothing else), one with
TASK_RETRY_BACKOFF_BASE_SECONDS > 0, one with 0 (off). Both get the same burst at the same time,
and one outage hits both. Worker timeout 10 s and visibility timeout 60 s, so without the
backoff a failed record waits a whole minute to come back.

Prints, per stage, the time from the outage's end to the last task landing (max finished_at
minus the moment PostgreSQL answered again), and the ratio off / on. It only means something
once the worker has the backoff (issue 10); before that, both stages behave alike.
    scripts/bench-recovery [--outage-seconds S] [--rate R] [--backoff-base S] [--backoff-max S]
                           [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from burst.run import BurstResult, new_run_id, run_burst
from burst.schedule import run_key_prefix
from burst.settings import BurstSettings
from chalicelib import settings as app_settings
from localcloud.settings import Settings
from tests import faults
from tests.polling import wait_for
from tests.stages import Stage, deployed_stage

WORKER_TIMEOUT_SECONDS = 10
VISIBILITY_TIMEOUT_SECONDS = 60
BACKOFF_BASE = app_settings.TASK_RETRY_BACKOFF_BASE_SECONDS
BACKOFF_MAX = app_settings.TASK_RETRY_BACKOFF_MAX_SECONDS
OUTAGE_AFTER_SECONDS = 3.0  # after both bursts stored tasks, so that some are in flight


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Recovery:
    label: str
    accepted: int
    done: int
    failed: int
    integrity_ok: bool
    last_landed: datetime | None
    recovery_seconds: float | None

    def line(self) -> str:
        seconds = "n/a" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f} s"
        return (
            f"  {self.label:<12} outage end -> last task landed: {seconds:>8}   accepted "
            f"{self.accepted}, done {self.done}, failed {self.failed}, integrity "
            f"{'OK' if self.integrity_ok else 'FAILED'}"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outage-seconds", type=float, default=15.0, help="5..60")
    parser.add_argument("--rate", type=float, default=20.0, help="tasks/s per stage, 1..60")
    parser.add_argument("--backoff-base", type=int, default=2, help="seconds, 1..30 (the 'on')")
    parser.add_argument("--backoff-max", type=int, default=16, help="seconds, >= the base")
    parser.add_argument("--json", type=Path, help="write the figures here too")


def check(args: argparse.Namespace) -> None:
    problems = []
    if not 5 <= args.outage_seconds <= 60:
        problems.append("--outage-seconds: use 5 to 60")
    if not 1 <= args.rate <= 60:
        problems.append("--rate: use 1 to 60 tasks/s")
    if not 1 <= args.backoff_base <= 30 or args.backoff_max < args.backoff_base:
        problems.append("--backoff-base 1..30 and --backoff-max >= it")
    if problems:
        raise BenchError("; ".join(problems))


def burst_settings(args: argparse.Namespace, out_dir: Path) -> BurstSettings:
    # Sending outlasts the outage (which waits for the first stored tasks, then
    # OUTAGE_AFTER_SECONDS): the burst reads the rows once it has sent everything.
    duration = OUTAGE_AFTER_SECONDS + args.outage_seconds + 12
    return BurstSettings(
        profile="steady",
        rate=args.rate,
        duration=duration,
        count=int(args.rate * duration) + 1,
        task_type="sleep",
        payload_options={"sleep_ms": 300},
        batch=10,
        threads=4,
        max_seconds=duration + 10,
        drain_seconds=VISIBILITY_TIMEOUT_SECONDS * 2 + 30,
        out_dir=out_dir,
        progress=False,
    )


def recovery_of(
    label: str, result: BurstResult, rows_end: datetime | None, outage_end: datetime
) -> Recovery:
    report = result.report
    return Recovery(
        label=label,
        accepted=report["tasks"]["accepted"],
        done=report["done"],
        failed=report["failed"],
        integrity_ok=result.integrity_ok,
        last_landed=rows_end,
        recovery_seconds=None if rows_end is None else (rows_end - outage_end).total_seconds(),
    )


def last_landed(stage: Stage, run_id: str) -> datetime | None:
    finished = [r["finished_at"] for r in faults.run_rows(stage, run_key_prefix(run_id))]
    return max((f for f in finished if f is not None), default=None)


def bursts_side_by_side(
    stages: dict[str, Stage], settings: BurstSettings, outage: Callable[[], faults.FaultWindow]
) -> tuple[dict[str, tuple[str, BurstResult]], faults.FaultWindow]:
    """The same burst at every stage at once; the outage strikes once every burst has tasks
    stored (a stage's burst checks GET /health first: an outage before would stop it)."""
    run_ids = {label: new_run_id() for label in stages}
    results: dict[str, tuple[str, BurstResult]] = {}
    errors: list[BaseException] = []

    def send(label: str, stage: Stage) -> None:
        try:
            result = run_burst(stage.target(), settings, run_id=run_ids[label])
        except BaseException as e:  # surfaced below, on the main thread
            errors.append(e)
        else:
            results[label] = (run_ids[label], result)

    def outage_once_all_sending() -> faults.FaultWindow:
        for label, stage in stages.items():
            prefix = run_key_prefix(run_ids[label])
            rows = functools.partial(faults.run_rows, stage, prefix)
            wait_for(rows, bool, 60, f"{label}'s first tasks stored")
        time.sleep(OUTAGE_AFTER_SECONDS)  # tasks in flight when it strikes
        return outage()

    threads = [threading.Thread(target=send, args=item) for item in stages.items()]
    for thread in threads:
        thread.start()
    window = faults.FaultThread(outage_once_all_sending).start().join()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results, window


def run(args: argparse.Namespace) -> dict[str, Any]:
    check(args)
    work = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    variants = {
        "backoff on": {BACKOFF_BASE: str(args.backoff_base), BACKOFF_MAX: str(args.backoff_max)},
        "backoff off": {BACKOFF_BASE: "0", BACKOFF_MAX: str(args.backoff_max)},
    }
    with (
        faults.fault_cloud(Settings.from_env().venvs_dir) as cloud,
        contextlib.ExitStack() as stack,
    ):
        print(f"local cloud of its own: {cloud.settings.state_dir}")
        stages = {}
        for label, environment in variants.items():
            project = work / label.replace(" ", "-")
            project.mkdir()
            stages[label] = stack.enter_context(
                deployed_stage(
                    cloud.running,
                    cloud.settings,
                    project,
                    worker_timeout_seconds=WORKER_TIMEOUT_SECONDS,
                    visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
                    environment=environment,
                    name_prefix="recovery",
                )
            )
        settings = burst_settings(args, work / "reports")
        results, window = bursts_side_by_side(
            stages, settings, lambda: faults.stop_postgres_for(cloud, args.outage_seconds)
        )
        assert window.ended_at is not None
        recoveries = {
            label: recovery_of(label, result, last_landed(stages[label], run_id), window.ended_at)
            for label, (run_id, result) in results.items()
        }
    return summarize(recoveries, args)


def summarize(recoveries: dict[str, Recovery], args: argparse.Namespace) -> dict[str, Any]:
    on, off = recoveries["backoff on"], recoveries["backoff off"]
    print(
        f"\nPostgreSQL stopped {args.outage_seconds:.0f} s during a burst of sleep tasks; worker "
        f"timeout {WORKER_TIMEOUT_SECONDS} s, visibility timeout {VISIBILITY_TIMEOUT_SECONDS} s, "
        f"backoff {args.backoff_base} s doubling to {args.backoff_max} s vs off"
    )
    print(on.line())
    print(off.line())
    ratio = None
    if on.recovery_seconds and off.recovery_seconds and on.recovery_seconds > 0:
        ratio = off.recovery_seconds / on.recovery_seconds
        print(f"  off / on: {ratio:.2f} x")
    return {
        "outage_seconds": args.outage_seconds,
        "worker_timeout_seconds": WORKER_TIMEOUT_SECONDS,
        "visibility_timeout_seconds": VISIBILITY_TIMEOUT_SECONDS,
        "stages": {
            label: {
                **r.__dict__,
                "last_landed": r.last_landed.isoformat() if r.last_landed else None,
            }
            for label, r in recoveries.items()
        },
        "ratio_off_over_on": ratio,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-recovery", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        summary = run(args)
    except BenchError as error:
        print(f"bench-recovery: {error}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
