"""Benchmark of execution environments: cold starts, SnapStart restores, memory and LocalStack's
threads per environment. Prints figures; asserts nothing.

- Init Duration of N environments of one function starting at once (a handler that imports boto3
  and makes a client at init, like the worker), p50 / p95, from the REPORT lines;
- Restore Duration of N environments of the same code with SnapStart (a published version);
- Pss per environment with E idle environments (that function; the SnapStart version), and
  LocalStack's threads and RSS per environment with E idle environments of a trivial function.

Usage: scripts/bench-coldstart [--environments 20] [--idle 100,300]   (the local cloud must be up)
Every function it creates is deleted at the end, which stops its environments.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import re
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from botocore.config import Config

from burst.analysis import percentile
from localcloud import environments
from localcloud.aws import client_for_running
from tests.lambda_zip import zip_of

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("LOCALCLOUD_STATE_DIR", REPO / ".localcloud"))
RUNTIME = "python3.12"
WORKER_LIKE = textwrap.dedent(
    """
    import os, time
    import boto3

    sqs = boto3.client("sqs")  # as the worker does: a client made once per environment

    def handler(event, context):
        time.sleep(event.get("sleep", 0))
        while event.get("release") and not os.path.exists(event["release"]):
            time.sleep(0.05)  # held until every invocation has its own environment
        return {"pid": os.getpid()}
    """
)
TRIVIAL = textwrap.dedent(
    """
    import os, time

    def handler(event, context):
        time.sleep(event.get("sleep", 0))
        while event.get("release") and not os.path.exists(event["release"]):
            time.sleep(0.05)  # held until every invocation has its own environment
        return {"pid": os.getpid()}
    """
)
FIELD = re.compile(r"(Init|Restore) Duration: ([0-9.]+) ms")


class Bench:
    def __init__(self, endpoints: dict[str, Any], concurrency: int) -> None:
        self.client = client_for_running(
            endpoints,
            "lambda",
            Config(
                max_pool_connections=concurrency + 10,
                read_timeout=300,
                retries={"max_attempts": 0},
            ),
        )
        self.localstack_pid = int(endpoints["localstack"]["pid"])
        self.created: list[str] = []

    def create(self, source: str, snapstart: bool = False) -> str:
        name = f"bench-cold-{uuid.uuid4().hex[:8]}"
        extra = {"SnapStart": {"ApplyOn": "PublishedVersions"}} if snapstart else {}
        self.client.create_function(
            FunctionName=name,
            Runtime=RUNTIME,
            Role="arn:aws:iam::000000000000:role/bench",
            Handler="handler.handler",
            Code={"ZipFile": zip_of(source)},
            MemorySize=256,
            Timeout=120,
            **extra,
        )
        self.created.append(name)
        self.client.get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 600}
        )
        return name

    def invoke_at_once(
        self, name: str, count: int, qualifier: str = "$LATEST", pids_dir: Path | None = None
    ) -> tuple[list[tuple[str, float]], int]:
        """`count` invokes at once, each held until `count` environments run (so each needs its
        own): the (Init|Restore, ms) of those that started an environment, how many failed."""
        release = Path(f"/tmp/bench-release-{uuid.uuid4().hex}")
        event = {"release": str(release), "sleep": 0.5}

        def call(_: int) -> tuple[str, float] | None:
            try:
                response = self.client.invoke(
                    FunctionName=name,
                    Qualifier=qualifier,
                    Payload=json.dumps(event).encode(),
                    LogType="Tail",
                )
            except self.client.exceptions.ClientError as error:
                print(f"invoke failed: {error}", file=sys.stderr)
                return None
            if "FunctionError" in response:
                return None
            logs = base64.b64decode(response.get("LogResult", "")).decode()
            match = FIELD.search(logs)
            return (match[1], float(match[2])) if match else ("", 0.0)

        before = environments.memory(pids_dir).environments if pids_dir else 0
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(call, n) for n in range(count)]
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and not all(f.done() for f in futures):
                running = environments.memory(pids_dir).environments if pids_dir else count
                if running - before >= count:
                    break
                time.sleep(0.2)
            release.touch()
            outcomes = [future.result() for future in futures]
        release.unlink()
        starts = [outcome for outcome in outcomes if outcome and outcome[0]]
        return starts, sum(1 for outcome in outcomes if outcome is None)

    def localstack(self) -> tuple[int, int]:
        """LocalStack's (threads, RSS bytes)."""
        threads = rss = 0
        for line in Path(f"/proc/{self.localstack_pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        return threads, rss

    def delete_all(self) -> None:
        for name in self.created:
            self.client.delete_function(FunctionName=name)
        self.created.clear()


def summary(label: str, values: list[float], failed: int) -> str:
    if not values:
        return f"{label:<52} none reported ({failed} failed)"
    return (
        f"{label:<52} p50 {percentile(values, 0.5):8.1f} ms   p95 {percentile(values, 0.95):8.1f}"
        f" ms   ({len(values)} environments, {failed} failed)"
    )


def settle(seconds: float = 3.0) -> None:
    time.sleep(seconds)  # let finished environments go idle before memory is read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--environments", type=int, default=20, help="cold starts at once")
    parser.add_argument(
        "--idle", default="100,300", help="idle environment counts for memory and threads"
    )
    args = parser.parse_args(argv)
    idle_counts = [int(part) for part in args.idle.split(",") if part]
    endpoints_file = STATE / "endpoints.json"
    if not endpoints_file.exists():
        print(f"the local cloud is not up ({endpoints_file} missing)", file=sys.stderr)
        return 2
    if not 1 <= args.environments <= 100 or any(not 1 <= n <= 400 for n in idle_counts):
        print("--environments must be 1-100 and --idle counts 1-400", file=sys.stderr)
        return 2
    bench = Bench(json.loads(endpoints_file.read_text()), max([args.environments, *idle_counts]))
    pids_dir = STATE / "run" / "functions"
    bench.delete_all()
    lines: list[str] = []
    try:
        base_threads, base_rss = bench.localstack()
        worker = bench.create(WORKER_LIKE)
        starts, failed = bench.invoke_at_once(worker, args.environments, pids_dir=pids_dir)
        lines.append(
            summary(
                f"Init Duration, {args.environments} at once (boto3 + client)",
                [ms for kind, ms in starts if kind == "Init"],
                failed,
            )
        )
        snap = bench.create(WORKER_LIKE, snapstart=True)
        version = bench.client.publish_version(FunctionName=snap)["Version"]
        starts, failed = bench.invoke_at_once(snap, args.environments, version, pids_dir)
        restores = [ms for kind, ms in starts if kind == "Restore"]
        label = f"Restore Duration, {args.environments} at once (SnapStart)"
        if restores or not starts:
            lines.append(summary(label, restores, failed))
        else:
            inits = [ms for kind, ms in starts if kind == "Init"]
            lines.append(summary(f"{label}: no restores, Init Duration", inits, failed))
        bench.delete_all()
        settle()
        for count in idle_counts:
            for source, snapstart, what in (
                (WORKER_LIKE, False, "boto3 + client"),
                (WORKER_LIKE, True, "boto3 + client, SnapStart"),
                (TRIVIAL, False, "trivial handler"),
            ):
                if count > 100 and source is WORKER_LIKE:
                    continue  # within ~8 GB of function processes
                name = bench.create(source, snapstart=snapstart)
                qualifier = (
                    bench.client.publish_version(FunctionName=name)["Version"]
                    if snapstart
                    else "$LATEST"
                )
                _, failed = bench.invoke_at_once(name, count, qualifier, pids_dir)
                settle()
                memory = environments.memory(pids_dir)
                threads, rss = bench.localstack()
                per = max(1, memory.environments)
                lines.append(
                    f"{count} idle environments ({what}): {memory.environments} running, "
                    f"{failed} failed; "
                    f"Pss {memory.pss_per_environment_bytes / 2**20:.1f} MiB each, "
                    f"{memory.total_pss_bytes / 2**30:.2f} GiB in all (templates/snapshots "
                    f"{memory.support_pss_bytes / 2**20:.0f} MiB); LocalStack "
                    f"{(threads - base_threads) / per:.2f} threads and "
                    f"{(rss - base_rss) / per / 2**20:.2f} MiB RSS per environment "
                    f"({threads} threads, {rss / 2**20:.0f} MiB)"
                )
                print(lines[-1], flush=True)
                bench.delete_all()
                settle(5.0)
    finally:
        bench.delete_all()
    print(f"Execution environments benchmark ({RUNTIME})")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
