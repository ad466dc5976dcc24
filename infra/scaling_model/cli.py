"""scripts/simulate: what a burst would do on AWS, and cost, at any size; the model calibrated on
and compared with the burst tool's reports.

  scripts/simulate predict [burst options] [--stage S] [limits]   one burst: figures, chart, bill
  scripts/simulate sizes [burst options] [--stage S]              10^4 .. 10^7 tasks, one line each
  scripts/simulate calibrate REPORT.json [--stage S]              fit, store, compare
  scripts/simulate compare REPORT.json ... [--stage S]            the model against measured runs
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from burst import settings as burst_settings
from burst.settings import BurstSettings
from chalicelib.errors import SettingMissing
from deployment.chalice_stage import DeployError
from scaling_model import calibration as calibration_module
from scaling_model import chart, comparison, costs, simulation, workload
from scaling_model.calibration import Calibration, CalibrationError
from scaling_model.simulation import SimulationResult
from scaling_model.stage import StageSettings, read_stage, stage_of_function

EXIT_DISAGREES = 1
EXIT_CANNOT_RUN = 2
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
DEFAULT_STAGE = "local"


class ModelError(RuntimeError):
    """The model cannot run as asked; the message says what to fix."""


# --- arguments ------------------------------------------------------------------------------


def add_stage_arguments(parser: argparse.ArgumentParser, *, stage_default: str | None) -> None:
    add = parser.add_argument
    add(
        "--stage",
        default=stage_default,
        help="the .chalice/config.json stage whose settings the model runs under "
        + (f"(default {stage_default})" if stage_default else "(default: the report's)"),
    )
    add(
        "--calibration",
        type=Path,
        default=calibration_module.DEFAULT_PATH,
        help="fitted per-batch timings (default %(default)s)",
    )


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--max-concurrency", type=int, help="the mapping's MaximumConcurrency (2..1000)")
    add("--account-concurrency", type=int, help="the account's concurrent executions (1000)")
    add("--api-reserved-concurrency", type=int, help="reserved for the API's function")
    add("--worker-reserved-concurrency", type=int, help="reserved for the worker")
    add(
        "--no-database-proxy",
        dest="database_proxy",
        action="store_false",
        default=True,
        help="the functions straight to PostgreSQL (max_connections), no RDS Proxy",
    )
    add("--architecture", choices=("x86_64", "arm64"), default="x86_64", help="Lambda's")
    add(
        "--no-snapstart",
        dest="snapstart",
        action="store_false",
        default=True,
        help="bill the worker without SnapStart's restore and cache charges",
    )
    add(
        "--database",
        choices=("db.t4g.micro", "aurora-serverless-v2"),
        default="db.t4g.micro",
        help="what the bill's database is (default %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/simulate",
        description="A discrete-event model of the app on AWS (API -> SQS -> mapping -> Lambda "
        "-> proxy -> PostgreSQL), calibrated on the burst tool's reports: drain time, "
        "concurrency, database connections, throttles, a chart and the AWS bill.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("predict", "one burst, any size: figures, chart, cost"),
        ("sizes", "the same burst at 10^4, 10^5, 10^6 and 10^7 tasks, one line each"),
    ):
        sub = commands.add_parser(name, help=help_text)
        burst_settings.add_arguments(sub, defaults={"profile": "spike", "batch": 100})
        for action in sub._actions:  # the burst's bounds are the laptop's, not the model's
            if action.dest == "count":
                action.help = "tasks to send (any number; default %(default)s)"
        add_stage_arguments(sub, stage_default=DEFAULT_STAGE)
        add_limit_arguments(sub)
    calibrate = commands.add_parser("calibrate", help="fit the timings to a report and store them")
    calibrate.add_argument("report", type=Path)
    add_stage_arguments(calibrate, stage_default=None)
    compare = commands.add_parser("compare", help="the model against measured reports")
    compare.add_argument("reports", type=Path, nargs="+")
    add_stage_arguments(compare, stage_default=None)
    return parser


def stage_from_args(args: argparse.Namespace) -> StageSettings:
    stage = read_stage(args.stage)
    return stage.with_limits(
        max_concurrency=args.max_concurrency,
        account_concurrency=args.account_concurrency,
        api_reserved_concurrency=args.api_reserved_concurrency,
        worker_reserved_concurrency=args.worker_reserved_concurrency,
        database_proxy=args.database_proxy,
    )


def burst_from_args(args: argparse.Namespace) -> BurstSettings:
    settings = burst_settings.from_args(args)
    if settings.count < 1 or settings.rate <= 0 or settings.duration <= 0 or settings.batch < 1:
        raise ModelError("--count, --rate, --duration and --batch must be above 0")
    return settings


# --- the commands ---------------------------------------------------------------------------


def describe(
    settings: BurstSettings, stage: StageSettings, calibration: Calibration, *, count: bool = True
) -> str:
    options = {
        k: v for k, v in settings.payload_options.items() if k.startswith(settings.task_type)
    }
    what = (
        (f"{settings.count:,} " if count else "")
        + f"{settings.task_type} tasks"
        + (f" ({', '.join(f'{k} {v:g}' for k, v in options.items())})" if options else "")
    )
    proxy = f"proxy {stage.proxy_max_connections}" if stage.database_proxy else "no proxy"
    return (
        f"{settings.profile} of {what}, {settings.batch} per request, stage {stage.name} "
        f"(BatchSize {stage.batch_size}, MaximumConcurrency {stage.max_concurrency}, account "
        f"{stage.account_concurrency}, {proxy}); timings fitted to run {calibration.source}"
    )


def result_lines(result: SimulationResult) -> list[str]:
    c = result.counters
    drain = (
        f"{result.drain_seconds:,.1f} s ({result.drain_seconds / 60:,.1f} min)"
        if result.drain_seconds is not None
        else f"NOT drained after {result.simulated_seconds:,.0f} simulated s"
    )
    peak_at = f"{result.peak_at_seconds:,.0f} s" if result.peak_at_seconds is not None else "-"
    limit = (
        result.stage.proxy_max_connections
        if result.stage.database_proxy
        else (result.stage.database_client_slots)
    )
    # every 10 s, or a multiple of it that keeps the line to about 40 figures
    step = 10 * max(1, math.ceil(len(result.concurrency_per_second) / 10 / 40))
    rows = [
        ("drain", drain + " (first send -> last task final)"),
        ("peak", f"{result.peak_concurrency:,} batches at once, {peak_at} after the first send"),
        ("throttles", f"worker invokes {c.throttles:,}; API requests refused with 429 (each "
         f"counted once): {c.api_throttles:,} by Lambda, {c.gateway_throttles:,} by API "
         "Gateway's 10,000/s"),
        ("database", f"peak {result.peak_database_connections} connections (limit {limit}); "
         f"borrow timeouts {c.borrow_timeouts:,}, refused {c.database_refusals:,}"),
        ("API", f"{c.api_requests:,} requests, peak {result.peak_api_concurrency:,} functions"),
        ("batches", f"{c.batches:,} ({c.timeouts:,} timed out), {c.environments:,} environments;"
         f" done {c.done:,}, dead-lettered {c.dead_lettered:,}"),
        (f"every {step} s", ", ".join(f"{v:,}" for _, v in result.curve(step))),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    return [f"  {label:<{width}}  {value}" for label, value in rows]


def run_predict(args: argparse.Namespace, calibration: Calibration) -> int:
    settings, stage = burst_from_args(args), stage_from_args(args)
    print(f"Model: {describe(settings, stage, calibration)}", flush=True)
    started = time.monotonic()
    work = workload.from_burst(settings)
    result = simulation.simulate(stage, calibration, work)
    print("\n".join(result_lines(result)))
    label = f"model-{stage.name}-{settings.profile}-{settings.count}-{settings.task_type}"
    path = chart.write_chart(
        result,
        Path(args.out_dir) / f"{label}.png",
        f"model: {settings.profile} of {settings.task_type} tasks, stage {stage.name} "
        f"(MaximumConcurrency {stage.max_concurrency}), timings of run {calibration.source}",
    )
    print(f"  {'chart':<10}  {path}  ({time.monotonic() - started:.1f} s to simulate)")
    print()
    print("\n".join(bill_for(result, args).lines()))
    return 0


def bill_for(result: SimulationResult, args: argparse.Namespace) -> costs.Bill:
    return costs.bill(result.usage(args.architecture, args.snapstart, args.database))


def run_sizes(args: argparse.Namespace, calibration: Calibration) -> int:
    base, stage = burst_from_args(args), stage_from_args(args)
    print(f"Model: {describe(base, stage, calibration, count=False)}")
    print(
        f"  {'tasks':>10}  {'drain s':>9}  {'peak':>5}  {'peak at s':>9}  {'db conn':>7}  "
        f"{'worker thr':>10}  {'API thr':>9}  {'GW thr':>9}  {'cost $':>10}  {'wall s':>6}"
    )
    for count in SIZES:
        started = time.monotonic()
        settings = replace(base, count=count)
        result = simulation.simulate(stage, calibration, workload.from_burst(settings))
        drain = f"{result.drain_seconds:,.0f}" if result.drain_seconds is not None else "no"
        peak_at = f"{result.peak_at_seconds:,.0f}" if result.peak_at_seconds is not None else "-"
        total = bill_for(result, args).total_usd
        c = result.counters
        print(
            f"  {count:>10,}  {drain:>9}  {result.peak_concurrency:>5,}  {peak_at:>9}  "
            f"{result.peak_database_connections:>7}  {c.throttles:>10,}  "
            f"{c.api_throttles:>9,}  {c.gateway_throttles:>9,}  "
            f"{total:>10,.2f}  {time.monotonic() - started:>6.1f}",
            flush=True,
        )
    return 0


def report_stage(report: dict[str, Any], stage: str | None) -> StageSettings:
    if stage:
        return read_stage(stage)
    function = report["target"]["worker_function"]
    try:
        return read_stage(stage_of_function(function))
    except (ValueError, DeployError) as e:
        raise ModelError(
            f"cannot tell the stage of run {report['run_id']} from its worker {function!r} "
            f"({e}): pass --stage"
        ) from e


def run_compare(paths: list[Path], stage: str | None, calibration: Calibration) -> int:
    agree = True
    for path in paths:
        report = calibration_module.read_report(path)
        result = comparison.compare(report, report_stage(report, stage), calibration)
        print("\n".join(result.lines()))
        agree = agree and result.agrees
    return 0 if agree else EXIT_DISAGREES


def run_calibrate(path: Path, stage: str | None, store: Path) -> int:
    report = calibration_module.read_report(path)
    fitted = calibration_module.fit(report)
    calibration_module.save(fitted, store)
    print(f"Fitted to run {fitted.source}, stored in {store}:")
    for key, value in fitted.to_json().items():
        print(f"  {key:<24}  {value}")
    return run_compare([path], stage, fitted)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "calibrate":
            return run_calibrate(args.report, args.stage, args.calibration)
        calibration = calibration_module.load(args.calibration)
        if args.command == "compare":
            return run_compare(args.reports, args.stage, calibration)
        if args.command == "sizes":
            return run_sizes(args, calibration)
        return run_predict(args, calibration)
    except (ModelError, CalibrationError, SettingMissing, DeployError, ValueError) as error:
        print(f"simulate: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
