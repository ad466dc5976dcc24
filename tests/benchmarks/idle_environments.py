"""What idle execution environments cost LocalStack: threads, and memory. Prints figures; asserts
nothing.

Starts N environments of one trivial function at once (N concurrent invokes that each sleep
until one moment, so that none can reuse another's environment), lets them go idle, then counts
LocalStack's threads and function processes and their resident memory, beside the same figures
before.

Usage: scripts/bench-environments [--environments N]   (the local cloud must be up)
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from botocore.config import Config

from localcloud.aws import client_for_running
from tests.lambda_zip import zip_of

REPO = Path(__file__).resolve().parents[2]
ENDPOINTS = Path(os.environ.get("LOCALCLOUD_STATE_DIR", REPO / ".localcloud")) / "endpoints.json"
HANDLER = textwrap.dedent(
    """
    import time

    def handler(event, context):
        time.sleep(max(0.0, event["until"] - time.time()))
        return {"ok": True}
    """
)


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def threads_by_kind(pid: int) -> collections.Counter[str] | None:
    """LocalStack's Python threads by name with numbers folded ("lambda-reaper-N"), from py-spy
    (requirements-dev); None where it cannot look."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        return None
    dump = subprocess.run(
        [py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60
    )
    names = re.findall(r'^Thread \S+ \((?:idle|active)\): "([^"]*)"', dump.stdout, re.MULTILINE)
    return collections.Counter(re.sub(r"\d+", "N", name) for name in names) if names else None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (function processes are LocalStack's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--environments", type=int, default=100, help="environments to start")
    args = parser.parse_args(argv)
    if not 1 <= args.environments <= 300:
        print("--environments must be from 1 to 300", file=sys.stderr)
        return 2
    if not ENDPOINTS.exists():
        print(f"the local cloud is not up ({ENDPOINTS} missing): run scripts/localcloud up")
        return 2
    endpoints = json.loads(ENDPOINTS.read_text())
    localstack = int(endpoints["localstack"]["pid"])
    count = args.environments
    client = client_for_running(
        endpoints,
        "lambda",
        Config(max_pool_connections=count, read_timeout=120, retries={"max_attempts": 0}),
    )
    name = f"bench-idle-{uuid.uuid4().hex[:10]}"
    threads_before, rss_before = thread_count(localstack), rss_mb(localstack)
    client.create_function(
        FunctionName=name,
        Runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
        Role="arn:aws:iam::000000000000:role/bench",
        Handler="handler.handler",
        Code={"ZipFile": zip_of(HANDLER)},
        Timeout=120,
    )
    try:
        client.get_waiter("function_active_v2").wait(FunctionName=name)
        # Every invocation runs until the same moment: all N overlap, however slow their start.
        payload = json.dumps({"until": time.time() + 5 + count * 0.2}).encode()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            errors = sum(
                "FunctionError" in response
                for response in pool.map(
                    lambda _: client.invoke(FunctionName=name, Payload=payload), range(count)
                )
            )
        time.sleep(3)  # let finished invocations' short-lived threads end: count the idle state
        functions = children(localstack)
        threads_idle, rss_idle = thread_count(localstack), rss_mb(localstack)
        kinds = threads_by_kind(localstack)
        function_rss = sum(rss_mb(pid) for pid in functions if Path(f"/proc/{pid}").exists())
    finally:
        client.delete_function(FunctionName=name)
    print(f"Idle environments benchmark: {count} concurrent invokes of one function")
    print(f"{'figure':<48}{'before':>10}{'idle':>10}{'per env':>10}")
    per_env = (threads_idle - threads_before) / max(1, len(functions))
    print(f"{'LocalStack threads':<48}{threads_before:>10}{threads_idle:>10}{per_env:>10.2f}")
    print(f"{'LocalStack RSS, MB':<48}{rss_before:>10.0f}{rss_idle:>10.0f}")
    print(f"{'function processes':<48}{'':>10}{len(functions):>10}")
    print(f"{'function processes RSS (sum), MB':<48}{'':>10}{function_rss:>10.0f}")
    print(f"{'invokes that failed':<48}{'':>10}{errors:>10}")
    if kinds:
        print(
            "LocalStack's threads by name, idle (the gateway's pool grows with concurrent calls):"
        )
        for kind, number in kinds.most_common(12):
            print(f"  {kind:<46}{number:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
