"""An execution environment as Lambda isolates it: its code at /var/task, the exec wrapper, its
resource limits, MemorySize, and SnapStart's snapshot and restores.

These run real function processes (the runtimes `scripts/setup` builds, forked from the runtime
template) but no LocalStack. The cgroup tests need the cgroup v1 memory and pids hierarchies
writable (root); elsewhere they are skipped and say why.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud import procs
from localcloud_ext import runtimes, snapstart
from localcloud_ext.environment import FunctionSpec, InitFailed, ProcessEnvironment

REPO = Path(__file__).resolve().parents[2]
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
CGROUP_V1 = Path("/sys/fs/cgroup")


def interpreter(runtime: str) -> Path:
    directory = runtimes.runtimes_dir() or REPO / ".localcloud" / "runtimes"
    if runtime not in runtimes.available_runtimes(directory):
        pytest.skip(f"no {runtime} runtime under {directory}: run scripts/setup")
    return runtimes.interpreter_for(runtime, directory)


def function_spec(
    tmp_path: Path,
    source: str,
    runtime: str = "python3.12",
    memory_mb: int = 128,
    environment: dict[str, str] | None = None,
    cgroup_parents: tuple[Path, Path] | None = None,
    version: str = "$LATEST",
    layers: tuple[Path, ...] = (),
    files: dict[str, str] | None = None,
) -> FunctionSpec:
    code = tmp_path / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "handler.py").write_text(textwrap.dedent(source))
    for name, text in (files or {}).items():
        path = code / name
        path.write_text(textwrap.dedent(text))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return FunctionSpec(
        environment_id=uuid.uuid4().hex,
        function_name="fn",
        version=version,
        runtime=runtime,
        handler="handler.handler",
        interpreter=interpreter(runtime),
        task_root=code,
        timeout_seconds=5,
        memory_size_mb=memory_mb,
        environment={"AWS_REGION": "us-east-1", **(environment or {})},
        layer_roots=layers,
        pids_dir=tmp_path / "pids",
        cgroup_parents=cgroup_parents,
    )


def invoke(
    env: ProcessEnvironment, event: dict[str, object] | None = None
) -> tuple[dict, bool, str]:  # type: ignore[type-arg]
    outcome = env.invoke(str(uuid.uuid4()), json.dumps(event or {}).encode(), ARN)
    return json.loads(outcome.payload), outcome.is_error, outcome.logs


@pytest.fixture
def started() -> Iterator[list[ProcessEnvironment]]:
    """Environments a test started; stopped after it."""
    environments: list[ProcessEnvironment] = []
    yield environments
    for env in environments:
        env.stop()


def start(
    started: list[ProcessEnvironment], spec: FunctionSpec, **kwargs: object
) -> ProcessEnvironment:
    env = ProcessEnvironment(spec, **kwargs)  # type: ignore[arg-type]
    started.append(env)
    env.start()
    return env


@pytest.fixture
def cgroup_parents() -> Iterator[tuple[Path, Path]]:
    """A memory and a pids parent cgroup for this test, removed after it."""
    name = f"localcloud-test-{uuid.uuid4().hex[:8]}"
    parents = (CGROUP_V1 / "memory" / name, CGROUP_V1 / "pids" / name)
    try:
        for parent in parents:
            parent.mkdir()
    except OSError as error:
        pytest.skip(f"no writable cgroup v1 memory/pids hierarchy here ({error})")
    yield parents
    from localcloud.environments import remove_cgroups

    remove_cgroups(parents)
    assert not any(parent.exists() for parent in parents), "a cgroup was left behind"


# --- /var/task ---------------------------------------------------------------------------

CODE_AT_VAR_TASK = """
import os, sys, traceback

def handler(event, context):
    if event.get("fail"):
        raise ValueError("from the handler")
    import layered
    return {"task_root": os.environ["LAMBDA_TASK_ROOT"], "cwd": os.getcwd(), "file": __file__,
            "layer_file": layered.__file__, "path": sys.path[:3],
            "listing": sorted(os.listdir("."))}
"""


def test_code_is_at_var_task_and_layers_at_opt_as_on_aws(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    layer = tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "layered.py").write_text("VALUE = 1\n")
    env = start(started, function_spec(tmp_path, CODE_AT_VAR_TASK, layers=(layer,)))

    result, is_error, _ = invoke(env)
    failure, failed, logs = invoke(env, {"fail": True})

    assert not is_error
    assert result["task_root"] == result["cwd"] == "/var/task"
    assert result["file"] == "/var/task/handler.py"
    assert result["listing"] == ["handler.py"]
    assert result["layer_file"] == "/opt/python/layered.py"
    assert result["path"][0] == "/var/task"
    assert failed and any('File "/var/task/handler.py"' in frame for frame in failure["stackTrace"])
    assert str(tmp_path) not in logs


def test_the_mount_namespace_leaves_the_host_as_it_was(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    env = start(started, function_spec(tmp_path, CODE_AT_VAR_TASK))
    invoke(env)

    host_mounts = Path("/proc/self/mountinfo").read_text()
    assert " /var/task " not in host_mounts
    assert not (Path("/var/task") / "handler.py").exists()


# --- AWS_LAMBDA_EXEC_WRAPPER -------------------------------------------------------------

WRAPPED = """
import os, sys

def handler(event, context):
    return {"wrapped_args": os.environ.get("WRAPPED_ARGS"),
            "from_wrapper": os.environ.get("FROM_WRAPPER")}
"""

WRAPPER = """\
#!/bin/sh
export WRAPPED_ARGS="$*"
export FROM_WRAPPER=yes
exec "$@"
"""


def test_exec_wrapper_runs_with_the_runtimes_command_line(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    spec = function_spec(
        tmp_path,
        WRAPPED,
        environment={"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/wrapper.sh"},
        files={"wrapper.sh": WRAPPER},
    )
    env = start(started, spec)

    result, is_error, logs = invoke(env)

    assert not is_error, result
    assert result["from_wrapper"] == "yes"
    interpreter_path, *arguments = result["wrapped_args"].split()
    assert Path(interpreter_path).name == "python"
    assert arguments == ["-m", "awslambdaric", "handler.handler"]
    assert "Init Duration:" in logs


def test_a_missing_exec_wrapper_fails_the_init(tmp_path: Path) -> None:
    spec = function_spec(
        tmp_path, WRAPPED, environment={"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/missing.sh"}
    )
    env = ProcessEnvironment(spec)

    with pytest.raises(InitFailed) as failure:
        env.start()

    assert json.loads(failure.value.payload)["errorType"] == "Runtime.ExitError"
    assert "exit status 127" in json.loads(failure.value.payload)["errorMessage"]
    assert "/var/task/missing.sh" in failure.value.logs


# --- resource limits ---------------------------------------------------------------------

LIMITS = """
import resource, threading, time

def handler(event, context):
    if event.get("threads"):
        stop, count = threading.Event(), 0
        try:
            for _ in range(event["threads"]):
                threading.Thread(target=stop.wait, daemon=True).start()
                count += 1
        except RuntimeError as error:
            failure = str(error)
        else:
            failure = None
        stop.set()
        return {"started": count, "failure": failure}
    return {"nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
            "core": resource.getrlimit(resource.RLIMIT_CORE)}
"""


def test_open_files_are_limited_to_1024_and_core_dumps_are_off(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    env = start(started, function_spec(tmp_path, LIMITS))

    result, _, _ = invoke(env)

    assert result["nofile"] == [1024, 1024]
    assert result["core"] == [0, 0]


def test_an_environment_cannot_exceed_1024_processes_and_threads_nor_starve_another(
    tmp_path: Path, started: list[ProcessEnvironment], cgroup_parents: tuple[Path, Path]
) -> None:
    greedy = start(started, function_spec(tmp_path / "a", LIMITS, cgroup_parents=cgroup_parents))
    other = start(started, function_spec(tmp_path / "b", LIMITS, cgroup_parents=cgroup_parents))

    greedy_result, _, _ = invoke(greedy, {"threads": 2000})
    other_result, _, _ = invoke(other, {"threads": 100})

    assert greedy_result["failure"] is not None
    assert greedy_result["started"] < 1024
    assert other_result == {"started": 100, "failure": None}


# --- MemorySize ---------------------------------------------------------------------------

GREEDY = """
def handler(event, context):
    hoard = bytearray(event["mb"] * 1024 * 1024)
    for offset in range(0, len(hoard), 4096):
        hoard[offset] = 1  # touch every page
    return {"held_mb": event["mb"]}
"""


def test_an_environment_above_its_memory_gets_runtime_out_of_memory_as_on_aws(
    tmp_path: Path, started: list[ProcessEnvironment], cgroup_parents: tuple[Path, Path]
) -> None:
    env = start(
        started, function_spec(tmp_path, GREEDY, memory_mb=128, cgroup_parents=cgroup_parents)
    )
    within, within_error, _ = invoke(env, {"mb": 32})

    outcome = env.invoke("req-oom", json.dumps({"mb": 400}).encode(), ARN)

    assert not within_error and within == {"held_mb": 32}
    assert outcome.is_error
    error = json.loads(outcome.payload)
    assert error["errorType"] == "Runtime.OutOfMemory"
    assert (
        error["errorMessage"]
        == "RequestId: req-oom Error: Runtime exited with error: signal: killed"
    )
    report = next(line for line in outcome.logs.splitlines() if line.startswith("REPORT"))
    assert "Status: error" in report and "Error Type: Runtime.OutOfMemory" in report
    # The environment resets: the next invoke inits a new process, as on AWS.
    again, again_error, logs = invoke(env, {"mb": 16})
    assert not again_error and "Init Duration:" in logs


def test_without_a_writable_cgroup_the_environment_runs_unlimited(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    unwritable = (Path("/proc/localcloud-memory"), Path("/proc/localcloud-pids"))
    env = start(started, function_spec(tmp_path, GREEDY, cgroup_parents=unwritable))

    result, is_error, _ = invoke(env, {"mb": 16})

    assert not is_error and result == {"held_mb": 16}


def test_stopping_an_environment_removes_its_cgroups(
    tmp_path: Path, cgroup_parents: tuple[Path, Path]
) -> None:
    env = ProcessEnvironment(function_spec(tmp_path, GREEDY, cgroup_parents=cgroup_parents))
    env.start()
    assert all(list(parent.iterdir()) for parent in cgroup_parents)

    env.stop()

    assert procs.poll(
        lambda: not any(p.is_dir() for parent in cgroup_parents for p in parent.iterdir()), 10
    )


# --- SnapStart ----------------------------------------------------------------------------

SNAPSTART = """
import os, socket
from snapshot_restore_py import register_after_restore, register_before_snapshot

ORDER = ["init"]
state = {"connection": socket.create_connection(("127.0.0.1", int(os.environ["PEER_PORT"])))}

@register_before_snapshot
def close_connection():
    ORDER.append("before: close the connection")
    state["connection"].close()

@register_before_snapshot
def registered_second():
    ORDER.append("before: registered second")

@register_after_restore
def reopen_connection():
    ORDER.append("after: reopen the connection")
    state["connection"] = socket.create_connection(("127.0.0.1", int(os.environ["PEER_PORT"])))

@register_after_restore
def registered_second_after():
    ORDER.append("after: registered second")
    if os.environ.get("FAIL_AFTER_RESTORE"):
        raise RuntimeError("cannot restore")
    if os.environ.get("SLOW_AFTER_RESTORE"):
        import time
        time.sleep(60)

def handler(event, context):
    if event.get("crash"):
        os._exit(1)
    state["connection"].sendall(f"{os.getpid()}\\n".encode())
    return {"order": ORDER, "pid": os.getpid(),
            "initialization_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
            "remaining_ms": context.get_remaining_time_in_millis(),
            "log_stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")}
"""


class Peer:
    """A TCP server standing in for a database: who connected, what each connection said."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[str] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        with connection, connection.makefile() as lines:
            self.received.extend(line.strip() for line in lines)


def snapstart_spec(tmp_path: Path, peer: Peer, **environment: str) -> FunctionSpec:
    variables = snapstart.environment_of(
        {"PEER_PORT": str(peer.port), "AWS_LAMBDA_LOG_STREAM_NAME": "stream", **environment}
    )
    return function_spec(tmp_path, SNAPSTART, environment=variables, version="1")


def test_snapstart_inits_once_and_restores_each_environment_running_the_hooks_in_awss_order(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    peer = Peer()
    spec = snapstart_spec(tmp_path, peer)
    launcher = snapstart.launcher_for(f"{ARN}:1:{uuid.uuid4().hex}", spec)
    try:
        environments = [start(started, spec, launcher=launcher) for _ in range(2)]
        results = [invoke(env) for env in environments]
        init_logs = launcher.snapshot.take_init_logs()
    finally:
        snapstart.discard(launcher.snapshot.key)

    for result, is_error, logs in results:
        assert not is_error, result
        assert result["order"] == [
            "init",
            "before: registered second",  # before-snapshot hooks: reverse order of registration
            "before: close the connection",
            "after: reopen the connection",  # after-restore hooks: order of registration
            "after: registered second",
        ]
        assert result["initialization_type"] == "snap-start"
        assert result["log_stream"] is None  # not available in SnapStart functions
        report = next(line for line in logs.splitlines() if line.startswith("REPORT"))
        assert "Restore Duration: " in report and "Billed Restore Duration: " in report
        assert "Init Duration" not in report
        # The invoke's LogResult is START..REPORT: the restore's lines went out before it.
        assert logs.startswith("START RequestId:")
        # The context counts down from the function's timeout, as on AWS.
        assert 0 < result["remaining_ms"] <= spec.timeout_seconds * 1000
    assert results[0][0]["pid"] != results[1][0]["pid"]
    # One init (one connection at init), then one reopened connection per restored environment,
    # each of which the handler used.
    assert init_logs[0].message.startswith("INIT_START")
    assert init_logs[-1].message.startswith("INIT_REPORT Init Duration:")
    assert procs.poll(lambda: len(peer.received) == 2, 5)
    assert peer.connections == 3
    assert sorted(peer.received) == sorted(str(result[0]["pid"]) for result in results)


def test_a_crashed_restored_environment_is_restored_again(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    peer = Peer()
    spec = snapstart_spec(tmp_path, peer)
    launcher = snapstart.launcher_for(f"{ARN}:1:{uuid.uuid4().hex}", spec)
    try:
        env = start(started, spec, launcher=launcher)
        first, _, _ = invoke(env)
        crash, crashed, _ = invoke(env, {"crash": True})
        after, after_error, logs = invoke(env)
    finally:
        snapstart.discard(launcher.snapshot.key)

    assert crashed and crash["errorType"] == "Runtime.ExitError"
    assert not after_error and after["pid"] != first["pid"]
    assert "Restore Duration: " in logs and "Init Duration" not in logs


def test_a_failing_after_restore_hook_is_a_snapstart_exception(tmp_path: Path) -> None:
    peer = Peer()
    spec = snapstart_spec(tmp_path, peer, FAIL_AFTER_RESTORE="1")
    launcher = snapstart.launcher_for(f"{ARN}:1:{uuid.uuid4().hex}", spec)
    try:
        env = ProcessEnvironment(spec, launcher=launcher)
        with pytest.raises(InitFailed) as failure:
            env.start()
    finally:
        snapstart.discard(launcher.snapshot.key)

    error = json.loads(failure.value.payload)
    assert error["errorType"] == "SnapStartException"
    assert "cannot restore" in error["errorMessage"]
    assert failure.value.api_error == "SnapStartException"  # Invoke's 400, not a function error


def test_after_restore_hooks_that_take_over_10_s_are_a_snapstart_timeout(tmp_path: Path) -> None:
    peer = Peer()
    spec = snapstart_spec(tmp_path, peer, SLOW_AFTER_RESTORE="1")
    launcher = snapstart.launcher_for(f"{ARN}:1:{uuid.uuid4().hex}", spec)
    try:
        env = ProcessEnvironment(spec, launcher=launcher)
        with pytest.raises(InitFailed) as failure:
            env.start()
        pid = env.pid
    finally:
        snapstart.discard(launcher.snapshot.key)

    assert json.loads(failure.value.payload)["errorType"] == "SnapStartTimeoutException"
    assert failure.value.api_error == "SnapStartTimeoutException"  # Invoke's 408
    assert pid is not None and procs.poll(lambda: not procs.is_alive(pid), 5)


def test_without_snapstart_each_environment_inits_itself(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    peer = Peer()
    spec = function_spec(tmp_path, SNAPSTART, environment={"PEER_PORT": str(peer.port)})
    env = start(started, spec)

    result, is_error, logs = invoke(env)

    assert not is_error
    assert result["order"] == ["init"]  # no hooks run without SnapStart
    assert "Init Duration: " in logs and "Restore Duration" not in logs


def test_snapstart_applies_to_published_versions_only() -> None:
    on = {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}

    assert snapstart.applies(on, "1")
    assert not snapstart.applies(on, "$LATEST")
    assert not snapstart.applies({"ApplyOn": "None"}, "1")
    assert not snapstart.applies(None, "1")


def test_environment_processes_have_their_own_session(
    tmp_path: Path, started: list[ProcessEnvironment]
) -> None:
    env = start(started, function_spec(tmp_path, LIMITS))
    pid = env.pid
    assert pid is not None

    assert os.getsid(pid) == pid and os.getpgid(pid) == pid
