"""An execution environment as an OS process running AWS's runtime interface client.

These run real function processes (the runtimes `scripts/setup` builds) but no LocalStack.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud import procs
from localcloud_ext import runtimes
from localcloud_ext.environment import (
    EnvironmentStopped,
    FunctionSpec,
    InitFailed,
    ProcessEnvironment,
)
from localcloud_ext.pids import process_start_time

REPO = Path(__file__).resolve().parents[2]

HANDLER = """
import json, os, subprocess, sys, time

print("init output")

def handler(event, context):
    action = event.get("action")
    print(f"invoked {context.aws_request_id}")
    if action == "fail":
        raise ValueError("boom")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(3)
    if action == "shout":
        sys.stdout.write("x" * event["bytes"] + "\\n")
    if action == "child":
        child = subprocess.Popen(["sleep", "60"])
        return {"child": child.pid}
    return {
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "invoked_function_arn": context.invoked_function_arn,
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "handler": os.environ["_HANDLER"],
    }
"""

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


def runtime_interpreter() -> tuple[str, Path]:
    directory = runtimes.runtimes_dir() or REPO / ".localcloud" / "runtimes"
    available = runtimes.available_runtimes(directory)
    assert available, f"no Lambda runtimes under {directory}: run scripts/setup"
    return available[0], runtimes.interpreter_for(available[0], directory)


def make_environment(tmp_path: Path, source: str = HANDLER, timeout: int = 2) -> ProcessEnvironment:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "handler.py").write_text(textwrap.dedent(source))
    runtime, interpreter = runtime_interpreter()
    return ProcessEnvironment(
        FunctionSpec(
            environment_id=uuid.uuid4().hex,
            function_name="fn",
            version="$LATEST",
            runtime=runtime,
            handler="handler.handler",
            interpreter=interpreter,
            task_root=code,
            timeout_seconds=timeout,
            memory_size_mb=128,
            environment={"AWS_REGION": "us-east-1"},
            pids_dir=tmp_path / "pids",
        )
    )


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[ProcessEnvironment]:
    env = make_environment(tmp_path)
    env.start()
    yield env
    env.stop()


def invoke(
    env: ProcessEnvironment, event: dict[str, object]
) -> tuple[dict[str, object], bool, str]:
    outcome = env.invoke(str(uuid.uuid4()), json.dumps(event).encode(), ARN)
    return json.loads(outcome.payload), outcome.is_error, outcome.logs


def test_handler_gets_awss_context_and_environment(
    environment: ProcessEnvironment, tmp_path: Path
) -> None:
    result, is_error, _ = invoke(environment, {})

    assert not is_error
    assert result["function_name"] == "fn"
    assert result["memory_limit_in_mb"] == "128"
    assert result["invoked_function_arn"] == ARN
    assert 0 < int(result["remaining_ms"]) <= 2000
    assert result["task_root"] == "/var/task"
    assert result["handler"] == "handler.handler"


def test_warm_invokes_reuse_the_process_and_only_the_first_reports_init(
    environment: ProcessEnvironment,
) -> None:
    first, _, first_logs = invoke(environment, {})
    second, _, second_logs = invoke(environment, {})

    assert first["pid"] == second["pid"] == environment.pid
    assert first["request_id"] != second["request_id"]
    assert "init output" in first_logs and "Init Duration:" in first_logs
    assert "init output" not in second_logs and "Init Duration:" not in second_logs


def test_logs_frame_the_functions_output_with_start_end_report(
    environment: ProcessEnvironment,
) -> None:
    outcome = environment.invoke("req-1", b"{}", ARN)
    lines = outcome.logs.splitlines()

    assert lines[0].startswith("INIT_START Runtime Version: python:")
    start = lines.index("START RequestId: req-1 Version: $LATEST")
    assert lines[start + 1] == "invoked req-1"
    assert lines[start + 2] == "END RequestId: req-1"
    assert lines[start + 3].startswith("REPORT RequestId: req-1\tDuration: ")
    assert "Memory Size: 128 MB" in lines[start + 3]
    assert "Max Memory Used: " in lines[start + 3]


def test_unhandled_exception_comes_back_in_lambdas_error_shape(
    environment: ProcessEnvironment,
) -> None:
    result, is_error, logs = invoke(environment, {"action": "fail"})

    assert is_error
    assert result["errorType"] == "ValueError"
    assert result["errorMessage"] == "boom"
    assert any("raise ValueError" in frame for frame in result["stackTrace"])
    assert "[ERROR] ValueError: boom" in logs
    # The environment survives a handled error.
    assert invoke(environment, {})[1] is False


def test_timeout_ends_the_process_and_the_next_invoke_starts_a_new_one(
    environment: ProcessEnvironment,
) -> None:
    before = invoke(environment, {})[0]["pid"]
    started = time.monotonic()

    result, is_error, logs = invoke(environment, {"action": "sleep", "seconds": 30})

    assert is_error
    assert time.monotonic() - started < 10
    assert result["errorType"] == "Sandbox.Timedout"
    assert result["errorMessage"].endswith("Task timed out after 2.00 seconds")
    assert "Task timed out after 2.00 seconds" in logs
    assert "Status: timeout" in logs
    after, is_error, logs = invoke(environment, {})
    assert not is_error
    assert after["pid"] != before
    assert "Init Duration:" in logs


def test_runtime_exit_is_reported_and_the_environment_recovers(
    environment: ProcessEnvironment,
) -> None:
    result, is_error, logs = invoke(environment, {"action": "exit"})

    assert is_error
    assert result["errorType"] == "Runtime.ExitError"
    assert result["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert invoke(environment, {})[1] is False


def test_large_output_does_not_block_the_function(environment: ProcessEnvironment) -> None:
    _, is_error, logs = invoke(environment, {"action": "shout", "bytes": 1_000_000})

    assert not is_error
    assert "x" * 1_000_000 in logs


def test_init_error_is_reported_not_hung_on(tmp_path: Path) -> None:
    env = make_environment(tmp_path, "import nonexistent_module_xyz\n")
    started = time.monotonic()

    with pytest.raises(InitFailed) as failure:
        env.start()

    assert time.monotonic() - started < 10
    error = json.loads(failure.value.payload)
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "nonexistent_module_xyz" in error["errorMessage"]
    assert "INIT_REPORT Init Duration:" in failure.value.logs
    assert env.pid is not None and not procs.is_alive(env.pid)


def test_stop_ends_the_whole_process_group_and_its_pid_record(tmp_path: Path) -> None:
    env = make_environment(tmp_path)
    env.start()
    child = int(invoke(env, {"action": "child"})[0]["child"])
    pid = env.pid
    assert pid is not None
    record = tmp_path / "pids" / f"{env.spec.environment_id}.pid"
    assert record.read_text().split()[0] == str(pid)

    env.stop()

    procs.poll(lambda: not (procs.is_alive(pid) or procs.is_alive(child) or record.exists()), 5)
    assert not procs.is_alive(pid)
    assert not procs.is_alive(child)
    assert not record.exists()


def test_pid_record_matches_the_running_process(
    environment: ProcessEnvironment, tmp_path: Path
) -> None:
    pid = environment.pid
    assert pid is not None
    record = tmp_path / "pids" / f"{environment.spec.environment_id}.pid"

    # The function's name too: a fork's /proc/PID/environ shows the runtime template's variables.
    assert record.read_text().split() == [str(pid), process_start_time(pid), "fn"]
    assert os.getpgid(pid) == pid


def test_stop_during_a_slow_init_ends_the_start_and_the_process(tmp_path: Path) -> None:
    env = make_environment(tmp_path, "import time\ntime.sleep(60)\n")
    outcome: list[BaseException] = []

    def start() -> None:
        try:
            env.start()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome.append(error)

    starter = threading.Thread(target=start)
    starter.start()
    assert procs.poll(lambda: env.pid is not None, 10)
    pid = env.pid
    assert pid is not None

    env.stop()
    starter.join(timeout=10)

    assert not starter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], EnvironmentStopped)
    assert procs.poll(lambda: not procs.is_alive(pid), 10)
