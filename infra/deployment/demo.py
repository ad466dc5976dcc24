"""The main job's burst: a preset of scripts/burst (infra/burst) that makes the worker scale.

600 sleep tasks of 300 ms arrive at 120/s through POST /tasks/batch, far faster than one batch
at a time drains them (10 tasks x 300 ms = 3 s per batch: 3.3 tasks/s), so a backlog builds and
the SQS trigger may run up to its MaximumConcurrency of batches at once (10 by default: 33
tasks/s), then fewer as the queue empties. Bounded: 5 s of sending, at most 70 s of drain.
Every option of scripts/burst can override the preset (`scripts/demo --count 1000`)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from burst import settings as burst_settings
from burst.cli import exit_code, print_result
from burst.cloud import Target
from burst.run import BurstResult, run_burst
from localcloud import endpoints
from localcloud.settings import Settings

# A moment to open the dashboard before the burst, so the climb is seen as it happens.
DASHBOARD_GRACE_SECONDS = 5.0
PRESET: dict[str, Any] = {
    "profile": "steady",
    "count": 600,
    "rate": 120.0,
    "duration": 5.0,
    "task_type": "sleep",
    "sleep_ms": 300,
    "batch": 50,
    "threads": 8,
    "max_seconds": 15.0,
    "drain_seconds": 70.0,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    burst_settings.add_arguments(parser, defaults=PRESET)


def scaling_note(result: BurstResult) -> str:
    """One line on what the chart shows about scaling, true whichever poller runs."""
    batches = result.report["batches"]
    peak, limit = batches["peak_concurrent"], batches["max_concurrency"]
    if limit is None:
        return f"Worker batches at once: up to {peak} (the trigger has no MaximumConcurrency)."
    if peak >= limit:
        return (
            f"Worker batches at once rose to the trigger's MaximumConcurrency ({limit}) while "
            "the backlog lasted, and fell as the queue drained: see the chart."
        )
    return (
        f"Worker batches at once peaked at {peak} of the trigger's MaximumConcurrency {limit}: "
        "the SQS poller ran fewer batches than the trigger allows (LocalStack's stock poller "
        "runs one at a time)."
    )


def run(cfg: Settings, args: argparse.Namespace) -> int:
    settings = burst_settings.from_args(args)
    burst_settings.check(settings)
    target = Target.from_endpoints(endpoints.load(cfg.endpoints_file), str(cfg.endpoints_file))
    print(
        f"\nWatch it live: open {target.dashboard_url} in a browser now "
        f"(the burst starts in {DASHBOARD_GRACE_SECONDS:.0f} s)"
    )
    time.sleep(DASHBOARD_GRACE_SECONDS)
    print()
    result = run_burst(target, settings)
    print_result(result)
    print(f"\n{scaling_note(result)}")
    print(
        "Run your own: scripts/burst --help (e.g. scripts/burst --profile spike --count 5000 "
        "--batch 100 --type echo)\n"
        f"  scripts/localcloud status   (what runs, where; endpoints in {cfg.endpoints_file})\n"
        "  scripts/localcloud down     (stop everything)"
    )
    return exit_code(result)
