"""The main job's burst: many concurrent requests to the deployed API, and what they show.

Bounded in count and time, and sent to loopback only.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import requests

from localcloud import endpoints
from localcloud.settings import Settings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_REQUESTS = 5000
MAX_SECONDS = 120.0


class DemoError(RuntimeError):
    """The demo cannot run; the message says what to fix."""


@dataclass
class BurstResult:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies_ms: list[float] = field(default_factory=list)
    environments: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--requests", type=int, default=200, help=f"requests to send (1..{MAX_REQUESTS})"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="requests in flight at once (1..64)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help=f"stop sending after this (<= {MAX_SECONDS})",
    )


def validate(args: argparse.Namespace, url: str) -> None:
    if not 1 <= args.requests <= MAX_REQUESTS:
        raise DemoError(f"--requests must be between 1 and {MAX_REQUESTS}, got {args.requests}")
    if not 1 <= args.concurrency <= 64:
        raise DemoError(f"--concurrency must be between 1 and 64, got {args.concurrency}")
    if not 0 < args.max_seconds <= MAX_SECONDS:
        raise DemoError(f"--max-seconds must be in (0, {MAX_SECONDS}], got {args.max_seconds}")
    if urlparse(url).hostname not in LOOPBACK_HOSTS:
        raise DemoError(f"the API URL {url} is not on loopback: the demo only loads this machine")


def burst(url: str, count: int, concurrency: int, max_seconds: float) -> BurstResult:
    result = BurstResult()
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds
    local = threading.local()

    def one(_: int) -> None:
        if time.monotonic() > deadline:
            return
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        started = time.perf_counter()
        try:
            response = session.get(url, timeout=30)
        except requests.RequestException as error:
            with lock:
                result.errors[type(error).__name__] += 1
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        stream = response.json().get("log_stream", "?") if response.ok else None
        with lock:
            result.statuses[response.status_code] += 1
            result.latencies_ms.append(elapsed_ms)
            if stream:
                result.environments[stream] += 1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    result.seconds = time.monotonic() - started
    return result


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(cfg: Settings, args: argparse.Namespace) -> int:
    running = endpoints.load(cfg.endpoints_file)
    if "api" not in running:
        raise DemoError("the app is not deployed to this local cloud: run scripts/deploy")
    base = running["api"]["url"]
    url = f"{base}whoami"
    validate(args, url)
    print(f"\nBurst: {args.requests} x GET {url}, {args.concurrency} in flight")
    result = burst(url, args.requests, args.concurrency, args.max_seconds)
    sent = sum(result.statuses.values()) + sum(result.errors.values())
    print(f"  sent {sent} in {result.seconds:.1f} s ({sent / result.seconds:.0f} req/s)")
    print(
        f"  status codes: {dict(sorted(result.statuses.items()))}"
        + (f", errors: {dict(result.errors)}" if result.errors else "")
    )
    if result.latencies_ms:
        lat = result.latencies_ms
        print(
            f"  latency ms: p50 {statistics.median(lat):.0f}, p95 {percentile(lat, 0.95):.0f}, "
            f"p99 {percentile(lat, 0.99):.0f}"
        )
    print(
        f"  served by {len(result.environments)} Lambda execution environments "
        f"(requests each: {sorted(result.environments.values(), reverse=True)})"
    )
    function = running["api"]["api_function"]
    localstack_url = running["localstack"]["url"]
    print(f"""
Where to look next (awslocal is in .venv/bin: `source .venv/bin/activate`):
  curl {base}health
  awslocal lambda list-functions --query 'Functions[].FunctionName'
  awslocal logs filter-log-events --log-group-name /aws/lambda/{function} --max-items 20
  awslocal apigateway get-rest-apis
  scripts/localcloud status        (what runs, where; endpoints in {cfg.endpoints_file})
  scripts/localcloud logs          (LocalStack's log)
  scripts/localcloud down          (stop everything)
The local cloud is at {localstack_url}; awslocal finds it through AWS_ENDPOINT_URL.""")
    failed = sum(result.errors.values()) + sum(
        n for code, n in result.statuses.items() if code >= 400
    )
    return 1 if failed else 0
