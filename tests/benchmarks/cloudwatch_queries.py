"""Benchmark of GetMetricData's database read: LocalStack's own `get_metric_data_stat` (one SQL
subquery per period) beside ours (one query per metric), same data, same process, same run.
Prints figures; asserts nothing.

The load is a live dashboard's: one GetMetricData of `--queries` MetricDataQueries at Period=1
over a `--minutes` window that holds that many minutes of 1-second data for each metric (one
value per second, plus a statistic set every 10 s). Both sides run with the extension's other
CloudWatch patches (exact dimensions, time index), as in the local cloud. Runs in LocalStack's
interpreter on a scratch database: the local cloud need not be up.

Usage: scripts/bench-cloudwatch [--queries N] [--minutes N] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from localcloud.settings import EXTENSION_DIR, Settings

BENCH = textwrap.dedent(
    """
    import json, statistics, sys, time
    from datetime import UTC, datetime
    from localstack.services.cloudwatch.cloudwatch_database_helper import CloudwatchDatabase
    from localcloud_ext import cloudwatch_queries, service_metrics

    queries, minutes, rounds = (int(a) for a in sys.argv[1:4])
    service_metrics.match_metric_dimensions_exactly()
    service_metrics.index_metrics_by_time()
    stock = CloudwatchDatabase.get_metric_data_stat
    cloudwatch_queries.query_metric_data_once_per_metric()
    ours = CloudwatchDatabase.get_metric_data_stat
    database = CloudwatchDatabase()

    end = int(time.time()) // 60 * 60
    start = end - minutes * 60
    def metric(n):
        return {"Namespace": "Bench", "MetricName": f"m{n % 5}",
                "Dimensions": [{"Name": "Series", "Value": f"s{n}"}]}
    for n in range(queries):
        data = []
        for second in range(start, end):
            datum = {**metric(n), "Timestamp": datetime.fromtimestamp(second, UTC),
                     "StorageResolution": 1, "Unit": "Count"}
            data.append({**datum, "Value": float(second % 17)})
            if second % 10 == 0:
                data.append({**datum, "StatisticValues": {
                    "SampleCount": 4, "Sum": 10, "Minimum": 1, "Maximum": 4}})
        database.add_metric_data("000000000000", "us-east-1", "Bench", data)

    def get_metric_data(function, stats):
        began = time.perf_counter()
        for n in range(queries):
            query = {"MetricStat": {"Metric": metric(n), "Period": 1,
                                    "Stat": stats[n % len(stats)]}}
            answer = function(database, "000000000000", "us-east-1", query,
                              datetime.fromtimestamp(start, UTC),
                              datetime.fromtimestamp(end, UTC), "TimestampAscending")
            assert len(answer["timestamps"]) == minutes * 60, len(answer["timestamps"])
        return time.perf_counter() - began

    basic = ["Sum", "Average", "Maximum", "Minimum", "SampleCount"]
    timings = {"stock": [], "ours": [], "ours_with_percentiles": []}
    for _ in range(rounds):  # interleaved, so that a noisy neighbour hits every side
        timings["stock"].append(get_metric_data(stock, basic))
        timings["ours"].append(get_metric_data(ours, basic))
        timings["ours_with_percentiles"].append(get_metric_data(ours, basic + ["p50", "p99"]))
    print(json.dumps({name: statistics.median(t) for name, t in timings.items()}))
    """
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queries", type=int, default=17, help="MetricDataQueries (1..100)")
    parser.add_argument("--minutes", type=int, default=15, help="window and data (1..60)")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many (1..10)")
    parser.add_argument("--json", type=Path, help="also write the figures here")


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = Settings.from_env()
    if not cfg.localstack_python.exists():
        raise SystemExit(f"{cfg.localstack_python} missing: run scripts/setup")
    with tempfile.TemporaryDirectory(prefix="bench-cloudwatch-") as scratch:
        result = subprocess.run(
            [str(cfg.localstack_python), "-c", BENCH]
            + [str(args.queries), str(args.minutes), str(args.rounds)],
            capture_output=True,
            text=True,
            check=False,
            env={
                **os.environ,
                "FILESYSTEM_ROOT": scratch,
                "OVERRIDE_IN_DOCKER": "0",
                "PYTHONPATH": str(EXTENSION_DIR),
            },
        )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    seconds: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return {"queries": args.queries, "minutes": args.minutes, "seconds": seconds}


def report(figures: dict[str, Any]) -> str:
    seconds = figures["seconds"]
    lines = [
        f"GetMetricData read, {figures['queries']} queries, Period=1, "
        f"{figures['minutes']}-minute window full of 1-second data (median):",
        f"  stock (one subquery per period)   {seconds['stock'] * 1000:9.1f} ms",
        f"  ours  (one query per metric)      {seconds['ours'] * 1000:9.1f} ms"
        f"   ({seconds['stock'] / seconds['ours']:.0f}x faster)",
        f"  ours, 2 of 7 stats percentiles    {seconds['ours_with_percentiles'] * 1000:9.1f} ms",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not (1 <= args.queries <= 100 and 1 <= args.minutes <= 60 and 1 <= args.rounds <= 10):
        parser.error("--queries 1..100, --minutes 1..60, --rounds 1..10")
    figures = run(args)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
