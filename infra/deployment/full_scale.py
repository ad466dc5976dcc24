"""scripts/demo --full-scale: AWS's whole SQS scaling curve on one machine.

A spike of 30,000 sleep tasks of 5 s each to the `fullscale` stage (.chalice/config.json:
MaximumConcurrency 1,000, the worker's timeout 60 s for its 10 x 5 s batches). One batch moves
10 tasks in 50 s, so the backlog outlasts the mapping's climb: 5 batches, then 300 more a minute
(AWS's rate) to 1,000 after about 3 min 20 s, a plateau while the last 10,000 tasks run, then the
fall. The account's 1,000 concurrent executions are shared: at the plateau the worker holds all of
them and the API's function is throttled, unless `--api-reserved-concurrency N` reserves N for
it (the worker then tops out at 1,000 - N, and its own invokes are throttled instead). Every
option of scripts/burst can override the preset; the bounds stay the burst tool's.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from burst import settings as burst_settings
from burst.cli import exit_code, print_result
from burst.cloud import Target
from burst.errors import BurstError
from burst.run import BurstResult, run_burst
from deployment import chalice_stage, demo
from localcloud import endpoints
from localcloud.aws import client_for_running
from localcloud.settings import Settings
from localcloud_ext import contract, scaling_policy

STAGE = "fullscale"
# The fullscale stage's settings that differ from the local stage's (.chalice/config.json has
# them; the benchmark's own stage takes them from here). Metrics as EMF log lines, which the
# local cloud extracts as CloudWatch Logs does: 1,000 environments calling PutMetricData would
# be ~1,000 requests a second, past LocalStack's measured ceiling of ~140.
STAGE_ENVIRONMENT = {"WORKER_MAX_CONCURRENCY": "1000", "METRICS_SINK": "emf"}
# AWS's curve and limits, as the local cloud emulates them (its scaling policy and contract).
AWS_INITIAL_BATCHES = scaling_policy.AWS_INITIAL_CONCURRENCY
AWS_SCALE_UP_PER_MINUTE = contract.ESM_SCALE_UP_PER_MINUTE.default
ACCOUNT_CONCURRENCY = int(contract.ACCOUNT_CONCURRENCY.default)
UNRESERVED = contract.minimum_unreserved_concurrency(ACCOUNT_CONCURRENCY)
PRESET: dict[str, Any] = {
    "profile": "spike",
    "count": 30_000,
    "task_type": "sleep",
    "sleep_ms": 5000,
    "batch": 100,
    "threads": 16,
    "max_seconds": 300.0,
    "drain_seconds": 600.0,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    burst_settings.add_arguments(parser, defaults=PRESET)
    parser.add_argument(
        "--api-reserved-concurrency",
        type=int,
        default=0,
        metavar="N",
        help="reserve N of the account's concurrent executions for the API's function "
        "(0: none, so the worker can take all 1,000 and the API is throttled; default 0)",
    )


def aws_batches_at(seconds: float, maximum: int = ACCOUNT_CONCURRENCY) -> int:
    """AWS's curve for a backlog that lasts: 5 concurrent batches, then 300 more a minute."""
    return min(maximum, AWS_INITIAL_BATCHES + int(seconds * AWS_SCALE_UP_PER_MINUTE / 60))


def seconds_to_reach(batches: int) -> float:
    """How long AWS's curve takes from its first 5 batches to `batches`."""
    return (batches - AWS_INITIAL_BATCHES) * 60 / AWS_SCALE_UP_PER_MINUTE


def check_reserved(reserved: int) -> None:
    # LocalStack, like AWS, keeps some of the account's concurrency unreserved (100 of 1,000).
    if not 0 <= reserved <= ACCOUNT_CONCURRENCY - UNRESERVED:
        raise BurstError(
            f"--api-reserved-concurrency {reserved}: use 0 (none) to "
            f"{ACCOUNT_CONCURRENCY - UNRESERVED} (the account keeps {UNRESERVED} unreserved)"
        )


def reserve_api_concurrency(running: dict[str, Any], function: str, reserved: int) -> None:
    lambda_client = client_for_running(running, "lambda")
    if reserved:
        lambda_client.put_function_concurrency(
            FunctionName=function, ReservedConcurrentExecutions=reserved
        )
    else:
        lambda_client.delete_function_concurrency(FunctionName=function)


def curve_note(result: BurstResult, reserved: int) -> str:
    batches = result.report["batches"]
    peaks = result.report.get("cloudwatch_peaks", {})
    mapping_peak = peaks.get("esm_concurrent_batches", {})
    ceiling = ACCOUNT_CONCURRENCY - reserved
    lines = [
        f"Worker batches at once (rows): up to {batches['peak_concurrent']}; "
        f"the mapping's own gauge: up to {mapping_peak.get('peak', 'n/a')}"
        + (f" at {mapping_peak['at_seconds']:.0f} s" if "at_seconds" in mapping_peak else ""),
        f"AWS's curve: {AWS_INITIAL_BATCHES} batches, +{AWS_SCALE_UP_PER_MINUTE:.0f} a minute, "
        f"{ceiling} after {seconds_to_reach(ceiling):.0f} s "
        + (
            f"(the account's {ACCOUNT_CONCURRENCY} minus the API's reserved {reserved})"
            if reserved
            else "(the API's function unreserved: throttled while the worker holds everything)"
        ),
    ]
    return "\n".join(lines)


def run(cfg: Settings, args: argparse.Namespace) -> int:
    """The spike against the `fullscale` stage, deployed just before (by __main__)."""
    settings = burst_settings.from_args(args)
    burst_settings.check(settings)
    check_reserved(args.api_reserved_concurrency)
    running = endpoints.load(cfg.endpoints_file)
    api_function = chalice_stage.function_name(
        chalice_stage.PROJECT_ROOT, STAGE, chalice_stage.API_HANDLER
    )
    reserve_api_concurrency(running, api_function, args.api_reserved_concurrency)
    target = Target.from_endpoints(running, str(cfg.endpoints_file))
    print(
        f"\nWatch it live: open {target.dashboard_url} in a browser now "
        f"(the spike starts in {demo.DASHBOARD_GRACE_SECONDS:.0f} s; the whole run takes "
        "about 6 minutes)"
    )
    time.sleep(demo.DASHBOARD_GRACE_SECONDS)
    print()
    result = run_burst(target, settings)
    print_result(result)
    print(f"\n{curve_note(result, args.api_reserved_concurrency)}")
    print(
        "Back to the everyday stage: scripts/deploy (stage local). The fullscale stage stays "
        "deployed beside it; scripts/deploy --stage fullscale redeploys it."
    )
    return exit_code(result)
