"""How far one SQS mapping climbs on this machine, and what LocalStack spends on it. Prints
figures; asserts nothing.

On a LocalStack of its own (no PostgreSQL, no app; the venvs of the normal local cloud): a
stdlib function that sleeps --sleep seconds per message, a mapping with BatchSize 1 and
MaximumConcurrency unset, a fast scale-up rate (--rate a minute) so it climbs in seconds, and a
backlog of --ceiling messages: every one is received at once, and the batches run as fast as
execution environments start, then all together until their sleep ends (the plateau). Every
--every seconds it prints: messages received (not visible), the function's concurrent
executions (AWS/Lambda ConcurrentExecutions, the most in the last seconds), its processes and
their memory (RSS, and Pss when --pss), LocalStack's threads, RSS and CPU (% of one core over
the interval). Past --max-gb of function memory it deletes the mapping and purges the queue
(what runs then ends with its sleep). It stops everything it started.

Usage: scripts/bench-esm-ceiling [--ceiling N] [--sleep S] [--rate R] [--max-gb G]
       [--every S] [--pss]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from localcloud import control, environments, localstack
from localcloud.settings import Settings
from tests.lambda_zip import zip_of
from tests.metrics import metric_values

MAX_CEILING = 1000
MAX_GB = 12.0
MAX_SECONDS = 900.0
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
HANDLER = """
import time

def handler(event, context):
    for record in event["Records"]:
        time.sleep(float(record["body"]))
    return {}
"""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLOCK_TICKS


def function_pids(pids_dir: Path) -> list[int]:
    pids = []
    for file in pids_dir.glob("*.pid"):
        try:
            pids.append(int(file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def memory_kb(pids: list[int], pss: bool) -> tuple[int, int]:
    """(RSS, Pss) of the processes and their children (the runtime may be a child)."""
    rss = pss_total = 0
    for pid in pids:
        try:
            rss += int(proc_status(pid)["VmRSS"].split()[0])
        except (OSError, KeyError):
            continue
        if pss:
            pss_total += (environments.pss_bytes(pid) or 0) // 1024
    return rss, pss_total


def run(args: argparse.Namespace) -> int:
    base = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="esm-ceiling-") as state:
        cfg = replace(
            base,
            state_dir=Path(state),
            port=free_port(),
            pg_port=free_port(),
            esm_scale_up_per_minute=args.rate,
        )
        record = localstack.start(cfg)
        try:
            localstack.wait_healthy(cfg, record)
            return climb(args, cfg, record.pid)
        finally:
            print(localstack.stop(cfg, record))
            for line in control.stop_functions(cfg):
                print(line)


def climb(args: argparse.Namespace, cfg: Settings, localstack_pid: int) -> int:
    config = Config(read_timeout=120, retries={"max_attempts": 0}, max_pool_connections=4)

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=cfg.localstack_url,
            region_name=cfg.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=config,
        )

    lam, sqs = client("lambda"), client("sqs")
    lam.create_function(
        FunctionName="ceiling",
        Runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
        Role=ROLE,
        Handler="handler.handler",
        Code={"ZipFile": zip_of(HANDLER)},
        Timeout=int(args.sleep) + 30,
        MemorySize=128,
    )
    lam.get_waiter("function_active_v2").wait(FunctionName="ceiling")
    url = sqs.create_queue(QueueName="ceiling", Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
    for start in range(0, args.ceiling, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "MessageBody": str(args.sleep)}
                for n in range(min(10, args.ceiling - start))
            ],
        )
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    print(
        f"{args.ceiling} messages of {args.sleep:g} s; mapping at {args.rate:g}/min, "
        f"at most {args.max_gb:g} GB of functions"
    )
    print(
        f"{'t s':>5}{'recvd':>7}{'conc':>6}{'envs':>6}{'fn RSS MB':>10}{'fn Pss MB':>10}"
        f"{'LS thr':>7}{'LS RSS MB':>10}{'LS CPU%':>8}"
    )
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="ceiling", BatchSize=1
    )["UUID"]
    started = time.monotonic()
    since = datetime.now(UTC)
    cloudwatch = client("cloudwatch")
    last_cpu, last_at = cpu_seconds(localstack_pid), started
    peak: dict[str, float] = {}
    climbing = True
    while time.monotonic() - started < args.max_seconds:
        time.sleep(args.every)
        cpu, now = cpu_seconds(localstack_pid), time.monotonic()
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        in_flight = int(attributes["ApproximateNumberOfMessagesNotVisible"])
        visible = int(attributes["ApproximateNumberOfMessages"])
        pids = function_pids(cfg.functions_pids_dir)
        rss, pss = memory_kb(pids, args.pss)
        status = proc_status(localstack_pid)
        recent = metric_values(
            cloudwatch,
            max(since, datetime.now(UTC) - timedelta(seconds=args.every + 1)),
            "AWS/Lambda",
            "ConcurrentExecutions",
            ("FunctionName", "ceiling"),
            "Maximum",
        )
        concurrent = int(max(recent, default=0))
        cpu_percent = 100 * (cpu - last_cpu) / (now - last_at)
        last_cpu, last_at = cpu, now
        row = {
            "received": in_flight,
            "concurrent_executions": concurrent,
            "environments": len(pids),
            "function_rss_mb": rss / 1024,
            "function_pss_mb": pss / 1024,
            "localstack_threads": int(status["Threads"]),
            "localstack_rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "localstack_cpu_percent": cpu_percent,
        }
        for key, value in row.items():
            peak[key] = max(peak.get(key, 0.0), float(value))
        print(
            f"{now - started:>5.0f}{in_flight:>7}{concurrent:>6}{len(pids):>6}{rss / 1024:>10.0f}"
            f"{pss / 1024:>10.0f}{row['localstack_threads']:>7}"
            f"{row['localstack_rss_mb']:>10.0f}{cpu_percent:>8.0f}",
            flush=True,
        )
        if climbing and rss / 1024 / 1024 >= args.max_gb:
            print(f"  {args.max_gb:g} GB of functions reached: the mapping is deleted")
            lam.delete_event_source_mapping(UUID=mapping)
            sqs.purge_queue(QueueUrl=url)
            climbing = False
            drain_until = now + args.sleep + 5
        if not climbing and now >= drain_until:
            break
        if climbing and not visible and not in_flight:
            break
    print("peaks: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ceiling", type=int, default=300)
    parser.add_argument("--sleep", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=6000.0)
    parser.add_argument("--max-gb", type=float, default=6.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--pss", action="store_true", help="also read Pss (slower)")
    args = parser.parse_args(argv)
    bounds = (
        ("--ceiling", args.ceiling, 1, MAX_CEILING),
        ("--max-gb", args.max_gb, 0.1, MAX_GB),
        ("--max-seconds", args.max_seconds, 1, MAX_SECONDS),
        ("--sleep", args.sleep, 0, 600),
    )
    for option, value, low, high in bounds:
        if not low <= value <= high:
            print(f"bench-esm-ceiling: {option} must be from {low} to {high}", file=sys.stderr)
            return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
