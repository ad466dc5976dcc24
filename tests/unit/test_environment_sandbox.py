"""The pure parts of an execution environment's isolation: what the runtime template is asked for,
SnapStart's variables and REPORT fields, the Runtime API's request parsing, the shared timers,
and the Pss of running environments read from a fake /proc."""

from __future__ import annotations

from pathlib import Path

from localcloud.environments import function_processes, memory
from localcloud_ext import report, snapstart
from localcloud_ext.environment import RESOURCE_LIMITS, FunctionSpec
from localcloud_ext.runtime_api import EventKind, InvocationRequest, _Connection, _handle, _State
from localcloud_ext.timers import Scheduler, SharedTimer


def spec(tmp_path: Path, **environment: str) -> FunctionSpec:
    return FunctionSpec(
        environment_id="env1",
        function_name="fn",
        version="1",
        runtime="python3.12",
        handler="app.handler",
        interpreter=tmp_path / "runtimes" / "python3.12" / "bin" / "python",
        task_root=tmp_path / "code",
        timeout_seconds=3,
        memory_size_mb=256,
        environment={"AWS_REGION": "us-east-1", **environment},
    )


# --- the launch request ------------------------------------------------------------------


def test_in_a_mount_namespace_the_code_is_at_var_task_and_layers_at_opt(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    function = FunctionSpec(**{**spec(tmp_path).__dict__, "layer_roots": (layer,)})

    request = function.launch_request("127.0.0.1:9001", True, None)

    assert request["env"]["LAMBDA_TASK_ROOT"] == request["cwd"] == "/var/task"
    assert request["sys_path"] == ["/var/task", "/opt/python"]
    assert request["host_task_root"] == str(tmp_path / "code")
    assert request["layers"] == [str(layer)]
    assert request["mount_namespace"] is True


def test_without_a_mount_namespace_the_code_stays_at_its_host_path(tmp_path: Path) -> None:
    request = spec(tmp_path).launch_request("127.0.0.1:9001", False, None)

    assert request["env"]["LAMBDA_TASK_ROOT"] == request["cwd"] == str(tmp_path / "code")
    assert request["mount_namespace"] is False


def test_every_environment_gets_lambdas_resource_limits(tmp_path: Path) -> None:
    request = spec(tmp_path).launch_request("127.0.0.1:9001", True, None)

    assert request["rlimits"] == [["RLIMIT_NOFILE", 1024, 1024], ["RLIMIT_CORE", 0, 0]]
    assert [list(limit) for limit in RESOURCE_LIMITS] == request["rlimits"]
    assert "exec" not in request


def test_an_exec_wrapper_runs_with_the_runtimes_command_line(tmp_path: Path) -> None:
    function = spec(tmp_path, AWS_LAMBDA_EXEC_WRAPPER="/var/task/wrap.sh")

    request = function.launch_request("127.0.0.1:9001", True, None)

    python = str(tmp_path / "runtimes" / "python3.12" / "bin" / "python")
    assert request["exec"] == ["/var/task/wrap.sh", python, "-m", "awslambdaric", "app.handler"]


# --- SnapStart ----------------------------------------------------------------------------


def test_a_snapstart_environment_has_no_log_names_and_says_snap_start() -> None:
    env = snapstart.environment_of(
        {
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
            "AWS_LAMBDA_LOG_STREAM_NAME": "stream",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "MY_SETTING": "x",
        }
    )

    assert env == {"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start", "MY_SETTING": "x"}


def test_a_restored_environments_report_shows_restore_not_init_duration() -> None:
    restore = report.RestoreReport(restore_duration_ms=31.42, billed_restore_duration_ms=20.1)
    line = report.InvocationReport("req", 5.0, 128, 30, restore=restore).line()

    assert "Restore Duration: 31.42 ms\tBilled Restore Duration: 21 ms" in line
    assert "Init Duration" not in line
    assert restore.line() == "RESTORE_REPORT Restore Duration: 31.42 ms"
    assert report.restore_start_line("python3.12").startswith("RESTORE_START Runtime Version:")


def test_an_out_of_memory_exit_is_reported_with_its_error_type() -> None:
    line = report.InvocationReport(
        "req", 50.0, 128, 128, status="error", error_type="Runtime.OutOfMemory"
    ).line()

    assert line.endswith("Status: error\tError Type: Runtime.OutOfMemory\t")


# --- the Runtime API's requests (no sockets: the connection's buffers only) ---------------


class NoSocket:
    pass


def connection() -> _Connection:
    return _Connection(NoSocket(), _State())  # type: ignore[arg-type]


def test_a_request_is_parsed_once_its_body_arrived() -> None:
    conn = connection()
    conn.inbox += b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n"
    conn.inbox += b"Content-Length: 10\r\n\r\n12345"

    assert conn.next_request() is None
    conn.inbox += b"67890"
    method, path, headers, body = conn.next_request() or ("", "", {}, b"")

    assert (method, path, body) == (
        "POST",
        "/2018-06-01/runtime/invocation/r1/response",
        b"1234567890",
    )
    assert headers["content-length"] == "10"


def test_a_client_that_expects_100_continue_gets_it_before_sending_its_body() -> None:
    conn = connection()
    conn.inbox += b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"

    assert conn.next_request() is None
    assert bytes(conn.outbox) == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_next_marks_ready_once_and_waits_for_an_invocation() -> None:
    conn = connection()
    state = conn.state

    _handle(conn, "GET", "/2018-06-01/runtime/invocation/next", {}, b"")

    assert state.events.get_nowait().kind is EventKind.READY
    assert state.waiting is conn and not conn.outbox
    state.invocations.append(InvocationRequest("r1", b"{}", 1, "arn"))
    from localcloud_ext.runtime_api import _serve_waiting

    _serve_waiting(state)
    assert bytes(conn.outbox).startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Lambda-Runtime-Aws-Request-Id: r1\r\n" in bytes(conn.outbox)
    _handle(conn, "GET", "/2018-06-01/runtime/invocation/next", {}, b"")
    assert state.events.empty()  # ready only once


def test_results_and_restore_errors_become_events() -> None:
    conn = connection()

    _handle(conn, "POST", "/2018-06-01/runtime/invocation/r1/response", {}, b"{}")
    _handle(
        conn,
        "POST",
        "/2018-06-01/runtime/restore/error",
        {"lambda-runtime-function-error-type": "Runtime.AfterRestoreError"},
        b'{"errorType": "E"}',
    )

    response = conn.state.events.get_nowait()
    restore_error = conn.state.events.get_nowait()
    assert (response.kind, response.request_id) == (EventKind.RESPONSE, "r1")
    assert restore_error.kind is EventKind.RESTORE_ERROR
    assert restore_error.error_type == "Runtime.AfterRestoreError"


# --- shared timers ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_shared_timers_fire_when_due_and_not_when_cancelled() -> None:
    clock, fired = Clock(), []
    scheduler = Scheduler(clock=clock, run=lambda function: function())
    keepalive = SharedTimer(600, fired.append, args=["keepalive"], scheduler=scheduler)
    startup = SharedTimer(20, fired.append, args=["startup"], scheduler=scheduler)
    scheduler._thread = object()  # type: ignore[assignment]  # drive it by hand, no thread
    keepalive.start()
    startup.start()

    clock.now = 19
    assert scheduler.run_due() == 1
    startup.cancel()
    clock.now = 600
    scheduler.run_due()

    assert fired == ["keepalive"]
    assert scheduler.pending() == 0


# --- memory of running environments -------------------------------------------------------


def fake_process(proc: Path, pid: int, pss_kb: int, start_time: int = 77) -> None:
    (proc / str(pid)).mkdir(parents=True)
    fields = ["S", "1", str(pid)] + ["0"] * 16 + [str(start_time)]
    (proc / str(pid) / "stat").write_text(f"{pid} (python) {' '.join(fields)}\n")
    (proc / str(pid) / "smaps_rollup").write_text(f"Rss: 99999 kB\nPss: {pss_kb} kB\n")


def test_memory_counts_environments_and_what_they_fork_from_apart(tmp_path: Path) -> None:
    proc, pids = tmp_path / "proc", tmp_path / "run" / "functions"
    pids.mkdir(parents=True)
    for pid, name, pss in (
        (101, "env-a", 3000),
        (102, "env-b", 5000),
        (103, "template-python3.12", 40000),
    ):
        fake_process(proc, pid, pss)
        (pids / f"{name}.pid").write_text(f"{pid} 77\n")
    (pids / "env-gone.pid").write_text("104 77\n")  # no such process
    fake_process(proc, 105, 1000, start_time=12)
    (pids / "env-reused.pid").write_text("105 77\n")  # the PID now names another process

    seen = memory(pids, proc)

    assert seen.environments == 2
    assert seen.environments_pss_bytes == 8000 * 1024
    assert seen.pss_per_environment_bytes == 4000 * 1024
    assert (seen.support_processes, seen.support_pss_bytes) == (1, 40000 * 1024)


def test_function_processes_are_named_by_their_records(tmp_path: Path) -> None:
    proc, pids = tmp_path / "proc", tmp_path / "run" / "functions"
    pids.mkdir(parents=True)
    fake_process(proc, 201, 1000)
    fake_process(proc, 202, 1000)
    (pids / "env-a.pid").write_text("201 77 worker\n")
    (pids / "template-python3.12.pid").write_text("202 77\n")  # no function: not listed

    assert function_processes(pids, proc) == {201: "worker"}
