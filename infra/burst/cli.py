"""scripts/burst: send an open-model burst of tasks to the deployed app and report what the
system did with it. It sets nothing up: the local cloud must be up and the app deployed."""

from __future__ import annotations

import argparse
import logging
import sys

from burst import settings as burst_settings
from burst.cloud import Target
from burst.errors import BurstError
from burst.report import summary_lines, where_to_look
from burst.run import BurstResult, run_burst
from localcloud import endpoints
from localcloud.settings import Settings, SettingsError

EXIT_INTEGRITY_FAILED = 1
EXIT_CANNOT_RUN = 2


def print_result(result: BurstResult) -> None:
    print()
    print("\n".join(summary_lines(result.report)))
    print()
    print("\n".join(where_to_look(result.report, result.files, result.dashboard_link)))


def exit_code(result: BurstResult) -> int:
    """1 when a task was lost, duplicated or unexpected; a slow drain alone is not a failure
    (the report says what was still pending)."""
    return 0 if result.integrity_ok else EXIT_INTEGRITY_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/burst",
        description="Send a bounded, open-model burst of tasks to the deployed app (loopback "
        "only), wait for the drain, and report: acceptance, latency, drain time, worker batches "
        "at once, and an integrity check. Writes burst-<run id>.json and .png to --out.",
    )
    burst_settings.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = burst_settings.from_args(args)
        burst_settings.check(settings)  # before looking for the cloud: bad options name the fix
        cfg = Settings.from_env()
        target = Target.from_endpoints(endpoints.load(cfg.endpoints_file), str(cfg.endpoints_file))
        result = run_burst(target, settings)
    except (BurstError, SettingsError) as error:
        print(f"burst: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print_result(result)
    return exit_code(result)
