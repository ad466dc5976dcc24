"""Benchmark of the local cloud's Lambda executor. Prints figures; asserts nothing.

Each figure stands beside a baseline measured in the same run on the same LocalStack: a trivial
Lambda API call (GetFunctionConfiguration), which costs one gateway request and no function, so
`invoke / baseline` shows what running the function adds to LocalStack's own cost.

Usage: scripts/bench-lambda [--invokes N] [--threads N]   (the local cloud must be up)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.config import Config

from burst.analysis import percentile
from localcloud.aws import client_for_running
from tests.lambda_zip import zip_of

REPO = Path(__file__).resolve().parents[2]
ENDPOINTS = Path(os.environ.get("LOCALCLOUD_STATE_DIR", REPO / ".localcloud")) / "endpoints.json"
HANDLER = textwrap.dedent(
    """
    def handler(event, context):
        return {"ok": True}
    """
)


def latencies_ms(call: Callable[[], Any], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def throughput(call: Callable[[], Any], threads: int, per_thread: int) -> float:
    def worker(_: int) -> None:
        for _ in range(per_thread):
            call()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return threads * per_thread / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds * 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--invokes", type=int, default=300, help="sequential calls per latency figure"
    )
    parser.add_argument("--threads", type=int, default=8, help="client threads for throughput")
    parser.add_argument(
        "--cold-starts", type=int, default=5, help="functions created for the cold-start figure"
    )
    args = parser.parse_args(argv)
    if not ENDPOINTS.exists():
        print(
            f"the local cloud is not up ({ENDPOINTS} missing): run scripts/localcloud up",
            file=sys.stderr,
        )
        return 2
    endpoints = json.loads(ENDPOINTS.read_text())
    client = client_for_running(
        endpoints,
        "lambda",
        Config(max_pool_connections=args.threads * 2, retries={"max_attempts": 0}),
    )
    runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"
    created: list[str] = []

    def create() -> str:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        client.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role="arn:aws:iam::000000000000:role/bench",
            Handler="handler.handler",
            Code={"ZipFile": zip_of(HANDLER)},
        )
        created.append(name)
        client.get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 600}
        )
        return name

    try:
        # Cold starts: create, wait until Active, first invoke.
        create_s, cold_ms = [], []
        for _ in range(args.cold_starts):
            started = time.perf_counter()
            fresh = create()
            create_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.invoke(FunctionName=fresh, Payload=b"{}")
            cold_ms.append((time.perf_counter() - started) * 1000)
        name = created[0]

        def invoke() -> None:
            response = client.invoke(FunctionName=name, Payload=b"{}")
            assert "FunctionError" not in response, response["Payload"].read()

        def baseline() -> None:
            client.get_function_configuration(FunctionName=name)

        for call in (invoke, baseline):  # warm up connections and environments
            throughput(call, args.threads, 5)
        warm = latencies_ms(invoke, args.invokes)
        base = latencies_ms(baseline, args.invokes)
        per_thread = max(1, args.invokes // args.threads)
        warm_rate = throughput(invoke, args.threads, per_thread)
        base_rate = throughput(baseline, args.threads, per_thread)
        idle = idle_cpu_percent(endpoints["localstack"]["pid"], 5.0)
    finally:
        for function in created:
            client.delete_function(FunctionName=function)

    def row(figure: str, value: float, base_value: float | None = None, target: str = "") -> None:
        compared = f"{base_value:>12.1f}{value / base_value:>8.2f}" if base_value else " " * 20
        print(f"{figure:<44}{value:>12.1f}{compared}   {target}")

    warm_p50, base_p50 = statistics.median(warm), statistics.median(base)
    print(
        f"Lambda executor benchmark ({runtime}, trivial handler, {args.invokes} calls per figure)"
    )
    print(f"{'figure':<44}{'invoke':>12}{'baseline':>12}{'ratio':>8}   target")
    row("warm latency p50 (1 client), ms", warm_p50, base_p50, "<= 20 ms")
    row("warm latency p95 (1 client), ms", percentile(warm, 0.95), percentile(base, 0.95))
    row(f"throughput ({args.threads} client threads), calls/s", warm_rate, base_rate, ">= 60/s")
    row("cold first invoke p50, ms", statistics.median(cold_ms))
    row("cold start beyond warm p50, ms", statistics.median(cold_ms) - warm_p50, None, "< 300 ms")
    row("create_function until Active p50, ms", statistics.median(create_s) * 1000)
    row("LocalStack CPU, 5 s after the runs, %", idle, None, "near 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
