"""One Lambda execution environment as an OS process running AWS's runtime interface client.

An environment serves one invocation at a time and stays warm between them. Like AWS, it resets
after a timeout or a runtime crash: the process group is killed and the next invocation starts a
fresh process (a new init) in the same environment.

Stdlib only: LocalStack's adapter (`executor.py`) wraps it; unit tests drive it directly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from localcloud_ext import report
from localcloud_ext.cgroups import EnvironmentCgroups
from localcloud_ext.environment_log import EnvironmentLog
from localcloud_ext.log_shipper import LogSink
from localcloud_ext.output_capture import CapturedOutput, OutputReader, shared_reader
from localcloud_ext.pids import PidRecord
from localcloud_ext.runtime_api import (
    EventKind,
    InvocationRequest,
    RuntimeApiServer,
    RuntimeEvent,
    error_payload,
)

LOG = logging.getLogger(__name__)

# The largest response a function may return (6 MB and 100 bytes): AWS's limit for synchronous
# invocations, which its Runtime API applies to every response.
MAX_RESPONSE_BYTES = 6_291_556
RESPONSE_TOO_LARGE_TYPE = "Function.ResponseSizeTooLarge"
RESPONSE_TOO_LARGE_MESSAGE = (
    f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
)
# Where Lambda puts a function's code and its layers.
TASK_ROOT = "/var/task"
LAYERS_ROOT = "/opt"
# Lambda's per-environment limits that are rlimits (quotas page: file descriptors 1,024; no core
# dumps). Its 1,024 processes/threads are a pids cgroup instead (cgroups.py says why).
RESOURCE_LIMITS = (("RLIMIT_NOFILE", 1024, 1024), ("RLIMIT_CORE", 0, 0))
# AWS: after-restore hooks must finish within 10 s, else SnapStartTimeoutException.
RESTORE_TIMEOUT_SECONDS = 10.0

ExitCallback = Callable[[int | None], None]


class Launcher(Protocol):
    """Starts the processes of an environment: forks of the runtime template, or restores of a
    SnapStart version's snapshot (forkserver.py, snapstart.py)."""

    @property
    def restores(self) -> bool:
        """True when each process is a restore of a snapshot (Restore Duration, not Init)."""
        ...

    def prepare(self) -> None:
        """Start what launching needs (the template, the snapshot): not part of any init."""
        ...

    def launch(
        self,
        spec: FunctionSpec,
        runtime_api_address: str,
        output_fd: int,
        cgroups: EnvironmentCgroups | None,
        on_exit: ExitCallback,
    ) -> int:
        """Start one process; its PID. `on_exit(status)` once it ended."""
        ...


class EnvironmentStopped(Exception):
    """The environment was stopped while it was starting or invoking."""


class InitFailed(Exception):
    """The handler could not be loaded; `payload` is Lambda's error body for the caller.
    `api_error`: the Invoke API's error instead, where Lambda answers with one rather than a
    function error (SnapStart's restore failures: SnapStartException and the like)."""

    def __init__(self, payload: bytes, logs: str, api_error: str = "") -> None:
        super().__init__(payload.decode(errors="replace"))
        self.payload = payload
        self.logs = logs
        self.api_error = api_error


# The restore failures that AWS's Invoke answers as API errors of the same name (HTTP 400, 408).
SNAPSTART_API_ERRORS = ("SnapStartException", "SnapStartTimeoutException")


@dataclass(frozen=True)
class FunctionSpec:
    """Everything needed to run one function version's execution environment."""

    environment_id: str
    function_name: str
    version: str  # the qualifier, e.g. $LATEST
    runtime: str  # e.g. python3.11
    handler: str
    interpreter: Path  # a Python of the runtime's version with awslambdaric installed
    task_root: Path  # the unzipped deployment package
    timeout_seconds: int
    memory_size_mb: int
    environment: Mapping[str, str]  # what the function sees, before the runtime's own variables
    layer_roots: tuple[Path, ...] = ()
    pids_dir: Path | None = None
    cgroup_parents: tuple[Path, Path] | None = None  # cgroups.parents(); None: no cgroups

    def process_environment(
        self, runtime_api_address: str, in_namespace: bool = False
    ) -> dict[str, str]:
        """The function process's environment, as a Python managed runtime on AWS has it.

        `in_namespace`: the process sees its code at /var/task and its layers at /opt.
        """
        env = dict(self.environment)
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": runtime_api_address,
                "_HANDLER": self.handler,
                "LAMBDA_TASK_ROOT": TASK_ROOT if in_namespace else str(self.task_root),
                "LAMBDA_RUNTIME_DIR": str(self.interpreter.parent.parent),
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.runtime}",
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": self.version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_size_mb),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_seconds),
                "PATH": f"{self.interpreter.parent}:/usr/local/bin:/usr/bin:/bin",
                "LANG": env.get("LANG", "C.UTF-8"),
                "TZ": env.get("TZ", ":UTC"),
                # The task root first, then layers, as on AWS (/var/task, /opt/python...).
                "PYTHONPATH": os.pathsep.join(self._python_path(in_namespace)),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _python_path(self, in_namespace: bool = False) -> list[str]:
        paths = [TASK_ROOT if in_namespace else str(self.task_root)]
        version = self.runtime.removeprefix("python")
        for root in self.layer_roots:
            for relative in (
                Path("python", "lib", f"python{version}", "site-packages"),
                Path("python"),
            ):
                if (root / relative).is_dir():
                    # In the namespace all layers are merged at /opt, as Lambda extracts them.
                    path = str(Path(LAYERS_ROOT, relative) if in_namespace else root / relative)
                    if path not in paths:
                        paths.append(path)
        return paths

    def launch_request(
        self, runtime_api_address: str, in_namespace: bool, cgroups: EnvironmentCgroups | None
    ) -> dict[str, Any]:
        """What the runtime template needs to fork this environment (runtime_template.py)."""
        env = self.process_environment(runtime_api_address, in_namespace)
        request: dict[str, Any] = {
            "op": "spawn",
            "env": env,
            "cwd": env["LAMBDA_TASK_ROOT"],
            "handler": self.handler,
            "sys_path": env["PYTHONPATH"].split(os.pathsep),
            "mount_namespace": in_namespace,
            "host_task_root": str(self.task_root),
            "layers": [str(root) for root in self.layer_roots],
            "cgroup_procs": cgroups.procs_files() if cgroups is not None else [],
            "rlimits": [list(limit) for limit in RESOURCE_LIMITS],
        }
        wrapper = env.get("AWS_LAMBDA_EXEC_WRAPPER")
        if wrapper:
            # As Lambda's bootstrap does: the wrapper runs with the runtime's command line.
            request["exec"] = [wrapper, str(self.interpreter), "-m", "awslambdaric", self.handler]
        return request


@dataclass(frozen=True)
class InvokeOutcome:
    request_id: str
    payload: bytes
    is_error: bool
    logs: str


@dataclass
class _Incarnation:
    """One function process and the Runtime API it talks to."""

    api: RuntimeApiServer
    started: float
    cgroups: EnvironmentCgroups | None = None
    restore: bool = False  # a restore of a SnapStart snapshot
    pid: int = 0
    output: CapturedOutput | None = None
    pid_record: PidRecord | None = None
    spawned: float = 0.0  # when the process existed (a restore: when the fork returned)
    init_duration_ms: float | None = None
    restore_report: report.RestoreReport | None = None
    max_rss_mb: int = 0
    exited: threading.Event = field(default_factory=threading.Event)
    exit_error_type: str = "Runtime.ExitError"
    killed: bool = False

    @property
    def usable(self) -> bool:
        return not (self.killed or self.exited.is_set())

    def on_exit(self, status: int | None) -> None:
        """Called once the process ended (on the launcher's reader thread)."""
        if self.cgroups is not None:
            if not self.killed and status == -signal.SIGKILL and self.cgroups.out_of_memory():
                self.exit_error_type = "Runtime.OutOfMemory"
            self.cgroups.kill_all()
            if not self.cgroups.remove():
                _remove_when_empty(self.cgroups)
        self.exited.set()
        if self.pid_record is not None:
            self.pid_record.remove()
        self.api.post(
            RuntimeEvent(EventKind.EXITED, exit_code=status, error_type=self.exit_error_type)
        )

    def max_memory_used_mb(self) -> int:
        """Peak resident memory of the process (VmHWM), as Lambda reports it."""
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        self.max_rss_mb = max(
                            self.max_rss_mb, math.ceil(int(line.split()[1]) / 1024)
                        )
                        break
        except OSError:
            pass  # already gone: keep the last reading
        return self.max_rss_mb

    def kill(self) -> None:
        """End the whole process group at once, as Lambda does when it resets an environment."""
        self.killed = True
        if not self.exited.is_set() and self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            if self.cgroups is not None:
                self.cgroups.kill_all()
        self.api.close()


class ProcessEnvironment:
    """A Lambda execution environment backed by OS processes."""

    def __init__(
        self,
        spec: FunctionSpec,
        clock: Callable[[], float] = time.monotonic,
        launcher: Launcher | None = None,
        log_sink: LogSink | None = None,
        wall_clock: Callable[[], float] = time.time,
        output_reader: OutputReader | None = None,
    ) -> None:
        """`log_sink` receives the environment's log events as they happen (its log stream)."""
        self.spec = spec
        self._clock = clock
        if launcher is None:
            from localcloud_ext.forkserver import TemplateLauncher

            launcher = TemplateLauncher.for_spec(spec)
        self._launcher = launcher
        self._lock = threading.Lock()  # one invocation at a time
        self._current: _Incarnation | None = None
        self._stopped = threading.Event()
        self._log = EnvironmentLog(log_sink, wall_clock)
        self._output_reader = output_reader or shared_reader()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the function process and block until its handler is loaded.

        Raises InitFailed when the handler cannot be loaded (the process is gone then), and
        EnvironmentStopped when `stop` is called meanwhile.
        """
        self._start_incarnation()

    def stop(self) -> None:
        self._stopped.set()
        incarnation = self._current
        if incarnation is not None:
            incarnation.api.post(RuntimeEvent(EventKind.STOPPED))
            incarnation.kill()

    def logs(self) -> str:
        return self._log.diagnostics()

    @property
    def pid(self) -> int | None:
        incarnation = self._current
        return incarnation.pid or None if incarnation is not None else None

    # --- invocation ------------------------------------------------------------------------

    def invoke(
        self,
        request_id: str,
        payload: bytes,
        invoked_function_arn: str,
        trace_id: str = "",
        client_context: str | None = None,
    ) -> InvokeOutcome:
        with self._lock:
            if self._stopped.is_set():
                raise EnvironmentStopped(f"environment {self.spec.environment_id} is stopped")
            incarnation = self._current
            if incarnation is None or not incarnation.usable:
                # The last process timed out or crashed: re-initialise, as Lambda does.
                try:
                    incarnation = self._start_incarnation()
                except InitFailed as failure:
                    return InvokeOutcome(request_id, failure.payload, True, failure.logs)
            return self._invoke(
                incarnation, request_id, payload, invoked_function_arn, trace_id, client_context
            )

    def _invoke(
        self,
        incarnation: _Incarnation,
        request_id: str,
        payload: bytes,
        invoked_function_arn: str,
        trace_id: str,
        client_context: str | None,
    ) -> InvokeOutcome:
        timeout = self.spec.timeout_seconds
        # The first invocation of a process reports its init (its output went out at init time).
        init_duration_ms = incarnation.init_duration_ms
        incarnation.init_duration_ms = None
        # What the process wrote before this invocation goes before its START.
        self._output(incarnation).flush()
        started_ms = self._log.start_invocation(request_id, self.spec.version)
        started = self._clock()
        deadline = started + timeout
        incarnation.api.deliver(
            InvocationRequest(
                request_id=request_id,
                payload=payload,
                deadline_ms=int((time.time() + timeout) * 1000),
                invoked_function_arn=invoked_function_arn,
                trace_id=trace_id,
                client_context=client_context,
            )
        )
        try:
            result, is_error, status, platform_line = self._await_result(
                incarnation, request_id, deadline
            )
        except EnvironmentStopped:
            self._log.close_record()
            raise
        duration_ms = (self._clock() - started) * 1000
        # The runtime writes its output before it posts the result: all of it is in the pipe.
        self._output(incarnation).flush()
        invocation_report = report.InvocationReport(
            request_id=request_id,
            duration_ms=duration_ms,
            memory_size_mb=self.spec.memory_size_mb,
            max_memory_used_mb=incarnation.max_memory_used_mb(),
            init_duration_ms=None if incarnation.restore else init_duration_ms,
            restore=incarnation.restore_report if init_duration_ms is not None else None,
            status=status,
            error_type=incarnation.exit_error_type if status == "error" else None,
        )
        logs = self._log.end_invocation(started_ms, invocation_report, platform_line)
        return InvokeOutcome(request_id, result, is_error, logs)

    def _await_result(
        self, incarnation: _Incarnation, request_id: str, deadline: float
    ) -> tuple[bytes, bool, str | None, str]:
        """(payload, is_error, REPORT status, platform log line) of one invocation."""
        while True:
            event = incarnation.api.next_event(timeout=max(0.0, deadline - self._clock()))
            if event is None:
                incarnation.kill()
                timeout = self.spec.timeout_seconds
                message = report.timeout_message(request_id, timeout)
                line = report.timeout_log_line(request_id, timeout)
                return error_payload("Sandbox.Timedout", message), True, "timeout", line
            if event.kind is EventKind.EXITED:
                message = report.exit_message(request_id, event.exit_code)
                error_type = event.error_type or "Runtime.ExitError"
                return error_payload(error_type, message), True, "error", message
            if event.kind is EventKind.STOPPED:
                raise EnvironmentStopped(
                    f"environment {self.spec.environment_id} stopped during an invocation"
                )
            if event.request_id == request_id and event.kind is EventKind.RESPONSE:
                if len(event.body) > MAX_RESPONSE_BYTES:
                    # AWS refuses the response and its runtime client then exits: the
                    # environment resets, and the next invocation starts a new process.
                    incarnation.kill()
                    payload = error_payload(RESPONSE_TOO_LARGE_TYPE, RESPONSE_TOO_LARGE_MESSAGE)
                    return payload, True, "error", ""
                return event.body, False, None, ""
            if event.request_id == request_id and event.kind is EventKind.ERROR:
                return event.body, True, None, ""
            LOG.debug("ignoring runtime event %s during invocation %s", event, request_id)

    # --- process management ----------------------------------------------------------------

    def _start_incarnation(self) -> _Incarnation:
        """A new function process, initialised and ready for its first invocation."""
        self._log.open_record()  # the init's own log, for an init that fails during an invoke
        self._log.platform(
            report.restore_start_line(self.spec.runtime)
            if self._launcher.restores
            else report.init_start_line(self.spec.runtime)
        )
        incarnation = self._spawn()
        self._current = incarnation
        if self._stopped.is_set():  # stopped while spawning: stop() saw no process to end
            incarnation.kill()
        self._await_ready(incarnation)
        return incarnation

    @staticmethod
    def _output(incarnation: _Incarnation) -> CapturedOutput:
        assert incarnation.output is not None, "an incarnation has its output once spawned"
        return incarnation.output

    def _spawn(self) -> _Incarnation:
        spec = self.spec
        api = RuntimeApiServer()
        cgroups = _create_cgroups(spec)
        self._launcher.prepare()
        incarnation = _Incarnation(
            api=api, started=self._clock(), cgroups=cgroups, restore=self._launcher.restores
        )
        read_fd, write_fd = os.pipe()
        try:
            pid = self._launcher.launch(spec, api.address, write_fd, cgroups, incarnation.on_exit)
        except Exception:
            api.close()
            os.close(read_fd)
            if cgroups is not None:
                cgroups.remove()
            raise
        finally:
            os.close(write_fd)
        incarnation.pid = pid
        incarnation.spawned = self._clock()
        incarnation.output = self._output_reader.watch(read_fd, self._log.output)
        if spec.pids_dir:
            incarnation.pid_record = PidRecord.create(
                spec.pids_dir, spec.environment_id, pid, spec.function_name
            )
            if incarnation.exited.is_set():  # it ended before its record was written
                incarnation.pid_record.remove()
        LOG.debug("started function process %s for %s", pid, spec.function_name)
        return incarnation

    def _await_ready(self, incarnation: _Incarnation) -> None:
        restore_deadline = incarnation.started + RESTORE_TIMEOUT_SECONDS
        while True:
            event = incarnation.api.next_event(timeout=1.0)
            if event is None:
                if self._stopped.is_set():
                    raise EnvironmentStopped(f"environment {self.spec.environment_id} stopped")
                if incarnation.restore and self._clock() >= restore_deadline:
                    self._fail_init(
                        incarnation,
                        "SnapStartTimeoutException",
                        error_payload(
                            "SnapStartTimeoutException",
                            "Lambda couldn't restore the snapshot within the timeout limit "
                            f"({RESTORE_TIMEOUT_SECONDS:.0f} s for the after-restore hooks).",
                        ),
                    )
                continue
            if event.kind is EventKind.READY:
                now = self._clock()
                incarnation.init_duration_ms = (now - incarnation.started) * 1000
                if incarnation.restore:
                    incarnation.restore_report = report.RestoreReport(
                        restore_duration_ms=(now - incarnation.started) * 1000,
                        billed_restore_duration_ms=(now - incarnation.spawned) * 1000,
                    )
                    self._output(incarnation).flush()
                    self._log.platform(incarnation.restore_report.line())
                self._log.close_record()
                return
            if event.kind is EventKind.STOPPED:
                raise EnvironmentStopped(
                    f"environment {self.spec.environment_id} stopped during init"
                )
            if event.kind is EventKind.RESTORE_ERROR:
                self._fail_init(
                    incarnation,
                    "SnapStartException",
                    error_payload(
                        "SnapStartException",
                        "The after-restore runtime hook raised an exception: "
                        + _error_summary(event.body),
                    ),
                )
            if event.kind in (EventKind.INIT_ERROR, EventKind.EXITED):
                if event.kind is EventKind.INIT_ERROR:
                    payload, error_type = event.body, event.error_type or "Runtime.Unknown"
                else:
                    error_type = event.error_type or "Runtime.ExitError"
                    payload = error_payload(error_type, report.exit_message("", event.exit_code))
                self._fail_init(incarnation, error_type, payload)

    def _fail_init(self, incarnation: _Incarnation, error_type: str, payload: bytes) -> None:
        init_duration_ms = (self._clock() - incarnation.started) * 1000
        incarnation.kill()
        incarnation.exited.wait(timeout=5)
        self._output(incarnation).flush()
        self._log.platform(report.init_report_line(init_duration_ms, error_type))
        api_error = error_type if error_type in SNAPSTART_API_ERRORS else ""
        raise InitFailed(payload, self._log.close_record(), api_error)


def _create_cgroups(spec: FunctionSpec) -> EnvironmentCgroups | None:
    """The environment's memory and pids cgroups; None where none can be made (logged once)."""
    global _cgroups_warned
    if spec.cgroup_parents is None:
        return None
    try:
        return EnvironmentCgroups.create(
            spec.cgroup_parents, f"{spec.environment_id}-{time.monotonic_ns()}", spec.memory_size_mb
        )
    except OSError as error:
        if not _cgroups_warned:
            _cgroups_warned = True
            LOG.warning(
                "no cgroup for execution environments (%s): MemorySize and the 1,024 processes "
                "per environment are not enforced",
                error,
            )
        return None


_cgroups_warned = False


def _remove_when_empty(cgroups: EnvironmentCgroups, attempts: int = 50) -> None:
    """A process the environment left (its own child) may take a moment to be reaped."""

    def retry() -> None:
        for _ in range(attempts):
            time.sleep(0.1)
            cgroups.kill_all()
            if cgroups.remove():
                return
        LOG.warning("cgroups %s still in use; scripts/localcloud down removes them", cgroups)

    threading.Thread(target=retry, name="lambda-cgroup-cleanup", daemon=True).start()


def _error_summary(body: bytes) -> str:
    import json

    try:
        error = json.loads(body)
        return f"{error.get('errorType')}: {error.get('errorMessage')}"
    except (ValueError, AttributeError):
        return body.decode(errors="replace")
