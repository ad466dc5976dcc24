"""Benchmark of AWS's whole SQS scaling curve on this machine: the full-scale spike
(infra/deployment/full_scale.py: 30,000 sleep tasks of 5 s, MaximumConcurrency 1,000) on a local
cloud of its own, once with the functions reaching PostgreSQL through the RDS Proxy stand-in and
once directly, side by side in one run.

Prints for each: the mapping's concurrent batches every 10 s beside AWS's curve (5 + 5/s, from
the first batch), the time to reach 1,000, the peak Pss of all execution environments together,
LocalStack's peak RSS and CPU, the peak of PostgreSQL's server-side connections, and lost and
duplicated tasks (the burst's integrity check).
    scripts/bench-full-scale [--count N] [--ms MS] [--proxy both|on|off] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from burst.run import BurstResult, run_burst
from burst.settings import BurstSettings
from deployment import full_scale
from localcloud import environments, localstack
from localcloud.settings import Settings
from localcloud_ext import contract
from localcloud_ext.database_metrics import SERVER_CONNECTIONS_QUERY
from tests import faults
from tests.benchmarks.esm_ceiling import cpu_seconds, proc_status
from tests.stages import Stage, deployed_stage

WORKER_TIMEOUT_SECONDS = 60  # 10 tasks of 5 s a batch
VISIBILITY_TIMEOUT_SECONDS = 6 * WORKER_TIMEOUT_SECONDS
SAMPLE_SECONDS = 1.0
PSS_EVERY_SAMPLES = 5  # reading smaps_rollup of 1,000 processes is not free
CURVE_STEP_SECONDS = 10


class BenchError(RuntimeError):
    pass


@dataclass
class Peaks:
    environments: int = 0
    environments_pss_mb: float = 0.0
    localstack_rss_mb: float = 0.0
    localstack_cpu_percent: float = 0.0
    database_connections: int = 0
    samples: int = 0


@dataclass
class Sampler:
    """Once a second, in a thread: LocalStack's RSS and CPU, PostgreSQL's client backends, and
    (every few seconds) the environments' Pss. Keeps the peaks."""

    cfg: Settings
    localstack_pid: int
    # The local cloud's metrics reader (pg_monitor): a role without it sees no other role's
    # backend_type, and counted only its own sessions (a "peak of 1" with and without the proxy).
    monitor_conninfo: str
    peaks: Peaks = field(default_factory=Peaks)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self.monitor_conninfo, autocommit=True) as connection:
            last_cpu, last_at = cpu_seconds(self.localstack_pid), time.monotonic()
            while not self._stop.wait(SAMPLE_SECONDS):
                peaks = self.peaks
                peaks.samples += 1
                try:
                    cpu, now = cpu_seconds(self.localstack_pid), time.monotonic()
                    rss_mb = int(proc_status(self.localstack_pid)["VmRSS"].split()[0]) / 1024
                except OSError:
                    pass  # LocalStack gone (killed at the end of a stalled run): no figure
                else:
                    percent = 100.0 * (cpu - last_cpu) / (now - last_at)
                    peaks.localstack_cpu_percent = max(peaks.localstack_cpu_percent, percent)
                    peaks.localstack_rss_mb = max(peaks.localstack_rss_mb, rss_mb)
                    last_cpu, last_at = cpu, now
                row = connection.execute(SERVER_CONNECTIONS_QUERY).fetchone()
                backends = int(row[0]) if row else 0
                peaks.database_connections = max(peaks.database_connections, backends)
                if peaks.samples % PSS_EVERY_SAMPLES == 1:
                    memory = environments.memory(self.cfg.functions_pids_dir)
                    # The environments with their templates and snapshots: all the functions'
                    # processes hold.
                    pss_mb = memory.total_pss_bytes / 2**20
                    peaks.environments_pss_mb = max(peaks.environments_pss_mb, pss_mb)
                    peaks.environments = max(peaks.environments, memory.environments)


# PostgreSQL's own words when max_connections is reached (one line per refused connection):
# past max_connections, and past it less the slots kept for superusers.
REFUSED_FOR_MAX_CONNECTIONS = (
    "sorry, too many clients already",
    "remaining connection slots are reserved",
)


def refused_connections(pg_log: Path) -> int:
    """How many connections PostgreSQL has refused for max_connections, by its log."""
    try:
        with pg_log.open(errors="replace") as log:
            return sum(any(words in line for words in REFUSED_FOR_MAX_CONNECTIONS) for line in log)
    except FileNotFoundError:
        return 0


MAPPING_GAUGE = "esm_concurrent_batches"  # the burst's name for the mapping's own gauge


def mapping_batches(result: BurstResult) -> list[tuple[int, float]]:
    """(second after the first send, the mapping's concurrent batches) from the burst's
    timeline: its per-second maximum of the local cloud's ConcurrentBatches gauge."""
    return [
        (int(entry["second"]), float(entry[MAPPING_GAUGE]))
        for entry in result.report["timeline"]
        if entry.get(MAPPING_GAUGE) is not None
    ]


def curve(points: list[tuple[int, float]]) -> list[tuple[int, float | None, int]]:
    """(seconds after the first batch, the mapping's concurrent batches, AWS's) every 10 s."""
    started = next((t for t, v in points if v > 0), None)
    if started is None:
        return []
    by_second = dict(points)
    end = max(t for t, _ in points)
    return [
        (offset, by_second.get(started + offset), full_scale.aws_batches_at(offset))
        for offset in range(0, end - started + 1, CURVE_STEP_SECONDS)
    ]


def seconds_to(points: list[tuple[int, float]], batches: int) -> int | None:
    started = next((t for t, v in points if v > 0), None)
    reached = next((t for t, v in points if v >= batches), None)
    return None if started is None or reached is None else reached - started


def burst_settings(args: argparse.Namespace, out_dir: Path) -> BurstSettings:
    preset = full_scale.PRESET
    return BurstSettings(
        profile=preset["profile"],
        count=args.count,
        task_type="sleep",
        payload_options={"sleep_ms": args.ms},
        batch=preset["batch"],
        threads=preset["threads"],
        max_seconds=preset["max_seconds"],
        drain_seconds=preset["drain_seconds"],
        out_dir=out_dir,
        progress=False,
    )


def one_run(
    cloud: faults.FaultCloud, label: str, proxy: bool, settings: BurstSettings, work: Path
) -> dict[str, Any]:
    project = work / label
    project.mkdir()
    figures: dict[str, Any] = {}
    try:
        with deployed_stage(
            cloud.running,
            cloud.settings,
            project,
            worker_timeout_seconds=WORKER_TIMEOUT_SECONDS,
            visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
            environment=full_scale.STAGE_ENVIRONMENT,
            name_prefix="full",
            database_proxy=proxy,
        ) as stage:
            figures = measured_burst(cloud, label, stage, settings)
    except Exception as error:
        if not figures:
            raise
        # The stage's teardown failed (an overloaded LocalStack timed out): the figures stand.
        figures["teardown_error"] = repr(error)[:300]
    return figures


def measured_burst(
    cloud: faults.FaultCloud, label: str, stage: Stage, settings: BurstSettings
) -> dict[str, Any]:
    sampler = Sampler(
        cloud.settings,
        int(cloud.running["localstack"]["pid"]),
        localstack.database_metrics_environment(cloud.settings)[
            contract.DB_METRICS_POSTGRES_VARIABLE
        ],
    )
    refused_before = refused_connections(cloud.settings.pg_log)
    with sampler:
        try:
            result = run_burst(stage.target(), settings)
        except Exception as error:  # LocalStack stopped answering: still print what was seen
            return {"label": label, "error": repr(error)[:300], "peaks": asdict(sampler.peaks)}
    refused = refused_connections(cloud.settings.pg_log) - refused_before
    integrity = result.report["integrity"]
    points = mapping_batches(result)
    return {
        "label": label,
        "curve": curve(points),
        "seconds_to_1000": seconds_to(points, full_scale.ACCOUNT_CONCURRENCY),
        "peak_batches": max((v for _, v in points), default=None),
        "peaks": asdict(sampler.peaks),
        "refused_connections": refused,
        "report": str(result.json_path),
        "accepted": integrity["accepted"],
        "lost": len(integrity["lost"]),
        "duplicated": len(integrity["duplicated"]),
        "integrity_ok": result.integrity_ok,
        "drain_seconds": result.report["drain"].get("seconds"),
        "done": result.report["drain"]["statuses"].get("done", 0),
    }


def print_run(figures: dict[str, Any]) -> None:
    peaks = figures["peaks"]
    print(f"\n== {figures['label']}")
    if "error" in figures:
        print(f"  the burst stopped: {figures['error']}")
        print(
            f"  seen until then: {peaks['environments']} environments, Pss "
            f"{peaks['environments_pss_mb']:.0f} MB; LocalStack RSS "
            f"{peaks['localstack_rss_mb']:.0f} MB, CPU {peaks['localstack_cpu_percent']:.0f} %; "
            f"PostgreSQL connections {peaks['database_connections']}"
        )
        return
    print("  seconds  batches  AWS (5 + 5/s)")
    for offset, batches, aws in figures["curve"]:
        shown = "n/a" if batches is None else f"{batches:.0f}"
        print(f"  {offset:>7}  {shown:>7}  {aws:>7}")
    to_1000 = figures["seconds_to_1000"]
    print(
        f"  time to 1,000 batches: {'not reached' if to_1000 is None else f'{to_1000:.0f} s'} "
        f"(AWS: {full_scale.seconds_to_reach(full_scale.ACCOUNT_CONCURRENCY):.0f} s); "
        f"peak {figures['peak_batches']}"
    )
    print(
        f"  environments: up to {peaks['environments']}, peak Pss together "
        f"{peaks['environments_pss_mb']:.0f} MB"
    )
    print(
        f"  LocalStack: peak RSS {peaks['localstack_rss_mb']:.0f} MB, peak CPU "
        f"{peaks['localstack_cpu_percent']:.0f} % (of one core)"
    )
    print(
        f"  PostgreSQL server-side connections: peak {peaks['database_connections']}; "
        f"refused for max_connections: {figures['refused_connections']}"
    )
    drain = figures["drain_seconds"]
    drained = f"{drain:.0f} s" if drain is not None else f"not drained ({figures['done']} done)"
    print(f"  drain: {drained}; the burst's report: {figures['report']}")
    if "teardown_error" in figures:
        print(f"  the stage's teardown failed: {figures['teardown_error']}")
    print(
        f"  tasks: accepted {figures['accepted']}, lost {figures['lost']}, duplicated "
        f"{figures['duplicated']}; integrity {'OK' if figures['integrity_ok'] else 'FAILED'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-full-scale", description=__doc__)
    parser.add_argument("--count", type=int, default=full_scale.PRESET["count"], help="tasks")
    parser.add_argument("--ms", type=int, default=full_scale.PRESET["sleep_ms"], help="sleep")
    parser.add_argument("--proxy", choices=("both", "on", "off"), default="both")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-full-scale-"))
    settings = burst_settings(args, work / "reports")
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.proxy]
    runs = []
    with faults.fault_cloud(Settings.from_env().venvs_dir) as cloud:
        print(f"local cloud of its own: {cloud.settings.state_dir}")
        for proxy in modes:
            label = "through the proxy" if proxy else "without the proxy"
            figures = one_run(cloud, label.replace(" ", "-"), proxy, settings, work)
            figures["label"] = label
            print_run(figures)
            runs.append(figures)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0 if all(run.get("integrity_ok") for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
