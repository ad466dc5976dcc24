"""Benchmark of the dashboard (local cloud up, app deployed; prints figures, asserts nothing):

1. GET /metrics for 5 minutes at 1 s: p50 and p95 with the worker idle, and as the page's own
   polls saw it during a drain;
2. the cost of watching: the drain rate of a backlog of echo tasks (tests.benchmarks.sqs_drain)
   with the page open and polling, beside the same without it, rounds alternating in one run
   (ABBA); and, steadier on a shared machine, the CPU that watching an idle system costs each
   process (LocalStack, the API function, Chromium) beside not watching;
3. the page's refresh (merge + setData of every chart) with 15 minutes of 1-second data on every
   series, in headless Chromium, fed a full synthetic answer so every point is drawn.

scripts/bench-dashboard [--tasks N] [--rounds N] [--json PATH]"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Browser, Request, Route

from burst.cloud import Target
from chalicelib.dashboard_series import SERIES, charts_json
from tests.benchmarks.sqs_drain import BenchError, drain_rate, load_target, trigger_restored
from tests.browser import WatchedPage, chromium, open_page

METRICS_QUERY = "metrics?minutes=5&period=1"
IDLE_REQUESTS = 30
WINDOW_SECONDS = 15 * 60
REFRESHES = 20
CPU_SECONDS = 30.0


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def metrics_latency_idle(target: Target) -> list[float]:
    """Milliseconds per GET /metrics, one after another (the first warms the environment)."""
    timings = []
    with requests.Session() as http:
        http.get(f"{target.api_url}{METRICS_QUERY}", timeout=30).raise_for_status()
        for _ in range(IDLE_REQUESTS):
            started = time.perf_counter()
            http.get(f"{target.api_url}{METRICS_QUERY}", timeout=30).raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


@contextmanager
def watching(browser: Browser, target: Target) -> Iterator[tuple[WatchedPage, list[float]]]:
    """The live page open and polling; yields it and the durations (ms) of its /metrics polls."""
    if target.dashboard_url is None:
        raise BenchError("endpoints.json has no dashboard_url: run scripts/deploy")
    page = open_page(browser, target.dashboard_url)
    polls: list[float] = []

    def finished(request: Request) -> None:
        if "/metrics?" in request.url:
            timing = request.timing
            polls.append(timing["responseEnd"] - timing["requestStart"])

    page.page.on("requestfinished", finished)
    try:
        yield page, polls
    finally:
        page.page.context.close()


def watching_cost(browser: Browser, target: Target, tasks: int, rounds: int) -> dict[str, Any]:
    plain: list[float] = []
    watched: list[float] = []
    polls_during_drain: list[float] = []
    drain = dict(BatchSize=10, MaximumBatchingWindowInSeconds=0)
    with trigger_restored(target):
        drain_rate(target, 100, 10, **drain)  # warm the worker's environments
        for round_number in range(1, rounds + 1):
            # ABBA: the second drain of a round is not always the watched one
            order = ("plain", "watched") if round_number % 2 else ("watched", "plain")
            for kind in order:
                if kind == "plain":
                    plain.append(drain_rate(target, tasks, 10, **drain))
                    continue
                with watching(browser, target) as (page, polls):
                    # Playwright hands events to Python only inside its calls: wait through it.
                    page.page.wait_for_timeout(3000)  # the first load is done, the page polls
                    before = len(polls)
                    watched.append(drain_rate(target, tasks, 10, **drain))  # the page polls on
                    page.page.wait_for_timeout(100)  # receive the polls' events
                    polls_during_drain += polls[before:]
                    if page.errors:
                        raise BenchError(f"the page logged errors: {page.errors}")
            print(
                f"  round {round_number}: without the page {plain[-1]:.0f} tasks/s, "
                f"with it {watched[-1]:.0f} tasks/s",
                flush=True,
            )
    return {"without_page": plain, "with_page": watched, "polls_ms": polls_during_drain}


def cpu_seconds(pattern: str) -> float:
    """CPU time (user + system) of every process whose command line contains `pattern`."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if pattern not in (entry / "cmdline").read_text().replace("\0", " "):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


# process -> what its command line contains
WATCHED_PROCESSES = {
    "localstack": "localstack.runtime.main",
    "api_function": "awslambdaric app.app",
    "chromium": "chromium",
}


def cpu_of_watching(browser: Browser, target: Target, seconds: float) -> dict[str, float]:
    """CPU seconds per second of watching an idle system, by process, beside not watching:
    steadier than drain rates on a shared machine, and what a drain gives up."""

    def sample() -> dict[str, float]:
        return {name: cpu_seconds(pattern) for name, pattern in WATCHED_PROCESSES.items()}

    before = sample()
    time.sleep(seconds)
    unwatched = sample()
    with watching(browser, target) as (page, _):
        page.page.wait_for_timeout(3000)  # past the first load
        start = sample()
        page.page.wait_for_timeout(seconds * 1000)
        watched = sample()
    return {
        name: round(((watched[name] - start[name]) - (unwatched[name] - before[name])) / seconds, 4)
        for name in WATCHED_PROCESSES
    }


def synthetic_answer(now: int) -> dict[str, Any]:
    """/metrics as the page sees it, with a value in every second of 15 minutes of every series."""
    times = list(range(now - WINDOW_SECONDS, now))
    return {
        "period": 1,
        "start": times[0],
        "end": now,
        "generated_at": now,
        "t": times,
        "series": {
            s.key: [round(50 + 40 * math.sin(i / (20 + k)), 3) for i in range(len(times))]
            for k, s in enumerate(SERIES)
        },
        "charts": charts_json(),
        "queue": {"visible": 50, "in_flight": 40, "delayed": 0},
        "dead_letter_queue": {"visible": 0, "in_flight": 0, "delayed": 0},
        "settings": {"maximum_concurrency": 10, "batch_size": 10},
        "state": {"name": "draining", "headline": "Draining", "detail": "synthetic data"},
        "recommendations": [],
    }


def refresh_times(browser: Browser, target: Target) -> list[float]:
    """ms per refresh of the page fed 15 minutes of 1-second data on every series."""
    if target.dashboard_url is None:
        raise BenchError("endpoints.json has no dashboard_url: run scripts/deploy")
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()

    def answer(route: Route) -> None:
        route.fulfill(
            status=200,
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*"},
            body=json.dumps(synthetic_answer(int(time.time()))),
        )

    page.route("**/metrics?*", answer)
    page.goto(target.dashboard_url)
    timings: list[float] = []
    seen = 0
    deadline = time.monotonic() + 120
    while len(timings) < REFRESHES and time.monotonic() < deadline:
        stats = page.evaluate("window.dashboardStats")
        if stats["refreshes"] > seen and stats["lastRefreshMs"] is not None:
            seen = stats["refreshes"]
            if seen > 1:  # the first draws the charts; the rest are the steady state
                timings.append(float(stats["lastRefreshMs"]))
        time.sleep(0.2)
    context.close()
    return timings


def figures(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    target = load_target()
    print("GET /metrics (5 minutes at 1 s), worker idle ...", flush=True)
    idle = metrics_latency_idle(target)
    with chromium() as browser:
        print(f"drain of {args.tasks} echo tasks with and without the page, {args.rounds} round(s)")
        cost = watching_cost(browser, target, args.tasks, args.rounds)
        print("the page's refresh with 15 minutes of 1-second data on every series ...")
        refresh = refresh_times(browser, target)
        print(f"CPU of watching an idle system, {CPU_SECONDS:.0f} s beside {CPU_SECONDS:.0f} s not")
        cpu = cpu_of_watching(browser, target, CPU_SECONDS)
    without, with_page = (
        statistics.median(cost["without_page"]),
        statistics.median(cost["with_page"]),
    )
    return {
        "metrics_idle_ms": figures(idle),
        "metrics_polled_during_drain_ms": figures(cost["polls_ms"]) if cost["polls_ms"] else None,
        "drain_tasks_per_s": {
            "without_page": [round(v) for v in cost["without_page"]],
            "with_page": [round(v) for v in cost["with_page"]],
            "median_without": round(without),
            "median_with": round(with_page),
            "cost_percent": round(100 * (1 - with_page / without), 1),
            "paired_difference_percent": round(
                100
                * statistics.fmean(
                    w / p - 1 for w, p in zip(cost["with_page"], cost["without_page"], strict=True)
                ),
                1,
            ),
        },
        # CPU seconds per second of watching, beyond not watching; LocalStack is the drain's
        # bottleneck at about one core, so its share is about what a drain gives up
        "watching_cpu_per_s": cpu,
        "refresh_ms_15min_1s": figures(refresh) | {"max": round(max(refresh), 1)},
        "series": len(SERIES),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-dashboard", description=__doc__)
    parser.add_argument("--tasks", type=int, default=4000, help="echo tasks per drain (100-10000)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, each without then with")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not 100 <= args.tasks <= 10_000 or not 1 <= args.rounds <= 10:
        print("bench-dashboard: --tasks must be 100-10000 and --rounds 1-10", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except BenchError as e:
        print(f"bench-dashboard: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
