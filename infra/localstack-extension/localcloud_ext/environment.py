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
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from localcloud_ext import report
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


class EnvironmentStopped(Exception):
    """The environment was stopped while it was starting or invoking."""


class InitFailed(Exception):
    """The handler could not be loaded; `payload` is Lambda's error body for the caller."""

    def __init__(self, payload: bytes, logs: str) -> None:
        super().__init__(payload.decode(errors="replace"))
        self.payload = payload
        self.logs = logs


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

    def process_environment(self, runtime_api_address: str) -> dict[str, str]:
        """The function process's environment, as a Python managed runtime on AWS has it."""
        env = dict(self.environment)
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": runtime_api_address,
                "_HANDLER": self.handler,
                "LAMBDA_TASK_ROOT": str(self.task_root),
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
                "PYTHONPATH": os.pathsep.join(self._python_path()),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _python_path(self) -> list[str]:
        paths = [str(self.task_root)]
        version = self.runtime.removeprefix("python")
        for root in self.layer_roots:
            for candidate in (
                root / "python" / "lib" / f"python{version}" / "site-packages",
                root / "python",
            ):
                if candidate.is_dir():
                    paths.append(str(candidate))
        return paths


@dataclass(frozen=True)
class InvokeOutcome:
    request_id: str
    payload: bytes
    is_error: bool
    logs: str  # the tail of the invocation's log, START to REPORT (the invoke's LogResult)


@dataclass
class _Incarnation:
    """One function process and the Runtime API it talks to."""

    api: RuntimeApiServer
    process: subprocess.Popen[bytes]
    output: CapturedOutput
    pid_record: PidRecord | None
    started: float
    init_duration_ms: float | None = None
    max_rss_mb: int = 0
    exited: threading.Event = field(default_factory=threading.Event)
    killed: bool = False

    @property
    def usable(self) -> bool:
        return not (self.killed or self.exited.is_set())

    def max_memory_used_mb(self) -> int:
        """Peak resident memory of the process (VmHWM), as Lambda reports it."""
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
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
        if not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.api.close()


class ProcessEnvironment:
    """A Lambda execution environment backed by OS processes."""

    def __init__(
        self,
        spec: FunctionSpec,
        clock: Callable[[], float] = time.monotonic,
        log_sink: LogSink | None = None,
        wall_clock: Callable[[], float] = time.time,
        output_reader: OutputReader | None = None,
    ) -> None:
        """`log_sink` receives the environment's log events as they happen (its log stream)."""
        self.spec = spec
        self._clock = clock
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
        return incarnation.process.pid if incarnation is not None else None

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
        incarnation.output.flush()
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
        incarnation.output.flush()
        invocation_report = report.InvocationReport(
            request_id=request_id,
            duration_ms=duration_ms,
            memory_size_mb=self.spec.memory_size_mb,
            max_memory_used_mb=incarnation.max_memory_used_mb(),
            init_duration_ms=init_duration_ms,
            status=status,
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
                return error_payload("Runtime.ExitError", message), True, "error", message
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
        self._log.platform(report.init_start_line(self.spec.runtime))
        incarnation = self._spawn()
        self._current = incarnation
        if self._stopped.is_set():  # stopped while spawning: stop() saw no process to end
            incarnation.kill()
        self._await_ready(incarnation)
        return incarnation

    def _spawn(self) -> _Incarnation:
        spec = self.spec
        api = RuntimeApiServer()
        read_fd, write_fd = os.pipe()
        started = self._clock()
        try:
            process = subprocess.Popen(
                [str(spec.interpreter), "-m", "awslambdaric", spec.handler],
                cwd=spec.task_root,
                env=spec.process_environment(api.address),
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                # Its own process group, so that stopping the environment ends everything in it.
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            api.close()
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        pid_record = (
            PidRecord.create(spec.pids_dir, spec.environment_id, process.pid)
            if spec.pids_dir
            else None
        )
        incarnation = _Incarnation(
            api=api,
            process=process,
            output=self._output_reader.watch(read_fd, self._log.output),
            pid_record=pid_record,
            started=started,
        )
        threading.Thread(
            target=self._reap, args=(incarnation,), name=f"lambda-reaper-{process.pid}", daemon=True
        ).start()
        LOG.debug("started function process %s for %s", process.pid, spec.function_name)
        return incarnation

    def _reap(self, incarnation: _Incarnation) -> None:
        exit_code = incarnation.process.wait()
        incarnation.exited.set()
        if incarnation.pid_record is not None:
            incarnation.pid_record.remove()
        incarnation.api.post(RuntimeEvent(EventKind.EXITED, exit_code=exit_code))

    def _await_ready(self, incarnation: _Incarnation) -> None:
        while True:
            event = incarnation.api.next_event(timeout=1.0)
            if event is None:
                if self._stopped.is_set():
                    raise EnvironmentStopped(f"environment {self.spec.environment_id} stopped")
                continue
            if event.kind is EventKind.READY:
                incarnation.init_duration_ms = (self._clock() - incarnation.started) * 1000
                self._log.close_record()
                return
            if event.kind is EventKind.STOPPED:
                raise EnvironmentStopped(
                    f"environment {self.spec.environment_id} stopped during init"
                )
            if event.kind in (EventKind.INIT_ERROR, EventKind.EXITED):
                init_duration_ms = (self._clock() - incarnation.started) * 1000
                incarnation.kill()
                incarnation.exited.wait(timeout=5)
                if event.kind is EventKind.INIT_ERROR:
                    payload, error_type = event.body, event.error_type or "Runtime.Unknown"
                else:
                    error_type = "Runtime.ExitError"
                    payload = error_payload(error_type, report.exit_message("", event.exit_code))
                incarnation.output.flush()
                self._log.platform(report.init_report_line(init_duration_ms, error_type))
                raise InitFailed(payload, self._log.close_record())
