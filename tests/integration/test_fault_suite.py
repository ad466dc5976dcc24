"""The fault suite: the README's promise (a 202 means the task ends as exactly one row, done, or
failed with its reason and its message in the dead-letter queue) under the faults a real
deployment meets. Each scenario sends a bounded burst with the burst tool, injects its fault
while the burst runs, and ends with the burst tool's integrity check plus: every accepted task's
row final, failed ones with their error and their message in the DLQ, nothing lost, nothing
duplicated.

It runs on a local cloud of its own (tests/faults.py), since it kills LocalStack and stops
PostgreSQL; LOCALCLOUD_VENVS_DIR names the venvs scripts/setup built. Each scenario's figures
(accepted, done, in the DLQ, lost, duplicated, the time from the fault's end to the last task
landing) are printed and written to fault-figures.json in that local cloud's state dir.

The stage: worker timeout 5 s, visibility timeout 30 s, MaxReceiveCount 5 (the deploy's), the
trigger's MaximumConcurrency 10, retry backoff 2 s doubling to 16 s (four retries span 30 s, more
than the 15 s database outage, so a task that would succeed never runs out of receives).
The scenarios that only wait on retries (poison, flaky, the redrive's dead letters) send their
bursts at once, side by side (each checks its own run); the others run one at a time."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from burst.analysis import TaskRow, check_integrity
from burst.run import BurstResult, new_run_id, run_burst
from burst.schedule import run_key_prefix
from burst.sender import RETRY_DELAYS_SECONDS
from burst.settings import BurstSettings
from chalicelib import settings as app_settings
from deployment import pipeline, snapstart
from deployment import redrive as redrive_tool
from localcloud.settings import (
    ENV_PG_PORT,
    ENV_PORT,
    ENV_PROXY_PORT,
    ENV_STATE_DIR,
    ENV_VENVS_DIR,
    PROJECT_ROOT,
    Settings,
)
from tests import faults
from tests.faults import FaultCloud, FaultThread, FaultWindow
from tests.metrics import metric_values
from tests.polling import wait_for
from tests.stages import Stage, deployed_stage

WORKER_TIMEOUT_SECONDS = 5
# 6 x the worker's timeout, AWS's advice. Each crash and timeout scenario waits one for its
# batch to come back; 15 s was tried, and in the cold-start storm (inits starved of CPU) it
# let 350 messages run out of receives before any worker ran them.
VISIBILITY_TIMEOUT_SECONDS = 30
# SQS moves a message to the DLQ at the receive after its last, i.e. up to one visibility
# timeout after the worker marked its row failed.
DEAD_LETTER_SETTLE_SECONDS = VISIBILITY_TIMEOUT_SECONDS + 10
MAX_RECEIVES = pipeline.MAX_RECEIVE_COUNT
MAX_CONCURRENCY = 10
# The retry backoff's settings (chalicelib/settings.py); a base of 0 turns it off.
BACKOFF_BASE = app_settings.TASK_RETRY_BACKOFF_BASE_SECONDS
BACKOFF_MAX = app_settings.TASK_RETRY_BACKOFF_MAX_SECONDS
STAGE_ENVIRONMENT = {
    app_settings.WORKER_MAX_CONCURRENCY: str(MAX_CONCURRENCY),
    BACKOFF_BASE: "2",
    BACKOFF_MAX: "16",
}
POSTGRES_OUTAGE_SECONDS = 15
FIGURES_FILE = "fault-figures.json"


@pytest.fixture(scope="module")
def cloud() -> Iterator[FaultCloud]:
    with faults.fault_cloud(Settings.from_env().venvs_dir) as started:
        yield started


@pytest.fixture(scope="module")
def stage(cloud: FaultCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    with deployed_stage(
        cloud.running,
        cloud.settings,
        tmp_path_factory.mktemp("faults"),
        worker_timeout_seconds=WORKER_TIMEOUT_SECONDS,
        visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
        environment=STAGE_ENVIRONMENT,
        name_prefix="faults",
    ) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def figures(cloud: FaultCloud) -> Iterator[list[dict[str, Any]]]:
    """Each scenario's figures row; printed and written to the fault cloud's state dir."""
    rows: list[dict[str, Any]] = []
    yield rows
    path = cloud.settings.state_dir / FIGURES_FILE
    path.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nfault suite figures ({path}):")
    for row in rows:
        print("  " + ", ".join(f"{key} {value}" for key, value in row.items()))


# --- one scenario: burst, fault, outcome --------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a scenario left: the burst's result, its rows, its messages in the DLQ."""

    result: BurstResult
    window: FaultWindow | None
    rows: list[dict[str, Any]]
    dead_letters: dict[str, int]  # the run's task ids in the DLQ -> messages

    @property
    def report(self) -> dict[str, Any]:
        return self.result.report

    def by_status(self, status: str) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == status]

    def figures(self, scenario: str) -> dict[str, Any]:
        integrity = self.report["integrity"]
        finished = [row["finished_at"] for row in self.rows if row["finished_at"] is not None]
        recovery = None
        settled = all(row["status"] in ("done", "failed") for row in self.rows)
        if settled and self.window is not None and self.window.ended_at is not None and finished:
            # <= 0: everything landed while the fault lasted (a throttle spans the whole run)
            recovery = max(0.0, round((max(finished) - self.window.ended_at).total_seconds(), 1))
        return {
            "scenario": scenario,
            "accepted": integrity["accepted"],
            "done": len(self.by_status("done")),
            "failed": len(self.by_status("failed")),
            "in_dlq": sum(self.dead_letters.values()),
            "pending": len(self.rows) - len(self.by_status("done")) - len(self.by_status("failed")),
            "lost": len(integrity["lost"]),
            "duplicated": len(integrity["duplicated"]),
            "unexpected": len(integrity["unexpected"]),
            "fault_seconds": round(self.window.seconds, 1) if self.window else None,
            "recovery_seconds": recovery,
            "drain_seconds": self.report["drain"]["last_final_seconds"],  # from the first send
            "integrity_ok": self.result.integrity_ok,
        }


def burst_settings(**overrides: Any) -> BurstSettings:
    base = BurstSettings(
        profile="spike", threads=8, max_seconds=30, drain_seconds=60, progress=False
    )
    return replace(base, **overrides)


def burst_with_fault(
    cloud: FaultCloud,
    stage: Stage,
    settings: BurstSettings,
    inject: Callable[[str], FaultWindow] | None = None,
    after_seconds: float = 0.0,
) -> Outcome:
    """Send the burst; `inject(key_prefix)` runs on a thread `after_seconds` into it. Its
    report and chart go to the fault cloud's state dir, beside the figures."""
    settings = replace(settings, out_dir=cloud.settings.state_dir / "reports")
    run_id = new_run_id()
    key_prefix = run_key_prefix(run_id)
    thread = None
    if inject is not None:
        thread = FaultThread(lambda: inject(key_prefix), after_seconds).start()
    # The report is not uploaded beside the dashboard: a bucket is one more thing a fault breaks.
    target = replace(stage.target(), dashboard_bucket=None, dashboard_url=None)
    result = run_burst(target, settings, run_id=run_id)
    window = thread.join() if thread is not None else None
    rows = faults.run_rows(stage, key_prefix)
    failed = {row["id"] for row in rows if row["status"] == "failed"}
    dead_letters = settled_dead_letters(stage, {row["id"] for row in rows}, failed)
    return Outcome(result, window, rows, dead_letters)


def settled_dead_letters(stage: Stage, ids: set[str], failed: set[str]) -> dict[str, int]:
    """The run's task ids in the DLQ, once every failed one has arrived there (or the wait is
    over: what is missing then is the scenario's failure to report)."""
    deadline = time.monotonic() + DEAD_LETTER_SETTLE_SECONDS
    while True:
        found = {
            task_id: n
            for task_id, n in faults.dead_letter_task_ids(stage).items()
            if task_id in ids
        }
        if failed <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def record(
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
    scenario: str,
    outcome: Outcome,
) -> None:
    row = outcome.figures(scenario)
    figures.append(row)
    record_property("figures", row)
    print(f"\n{scenario}: {row}")


def assert_every_task_final_once(outcome: Outcome) -> None:
    """The burst tool's integrity check, and what the README promises of each row."""
    integrity = outcome.report["integrity"]
    assert outcome.result.integrity_ok, f"integrity check failed: {integrity}"
    assert outcome.report["drain"]["drained"], f"not drained: {outcome.report['drain']}"
    assert integrity["accepted"] > 0, "the burst had nothing accepted: the scenario proved nothing"
    assert {row["status"] for row in outcome.rows} <= {"done", "failed"}
    for row in outcome.by_status("failed"):
        assert row["error"], f"task {row['id']} failed without its reason"
        assert outcome.dead_letters.get(row["id"]) == 1, f"failed task {row['id']} not in the DLQ"
    # A done task may have a copy in the DLQ: its first message timed out on every receive and
    # the reconciler sent it again. What the DLQ holds is never a task still owed.
    final_ids = {row["id"] for row in outcome.rows if row["status"] in ("done", "failed")}
    assert set(outcome.dead_letters) <= final_ids, "a task in the DLQ that is not final"


def assert_nothing_dead_lettered(outcome: Outcome) -> None:
    """Echo and sleep tasks always succeed, given time: none may fail or reach the DLQ."""
    assert outcome.by_status("failed") == []
    assert outcome.dead_letters == {}


def log_messages(stage: Stage, since: datetime) -> list[dict[str, Any]]:
    """The worker's JSON log lines since `since` (the platform's START/END/REPORT lines and
    other plain text as {"message": line})."""
    parsed: list[dict[str, Any]] = []
    for line in faults.function_log_messages(stage, stage.worker_function, since):
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        parsed.append(value if isinstance(value, dict) else {"message": line})
    return parsed


# --- the scenarios, in the order they run (the LocalStack crash last: it wipes the queues) ------


def test_a_worker_environment_killed_mid_batch_loses_nothing(
    cloud: FaultCloud,
    stage: Stage,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    # Only this run's environments: then all of them busy means the one killed is mid-batch.
    faults.stop_every_function_environment(cloud)
    since = datetime.now(UTC)
    settings = burst_settings(
        profile="steady",
        rate=60,
        duration=5,
        count=300,
        task_type="sleep",
        payload_options={"sleep_ms": 200},
        batch=10,
    )

    outcome = burst_with_fault(
        cloud, stage, settings, lambda prefix: faults.kill_busy_worker(cloud, stage, prefix), 1.0
    )

    record(figures, record_property, "worker SIGKILLed mid-batch", outcome)
    assert_every_task_final_once(outcome)
    assert_nothing_dead_lettered(outcome)
    # The kill hit an invocation: it ended as a crash, and its tasks ran again.
    lines = [m.get("message", "") for m in log_messages(stage, since)]
    assert any("Runtime exited with error: signal:" in str(line) for line in lines)
    assert any(row["attempts"] >= 2 for row in outcome.rows)


def test_a_postgres_outage_delays_tasks_and_dead_letters_none(
    cloud: FaultCloud,
    stage: Stage,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    since = datetime.now(UTC)
    # Sending outlasts the outage: the burst reads the rows only once it has sent everything.
    settings = burst_settings(
        profile="steady",
        rate=40,
        duration=POSTGRES_OUTAGE_SECONDS + 7,
        count=1000,
        task_type="sleep",
        payload_options={"sleep_ms": 300},
        batch=10,
    )

    outcome = burst_with_fault(
        cloud,
        stage,
        settings,
        lambda _: faults.stop_postgres_for(cloud, POSTGRES_OUTAGE_SECONDS),
        3.0,
    )

    record(figures, record_property, "PostgreSQL stopped 15 s", outcome)
    assert_every_task_final_once(outcome)
    assert_nothing_dead_lettered(outcome)
    assert outcome.window is not None and outcome.window.ended_at is not None
    # The outage did reach tasks in flight: some ran again after it.
    assert any(row["attempts"] >= 2 for row in outcome.rows)
    # The worker said what was wrong, once per failing batch, not once per record.
    during = log_messages(stage, since)
    about_database = [
        m
        for m in during
        if "postgres" in str(m.get("message", "")).lower()
        or "database" in str(m.get("message", "")).lower()
    ]
    invocations = [m for m in during if str(m.get("message", "")).startswith("START RequestId")]
    assert about_database, "no worker log line names the database"
    assert len(about_database) <= len(invocations), (
        f"{len(about_database)} database lines for {len(invocations)} invocations"
    )


def test_reserved_concurrency_below_the_maximum_throttles_and_loses_nothing(
    cloud: FaultCloud,
    stage: Stage,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    reserved = 2
    since = datetime.now(UTC).replace(microsecond=0)
    settings = burst_settings(
        task_type="sleep", payload_options={"sleep_ms": 200}, count=100, batch=10
    )

    with faults.reserved_concurrency(stage, stage.worker_function, reserved):
        started = faults.begin(f"reserved concurrency {reserved} < MaximumConcurrency 10")
        outcome = burst_with_fault(cloud, stage, settings)
    outcome = replace(outcome, window=started.end())

    record(figures, record_property, "reserved concurrency 2 < maximum 10", outcome)
    assert_every_task_final_once(outcome)
    assert_nothing_dead_lettered(outcome)
    worker = ("FunctionName", stage.worker_function)
    cloudwatch = stage.client("cloudwatch")
    concurrent = metric_values(
        cloudwatch, since, "AWS/Lambda", "ConcurrentExecutions", worker, "Maximum"
    )
    assert concurrent, "the local cloud publishes ConcurrentExecutions: none came"
    assert max(concurrent) <= reserved
    throttles = wait_for(
        lambda: sum(metric_values(cloudwatch, since, "AWS/Lambda", "Throttles", worker, "Sum")),
        lambda total: total > 0,
        10,
        "throttles in CloudWatch",
    )
    assert throttles > 0


def test_every_function_environment_stopped_during_a_burst_loses_nothing(
    cloud: FaultCloud,
    stage: Stage,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    settings = burst_settings(
        profile="steady",
        rate=40,
        duration=6,
        count=240,
        task_type="sleep",
        payload_options={"sleep_ms": 200},
        batch=10,
    )

    outcome = burst_with_fault(
        cloud, stage, settings, lambda _: faults.stop_every_function_environment(cloud), 3.0
    )

    record(figures, record_property, "every function environment stopped", outcome)
    assert_every_task_final_once(outcome)
    assert_nothing_dead_lettered(outcome)
    assert outcome.window is not None and outcome.window.details["stopped"] >= 1


def test_a_cold_start_storm_under_overload_keeps_every_task_and_retries_every_5xx(
    cloud: FaultCloud,
    stage: Stage,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    settings = burst_settings(
        count=1000, task_type="echo", batch=100, threads=10, max_seconds=60, drain_seconds=120
    )

    with faults.cold_start_storm(cloud, stage, maximum_concurrency=30) as window:
        outcome = burst_with_fault(cloud, stage, settings)
    outcome = replace(outcome, window=window)

    row = outcome.figures("cold-start storm, 1,000 tasks at MaximumConcurrency 30")
    retries = outcome.report["sending"]["retries"]
    row.update(requests_by_status=outcome.report["requests_by_status"], retries=retries)
    row["stale_dead_letters"] = len(outcome.dead_letters)  # copies of done tasks
    figures.append(row)
    record_property("figures", row)
    print(f"\ncold-start storm: {row}")
    assert_every_task_final_once(outcome)
    assert outcome.by_status("failed") == []  # echo tasks: nothing that would succeed failed
    # Every 5xx and transport error was sent again with the same keys; a request still failing
    # used every retry (the client then gave up, and the integrity check shows nothing of it
    # was kept).
    assert set(retries["still_failing_attempts"]) <= {len(RETRY_DELAYS_SECONDS) + 1}
    assert outcome.report["tasks"]["accepted"] >= settings.count - 100 * retries["still_failing"]


# Sleep tasks longer than the worker's timeout allows (4.5 s + the worker's 1 s margin > 5 s):
# failed for good on their first receive and dead-lettered by the worker. Raising the timeout
# fixes that.
UNFIT_SLEEP_MS = 4500
RETRY_RUNS = {
    "poison": burst_settings(count=10, task_type="fail", batch=10, drain_seconds=75),
    "flaky": burst_settings(
        count=100,
        task_type="flaky",
        payload_options={"failure_rate": 0.3},
        batch=20,
        drain_seconds=75,
    ),
    "unfit": burst_settings(
        count=5,
        task_type="sleep",
        payload_options={"sleep_ms": UNFIT_SLEEP_MS},
        batch=5,
        drain_seconds=75,
    ),
}


@dataclass(frozen=True)
class RetryRuns:
    since: datetime
    outcomes: dict[str, Outcome]


@pytest.fixture(scope="module")
def retry_runs(cloud: FaultCloud, stage: Stage) -> RetryRuns:
    """The bursts of RETRY_RUNS, sent at once: they only wait on retries, so side by side they
    take the time of one (each scenario checks its own run)."""
    since = datetime.now(UTC)
    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(len(RETRY_RUNS), thread_name_prefix="retry-run") as pool:
        futures = {
            name: pool.submit(burst_with_fault, cloud, stage, settings)
            for name, settings in RETRY_RUNS.items()
        }
        for name, future in futures.items():
            outcomes[name] = future.result()
    return RetryRuns(since, outcomes)


def test_a_poison_message_reaches_the_dlq_after_max_receives_with_its_error(
    retry_runs: RetryRuns,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    outcome = retry_runs.outcomes["poison"]

    record(figures, record_property, "poison messages (fail)", outcome)
    assert_every_task_final_once(outcome)
    assert len(outcome.by_status("failed")) == RETRY_RUNS["poison"].count
    for row in outcome.rows:
        assert row["attempts"] == MAX_RECEIVES, row
        assert "asked for it" in row["error"]  # the fail task's own reason
    assert sum(outcome.dead_letters.values()) == RETRY_RUNS["poison"].count


def test_partial_batch_failures_retry_only_the_failed_records(
    stage: Stage,
    retry_runs: RetryRuns,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    outcome = retry_runs.outcomes["flaky"]

    record(figures, record_property, "partial batch failures (flaky 0.3)", outcome)
    assert_every_task_final_once(outcome)
    first_time = [row for row in outcome.rows if row["attempts"] == 1]
    assert all(row["status"] == "done" for row in first_time)
    # About 70 % succeed at once (more than 4 standard deviations either way is a defect).
    assert 0.5 <= len(first_time) / len(outcome.rows) <= 0.9
    # A failed one ran out of receives (a receive that found its request still committing
    # counts as one, not as an attempt).
    for row in outcome.by_status("failed"):
        assert 1 <= row["attempts"] <= MAX_RECEIVES
    # A record that succeeded was deleted: no later delivery found its task already finished.
    ids = {row["id"] for row in outcome.rows}
    redelivered = [
        m
        for m in log_messages(stage, retry_runs.since)
        if "already finished" in str(m.get("message", "")) and m.get("task_id") in ids
    ]
    assert redelivered == [], f"{len(redelivered)} deliveries of tasks already done"


@contextlib.contextmanager
def worker_timeout(stage: Stage, seconds: int) -> Iterator[None]:
    """The worker's timeout set to `seconds` for the block, put back after. The mapping invokes
    the SnapStart alias, so a change takes effect as after a deploy: a version published with
    it and the alias moved there."""
    lambda_client = stage.client("lambda")
    function = stage.worker_function

    def set_timeout(value: int) -> None:
        lambda_client.update_function_configuration(FunctionName=function, Timeout=value)
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function)
        snapstart.apply(lambda_client, function, stage.mapping_uuid)

    set_timeout(seconds)
    try:
        yield
    finally:
        set_timeout(WORKER_TIMEOUT_SECONDS)


def run_redrive_script(cloud: FaultCloud, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = cloud.settings
    env = {
        **os.environ,
        ENV_STATE_DIR: str(cfg.state_dir),
        ENV_VENVS_DIR: str(cfg.venvs_dir),
        ENV_PORT: str(cfg.port),
        ENV_PG_PORT: str(cfg.pg_port),
        ENV_PROXY_PORT: str(cfg.proxy_port),
    }
    script = str(PROJECT_ROOT / "scripts" / "redrive")
    return subprocess.run(
        [script, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_redrive_moves_dead_letters_back_once_their_cause_is_fixed(
    cloud: FaultCloud,
    stage: Stage,
    retry_runs: RetryRuns,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    # GIVEN tasks that outgrew the worker's timeout, failed for good on their first attempt
    # with the fix in their reason, and dead-lettered by the worker
    outcome = retry_runs.outcomes["unfit"]
    tasks = RETRY_RUNS["unfit"].count
    assert_every_task_final_once(outcome)
    assert len(outcome.by_status("failed")) == tasks
    assert all(row["attempts"] == 1 for row in outcome.rows)
    assert all("raise its timeout" in row["error"] for row in outcome.rows)
    # (the DLQ may hold other scenarios' messages: of failed tasks, which go, and of tasks
    # that are not failed, which a scenario that failed left and which stay)
    in_dlq_before = faults.dead_letter_task_ids(stage)
    statuses = faults.task_statuses(stage, in_dlq_before)
    movable = sorted(task_id for task_id in in_dlq_before if statuses.get(task_id) == "failed")
    staying = sum(n for task_id, n in in_dlq_before.items() if task_id not in movable)
    # scripts/redrive --dry-run counts them and moves nothing
    dry_run = run_redrive_script(cloud, "--stage", stage.name, "--dry-run")
    assert dry_run.returncode == 0, dry_run.stderr
    assert f"{len(movable)} would be redriven, {staying} left in the DLQ" in dry_run.stdout
    assert faults.dead_letter_task_ids(stage) == in_dlq_before

    # WHEN the cause is fixed (a longer timeout) and the dead-letter queue is redriven
    fixed = faults.begin("worker timeout raised to 10 s, DLQ redriven")
    prefix = outcome.report["idempotency_key_prefix"]
    with worker_timeout(stage, 10):
        result, _ = redrive_tool.run(cloud.settings, stage.name, None, dry_run=False)
        rows = wait_for(
            lambda: faults.run_rows(stage, prefix),
            lambda rows: all(row["status"] == "done" for row in rows),
            60,
            "the redriven tasks done",
        )
    fixed.end(redrive=result.summary())

    # THEN every failed task's message moved once, the others stayed; the unfit tasks ran
    # once more and are done; none is left in the DLQ; the integrity check still holds
    assert sorted(result.redriven) == movable, result.summary()
    assert sum(result.left.values()) == staying, result.summary()
    # at least one more attempt each (a deferral, when a batch's time ran short, is one too)
    assert all(row["attempts"] >= 2 and row["error"] is None for row in rows)
    assert not {row["id"] for row in rows} & set(faults.dead_letter_task_ids(stage))
    numbered = [(int(row["idempotency_key"].removeprefix(prefix)), row["id"]) for row in rows]
    again = check_integrity(numbered, [TaskRow.from_db(row) for row in rows], prefix)
    assert again.ok and again.rows == tasks, again.to_json()
    row = replace(outcome, rows=rows, window=fixed, dead_letters={}).figures("redrive")
    row["redrive"] = result.summary()
    figures.append(row)
    record_property("figures", row)
    print(f"\nredrive: {row}")


def test_the_worker_timeout_hit_mid_batch_still_ends_every_task_once(
    cloud: FaultCloud,
    stage: Stage,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    faults.stop_every_function_environment(cloud)  # only this run's environments
    since = datetime.now(UTC)
    # Batches of 10 x 1.5 s: three times what a 5 s invocation holds. And one environment
    # frozen past its timeout, so the timeout itself strikes in the middle of a batch.
    settings = burst_settings(
        count=40, task_type="sleep", payload_options={"sleep_ms": 1500}, batch=10, drain_seconds=90
    )

    outcome = burst_with_fault(
        cloud,
        stage,
        settings,
        lambda prefix: faults.freeze_busy_worker(cloud, stage, prefix, WORKER_TIMEOUT_SECONDS + 2),
        0.5,
    )

    record(figures, record_property, "worker timeout mid-batch", outcome)
    assert_every_task_final_once(outcome)
    lines = [str(m.get("message", "")) for m in log_messages(stage, since)]
    assert any("Task timed out after" in line for line in lines), "no invocation timed out"
    assert any(row["attempts"] >= 2 for row in outcome.rows)


def test_localstack_killed_and_brought_back_still_ends_every_accepted_task(
    cloud: FaultCloud,
    stage: Stage,
    figures: list[dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    # Sending outlasts `up` (about 10 s; the deploy follows): the burst reads the rows,
    # through the secret LocalStack serves, once it has sent everything.
    settings = burst_settings(
        profile="steady",
        rate=30,
        duration=25,
        count=750,
        task_type="sleep",
        payload_options={"sleep_ms": 300},
        batch=10,
        max_seconds=30,
        drain_seconds=75,
    )

    with faults.reconciling(stage) as reconciler_answers:
        outcome = burst_with_fault(
            cloud,
            stage,
            settings,
            lambda _: faults.restart_localstack(cloud, stage, VISIBILITY_TIMEOUT_SECONDS),
            3.0,
        )

    row = outcome.figures("LocalStack killed, up + deploy")
    row["reconciler"] = faults.reconciler_function(stage) or "none in the app"
    row["reconciler_invocations"] = len(reconciler_answers)
    figures.append(row)
    record_property("figures", row)
    print(f"\nLocalStack killed: {row}")
    assert outcome.window is not None and outcome.window.seconds < 60
    assert_every_task_final_once(outcome)
    assert_nothing_dead_lettered(outcome)


def test_the_stage_is_healthy_after_every_fault(stage: Stage) -> None:
    """Not a scenario: after all of the above (LocalStack restarted last), the stage answers."""
    response = stage.http.get(f"{stage.api}health", timeout=30)
    assert response.status_code == 200, response.text
