"""The fault suite's local cloud and its fault injectors.

The suite kills LocalStack and stops PostgreSQL, so it runs on a local cloud of its own (its own
state dir and ports, the venvs of the normal one): nothing it does reaches the other tests. Every
process it signals is one this local cloud recorded, by PID and start time (localcloud.procs):
function environments from `<state>/run/functions/*.pid` (written by the extension's executor),
LocalStack from its pid file, PostgreSQL through its own `pg_ctl`.

Each injector is a small function or context manager that returns (or yields) a FaultWindow: when
the fault began and when the system was whole again, so a scenario can measure its recovery."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from chalicelib.model import TaskMessage
from deployment import database, pipeline
from deployment.chalice_stage import function_name
from localcloud import control, environments, procs
from localcloud.postgres import PostgresServer
from localcloud.settings import (
    ENV_PG_PORT,
    ENV_PORT,
    ENV_PROXY_PORT,
    ENV_STATE_DIR,
    ENV_VENVS_DIR,
    Settings,
)
from tests.polling import wait_for
from tests.stages import Stage

logger = logging.getLogger(__name__)

# Far from the ports of the other local clouds on this machine (4566/15432 the user's, 4577/4588
# and 15477/15488 other sessions'): the suite may run beside them.
LOCALSTACK_PORTS = range(4600, 4700)
POSTGRES_PORTS = range(15600, 15700)
PROXY_PORTS = range(16600, 16700)
RECONCILER = "reconciler"  # the scheduled function's name in app.py, once it exists


@dataclass
class FaultCloud:
    """A local cloud of the fault suite's own; `running` is its endpoints.json, kept current
    across a restart of LocalStack (the secret's ARN changes with it)."""

    settings: Settings
    running: dict[str, Any]


@dataclass
class FaultWindow:
    """One injected fault: what, when it began, when it ended (the system whole again)."""

    what: str
    started_at: datetime
    ended_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def end(self, **details: Any) -> FaultWindow:
        self.ended_at = datetime.now(UTC)
        self.details.update(details)
        return self

    @property
    def seconds(self) -> float:
        assert self.ended_at is not None, f"{self.what} has not ended"
        return (self.ended_at - self.started_at).total_seconds()


def begin(what: str) -> FaultWindow:
    return FaultWindow(what, datetime.now(UTC))


# --- the local cloud --------------------------------------------------------------------------


def free_port(candidates: range, taken: set[int]) -> int:
    """A port of `candidates` nothing listens on, tried in random order (two suites started at
    once rarely pick the same)."""
    ports = [p for p in candidates if p not in taken]
    random.shuffle(ports)
    for port in ports:
        if procs.port_is_free("127.0.0.1", port):
            return port
    raise RuntimeError(f"no free port in {candidates.start}-{candidates.stop - 1}")


def fault_cloud_settings(state_dir: Path, venvs_dir: Path) -> Settings:
    localstack_port = free_port(LOCALSTACK_PORTS, set())
    return Settings.from_env(
        {
            ENV_STATE_DIR: str(state_dir),
            ENV_VENVS_DIR: str(venvs_dir),
            ENV_PORT: str(localstack_port),
            ENV_PG_PORT: str(free_port(POSTGRES_PORTS, {localstack_port})),
            ENV_PROXY_PORT: str(free_port(PROXY_PORTS, set())),
        }
    )


@contextlib.contextmanager
def fault_cloud(venvs_dir: Path) -> Iterator[FaultCloud]:
    """Start a local cloud in a new state dir; stop everything it started at the end. The state
    dir stays (its logs, the reports, the figures), minus the databases' and LocalStack's
    files."""
    state_dir = Path(tempfile.mkdtemp(prefix="faultcloud-"))
    state_dir.chmod(0o755)  # mkdtemp makes it 0700; the postgres user must reach its data
    cfg = fault_cloud_settings(state_dir, venvs_dir)
    logger.info("fault cloud: %s, LocalStack :%d, PostgreSQL :%d", state_dir, cfg.port, cfg.pg_port)
    try:
        result = control.up(cfg)
        yield FaultCloud(cfg, result.endpoints)
    finally:
        outcome = control.down(cfg)
        for bulky in (cfg.pg_dir, cfg.localstack_root, cfg.state_dir / "tmp"):
            shutil.rmtree(bulky, ignore_errors=True)
        assert not outcome.problems, outcome.problems


# --- the worker's execution environments -------------------------------------------------------


def process_function_name(pid: int) -> str | None:
    """AWS_LAMBDA_FUNCTION_NAME in the environment of process `pid` (the executor sets it)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in raw.split(b"\0"):
        name, _, value = entry.partition(b"=")
        if name == b"AWS_LAMBDA_FUNCTION_NAME":
            return value.decode()
    return None


def environments_of(cfg: Settings, function: str) -> list[procs.ProcessRecord]:
    """The live execution environments of `function`, from this local cloud's pid records (their
    function name; an exec'd process's own environment otherwise)."""
    named = environments.function_processes(cfg.functions_pids_dir)
    return [
        record
        for _, record in control.function_records(cfg)
        if record is not None
        and record.is_running()
        and (named.get(record.pid) or process_function_name(record.pid)) == function
    ]


def running_batches(conninfo: str, key_prefix: str) -> int:
    """Invocations running tasks of the run with `key_prefix` (rows `running`, by request id)."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(DISTINCT worker_request_id) FROM tasks "
            "WHERE status = 'running' AND starts_with(idempotency_key, %s)",
            (key_prefix,),
        ).fetchone()
    return int(row[0]) if row else 0


def sleeping_in_a_task(record: procs.ProcessRecord) -> bool:
    """The environment's process sleeps in the kernel's nanosleep: inside a `sleep` task, so in
    the middle of an invocation (an idle environment waits on its Runtime API socket instead)."""
    try:
        return "nanosleep" in Path(f"/proc/{record.pid}/wchan").read_text()
    except OSError:
        return False


def busy_worker(cloud: FaultCloud, stage: Stage, key_prefix: str) -> procs.ProcessRecord:
    """A worker environment in the middle of a batch of the run (of `sleep` tasks). The executor
    does not say which environment runs which invocation; one asleep in a task is running one.
    (Waiting until as many invocations ran as there were environments missed: an environment
    kept warm beside them made that moment never come.)"""
    conninfo = database.conninfo(cloud.running)

    def look() -> list[procs.ProcessRecord]:
        if not running_batches(conninfo, key_prefix):
            return []
        return [
            r
            for r in environments_of(cloud.settings, stage.worker_function)
            if sleeping_in_a_task(r)
        ]

    sleeping = wait_for(look, bool, 30, "a worker environment asleep in a task of the run")
    return sleeping[0]


def kill_busy_worker(cloud: FaultCloud, stage: Stage, key_prefix: str) -> FaultWindow:
    """SIGKILL one worker execution environment while it runs a batch: its invocation fails
    whole, its messages come back after the visibility timeout."""
    record = busy_worker(cloud, stage, key_prefix)
    window = begin("worker environment SIGKILLed mid-batch")
    procs.kill_group(record)
    procs.wait_gone(record, 5.0)
    return window.end(pid=record.pid)


def freeze_busy_worker(
    cloud: FaultCloud, stage: Stage, key_prefix: str, seconds: float
) -> FaultWindow:
    """SIGSTOP one busy worker environment for `seconds` (longer than its timeout): a stalled
    function, as a hung call or a long pause would leave it. The executor's deadline then ends
    the invocation as a timeout; SIGCONT is sent only if the process is still ours and alive."""
    record = busy_worker(cloud, stage, key_prefix)
    window = begin("worker environment frozen past its timeout")
    os.killpg(record.pid, signal.SIGSTOP)
    time.sleep(seconds)  # the fault's own duration
    if record.is_running():
        os.killpg(record.pid, signal.SIGCONT)
    return window.end(pid=record.pid, frozen_seconds=seconds)


def stop_every_function_environment(cloud: FaultCloud) -> FaultWindow:
    """SIGKILL every function environment the local cloud recorded (API and worker alike)."""
    window = begin("every function environment stopped")
    messages = control.stop_functions(cloud.settings)
    return window.end(stopped=sum("killed" in m for m in messages))


@contextlib.contextmanager
def reserved_concurrency(stage: Stage, function: str, limit: int) -> Iterator[None]:
    """PutFunctionConcurrency for the block's duration; removed after, whatever happens."""
    lambda_client = stage.client("lambda")
    lambda_client.put_function_concurrency(
        FunctionName=function, ReservedConcurrentExecutions=limit
    )
    try:
        yield
    finally:
        lambda_client.delete_function_concurrency(FunctionName=function)


@contextlib.contextmanager
def cold_start_storm(
    cloud: FaultCloud, stage: Stage, maximum_concurrency: int
) -> Iterator[FaultWindow]:
    """Every environment stopped and the trigger's MaximumConcurrency raised: the next burst
    starts that many workers (and the API's) cold at once. The trigger is put back after."""
    before = stage.client("lambda").get_event_source_mapping(UUID=stage.mapping_uuid)
    previous = before.get("ScalingConfig", {}).get("MaximumConcurrency")
    window = stop_every_function_environment(cloud)
    stage.update_mapping(ScalingConfig={"MaximumConcurrency": maximum_concurrency})
    window.what = (
        f"cold-start storm: all environments stopped, MaximumConcurrency {maximum_concurrency}"
    )
    try:
        yield window
    finally:
        if previous is not None:
            stage.update_mapping(ScalingConfig={"MaximumConcurrency": previous})


# --- PostgreSQL -----------------------------------------------------------------------------


def stop_postgres_for(cloud: FaultCloud, seconds: float) -> FaultWindow:
    """Stop PostgreSQL (pg_ctl stop -m fast: connections are cut), wait, start it again."""
    server = PostgresServer(cloud.settings)
    window = begin(f"PostgreSQL stopped for {seconds:.0f} s")
    server.stop(procs.read_pidfile(cloud.settings.pg_pidfile))
    time.sleep(seconds)  # the outage's own duration
    server.start()
    wait_for(server.is_ready, bool, 30, "PostgreSQL ready again")
    return window.end()


# --- LocalStack -----------------------------------------------------------------------------


def crash_localstack(cloud: FaultCloud) -> FaultWindow:
    """SIGKILL LocalStack's process group, as a crash would: no shutdown, queues gone."""
    record = procs.read_pidfile(cloud.settings.localstack_pidfile)
    assert record is not None and record.is_running(), "the fault cloud's LocalStack is not up"
    window = begin("LocalStack killed (SIGKILL)")
    procs.kill_group(record)
    procs.wait_gone(record, 10.0)
    with contextlib.suppress(ChildProcessError):  # `up` started it from this process: reap it
        os.waitpid(record.pid, os.WNOHANG)
    window.details["pid"] = record.pid
    return window


def bring_back(cloud: FaultCloud, stage: Stage, visibility_timeout_seconds: int) -> None:
    """`scripts/localcloud up` + `scripts/deploy` of the same stage, in-process: a fresh
    LocalStack (the old one's function processes are ended by `up`), the stage redeployed."""
    result = control.up(cloud.settings)
    cloud.running.clear()
    cloud.running.update(result.endpoints)
    stage.running.clear()
    stage.running.update(result.endpoints)
    assert stage.project is not None, "the stage was not deployed by tests.stages.deployed_stage"
    # What Chalice recorded describes resources of the LocalStack that died.
    (stage.project / ".chalice" / "deployed" / f"{stage.name}.json").unlink(missing_ok=True)
    stage.deployment = pipeline.deploy(
        cloud.settings,
        stage.project,
        stage.name,
        visibility_timeout_seconds=visibility_timeout_seconds,
        record=False,
    )


def restart_localstack(
    cloud: FaultCloud, stage: Stage, visibility_timeout_seconds: int
) -> FaultWindow:
    window = crash_localstack(cloud)
    bring_back(cloud, stage, visibility_timeout_seconds)
    return window.end()


def reconciler_function(stage: Stage) -> str | None:
    """The stage's scheduled reconciler, when the app has one."""
    assert stage.project is not None
    name = function_name(stage.project, stage.name, RECONCILER)
    return name if name in stage.deployment.deployed.functions else None


@contextlib.contextmanager
def reconciling(stage: Stage, every_seconds: float = 5.0) -> Iterator[list[str]]:
    """Invoke the stage's reconciler every few seconds while the block runs, rather than wait
    for its schedule; yields the answers (empty when the app has no reconciler)."""
    answers: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_seconds):
            function = reconciler_function(stage)
            if function is None:
                continue
            with contextlib.suppress(Exception):  # a failed invoke shows in the drain
                reply = stage.client("lambda").invoke(FunctionName=function, Payload=b"{}")
                answers.append(reply["Payload"].read().decode(errors="replace"))

    thread = threading.Thread(target=loop, name="reconciler", daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=60)


# --- running a fault beside a burst ------------------------------------------------------------


class FaultThread:
    """Runs an injector on a thread of its own (the burst holds the main one), `after_seconds`
    after start; join() hands back its window, or raises what it raised."""

    def __init__(self, inject: Callable[[], FaultWindow], after_seconds: float = 0.0) -> None:
        self._inject = inject
        self._after = after_seconds
        self._window: FaultWindow | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault", daemon=True)

    def _run(self) -> None:
        try:
            time.sleep(self._after)  # when, in the burst, the fault strikes
            self._window = self._inject()
        except BaseException as e:  # pytest.fail raises outside Exception
            self._error = e

    def start(self) -> FaultThread:
        self._thread.start()
        return self

    def join(self, timeout: float = 300) -> FaultWindow:
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        assert self._window is not None, "the fault did not finish in time"
        return self._window


# --- what is left: the dead-letter queue, the logs ---------------------------------------------


def dead_letter_task_ids(stage: Stage) -> Counter[str]:
    """Task id -> messages of it in the dead-letter queue (more than one is a duplicate). Every
    message received is made visible again, for the next reader."""
    sqs = stage.client("sqs")
    seen: Counter[str] = Counter()
    receipts: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=stage.dead_letter_queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=30,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            receipts.append(message["ReceiptHandle"])
            with contextlib.suppress(Exception):  # not a task message: not a task's
                seen[str(TaskMessage.parse(message["Body"], None).task_id)] += 1
    for start in range(0, len(receipts), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(receipts[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=stage.dead_letter_queue_url, Entries=entries)
    return seen


def run_rows(stage: Stage, key_prefix: str) -> list[dict[str, Any]]:
    """The rows of the burst run whose idempotency keys start with `key_prefix`."""
    with psycopg.connect(
        database.conninfo(stage.running), autocommit=True, row_factory=dict_row
    ) as connection:
        return connection.execute(
            "SELECT id::text, status, attempts, error, idempotency_key, accepted_at, started_at, "
            "finished_at, worker_request_id FROM tasks WHERE starts_with(idempotency_key, %s)",
            (key_prefix,),
        ).fetchall()


def task_statuses(stage: Stage, task_ids: Iterable[str]) -> dict[str, str]:
    """Task id -> its row's status, for the ids that have a row."""
    with psycopg.connect(database.conninfo(stage.running), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT id::text, status FROM tasks WHERE id = ANY(%s::uuid[])", (list(task_ids),)
        ).fetchall()
    return {task_id: status for task_id, status in rows}


def function_log_messages(stage: Stage, function: str, since: datetime) -> list[str]:
    """Every log line of `function` since `since`, from CloudWatch Logs (the executor ships
    each invocation's output there, between START and REPORT)."""
    logs = stage.client("logs")
    paginator = logs.get_paginator("filter_log_events")
    start_ms = int(since.timestamp() * 1000)
    try:
        pages = paginator.paginate(logGroupName=f"/aws/lambda/{function}", startTime=start_ms)
        return [event["message"] for page in pages for event in page.get("events", [])]
    except logs.exceptions.ResourceNotFoundException:
        return []
