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
    MAX_RESPONSE_BYTES,
    EnvironmentStopped,
    FunctionSpec,
    InitFailed,
    ProcessEnvironment,
)
from localcloud_ext.log_shipper import MAX_LINE_BYTES, LogEvent
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
    if action == "pause":
        print("before the pause")
        time.sleep(event["seconds"])
        print("after the pause")
    if action == "respond":
        return "x" * event["characters"]
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


class RecordingSink:
    """The environment's log stream, as a list."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []
        self._lock = threading.Lock()

    def write(self, event: LogEvent) -> None:
        with self._lock:
            self.events.append(event)

    def messages(self) -> list[str]:
        with self._lock:
            return [event.message for event in self.events]

    def event(self, message_start: str) -> LogEvent:
        with self._lock:
            return next(e for e in self.events if e.message.startswith(message_start))


def make_environment(
    tmp_path: Path, source: str = HANDLER, timeout: int = 2, sink: RecordingSink | None = None
) -> ProcessEnvironment:
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
        ),
        log_sink=sink,
    )


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def environment(tmp_path: Path, sink: RecordingSink) -> Iterator[ProcessEnvironment]:
    env = make_environment(tmp_path, sink=sink)
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
    assert "Init Duration:" in first_logs
    assert "Init Duration:" not in second_logs


def test_init_is_logged_at_init_time_before_the_first_start(
    environment: ProcessEnvironment, sink: RecordingSink
) -> None:
    # GIVEN an environment that started (its init printed "init output")
    assert procs.poll(lambda: "init output" in sink.messages(), 10)
    # WHEN it is invoked
    invoke(environment, {})
    # THEN INIT_START and the init's output came first, each stamped before START
    messages = sink.messages()
    assert messages[0].startswith("INIT_START Runtime Version: python:")
    assert messages.index("init output") < next(
        i for i, m in enumerate(messages) if m.startswith("START RequestId:")
    )
    assert sink.event("INIT_START").timestamp_ms <= sink.event("init output").timestamp_ms
    assert sink.event("init output").timestamp_ms <= sink.event("START").timestamp_ms


def test_logs_frame_the_functions_output_with_start_end_report(
    environment: ProcessEnvironment,
) -> None:
    outcome = environment.invoke("req-1", b"{}", ARN)
    lines = outcome.logs.splitlines()

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


def test_large_output_does_not_block_the_function(
    environment: ProcessEnvironment, sink: RecordingSink
) -> None:
    _, is_error, logs = invoke(environment, {"action": "shout", "bytes": 1_000_000})

    assert not is_error
    shouted = [m for m in sink.messages() if set(m) == {"x"}]
    # A line longer than one CloudWatch event goes out in pieces that each fit one.
    assert "".join(shouted) == "x" * 1_000_000
    assert max(len(m) for m in shouted) <= MAX_LINE_BYTES
    assert logs.splitlines()[-1].startswith("REPORT RequestId:")


def test_log_result_is_the_invocations_last_4_kb_from_start_to_report(
    environment: ProcessEnvironment,
) -> None:
    """AWS: LogResult holds the last 4 KB of the invocation's log, START to REPORT; the init's
    INIT_START and output come before START and are not in it."""
    first = environment.invoke("req-1", b"{}", ARN).logs
    long = environment.invoke(
        "req-2", json.dumps({"action": "shout", "bytes": 10_000}).encode(), ARN
    )

    assert first.startswith("START RequestId: req-1 Version: $LATEST\n")
    assert "INIT_START" not in first and "init output" not in first
    assert first.splitlines()[-1].startswith("REPORT RequestId: req-1\t")
    assert "Init Duration:" in first.splitlines()[-1]
    tail = long.logs.encode()[-4096:].decode()  # what LocalStack's invoke puts in LogResult
    assert tail.endswith("\t\n") and "REPORT RequestId: req-2" in tail and "x" * 1000 in tail


def test_each_line_carries_the_time_it_was_written(tmp_path: Path, sink: RecordingSink) -> None:
    """AWS: each log event carries the time its line was written; START and END carry theirs,
    so START..END spans the REPORT's Duration."""
    environment = make_environment(tmp_path, timeout=10, sink=sink)
    environment.start()
    try:
        outcome = environment.invoke(
            "req-p", json.dumps({"action": "pause", "seconds": 2}).encode(), ARN
        )
    finally:
        environment.stop()

    assert not outcome.is_error
    start, end = sink.event("START RequestId: req-p"), sink.event("END RequestId: req-p")
    before, after = sink.event("before the pause"), sink.event("after the pause")
    report = sink.event("REPORT RequestId: req-p")
    duration_ms = float(report.message.split("Duration: ")[1].split(" ms")[0])
    assert start.timestamp_ms <= before.timestamp_ms <= after.timestamp_ms <= end.timestamp_ms
    assert after.timestamp_ms - before.timestamp_ms >= 1500  # slept 2 s between the two
    assert abs((end.timestamp_ms - start.timestamp_ms) - duration_ms) <= 1
    assert report.timestamp_ms == end.timestamp_ms
    assert duration_ms >= 2000


def test_a_response_at_the_limit_comes_back_whole(environment: ProcessEnvironment) -> None:
    characters = MAX_RESPONSE_BYTES - 2  # a JSON string: its quotes make the limit exactly
    outcome = environment.invoke(
        "r", json.dumps({"action": "respond", "characters": characters}).encode(), ARN
    )

    assert not outcome.is_error
    assert len(outcome.payload) == MAX_RESPONSE_BYTES


def test_a_response_over_6_mb_is_function_response_size_too_large(
    environment: ProcessEnvironment,
) -> None:
    """AWS: a response over 6,291,556 bytes is refused: FunctionError Unhandled with
    Function.ResponseSizeTooLarge; its runtime exits, so the next invoke starts a new process."""
    pid = environment.pid
    characters = MAX_RESPONSE_BYTES - 1
    result, is_error, _ = invoke(environment, {"action": "respond", "characters": characters})

    assert is_error
    assert result == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": (
            "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
        ),
    }
    after, is_error, logs = invoke(environment, {})
    assert not is_error and after["pid"] != pid
    assert "Init Duration:" in logs


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
