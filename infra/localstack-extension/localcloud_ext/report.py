"""The platform lines Lambda writes around a function's own output in CloudWatch Logs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class RestoreReport:
    """A SnapStart restore: what the first REPORT of a restored environment shows."""

    restore_duration_ms: float  # restoring the snapshot and running the after-restore hooks
    billed_restore_duration_ms: float  # the after-restore hooks (the snapshot's load is free)

    @property
    def billed_ms(self) -> int:
        return max(1, math.ceil(self.billed_restore_duration_ms))

    def line(self) -> str:
        return f"RESTORE_REPORT Restore Duration: {self.restore_duration_ms:.2f} ms"

    def fields(self) -> list[str]:
        return [
            f"Restore Duration: {self.restore_duration_ms:.2f} ms",
            f"Billed Restore Duration: {self.billed_ms} ms",
        ]


@dataclass(frozen=True)
class InvocationReport:
    request_id: str
    duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None = None  # cold starts only
    status: str | None = None  # "timeout", "error" (runtime exit); None when the runtime answered
    restore: RestoreReport | None = None  # the first invocation of a restored environment
    error_type: str | None = None  # with status "error": Runtime.ExitError, Runtime.OutOfMemory

    @property
    def billed_duration_ms(self) -> int:
        # Since August 2025 Lambda bills the init phase of managed runtimes too.
        billed = self.duration_ms + (self.init_duration_ms or 0.0)
        return max(1, math.ceil(billed))

    def line(self) -> str:
        fields = [
            f"REPORT RequestId: {self.request_id}",
            f"Duration: {self.duration_ms:.2f} ms",
            f"Billed Duration: {self.billed_duration_ms} ms",
            f"Memory Size: {self.memory_size_mb} MB",
            f"Max Memory Used: {self.max_memory_used_mb} MB",
        ]
        if self.init_duration_ms is not None:
            fields.append(f"Init Duration: {self.init_duration_ms:.2f} ms")
        if self.restore is not None:
            fields += self.restore.fields()
        if self.status is not None:
            fields.append(f"Status: {self.status}")
        if self.error_type is not None:
            fields.append(f"Error Type: {self.error_type}")
        return "\t".join(fields) + "\t"


def init_start_line(runtime: str) -> str:
    return f"INIT_START Runtime Version: python:{runtime.removeprefix('python')}.local"


def restore_start_line(runtime: str) -> str:
    return f"RESTORE_START Runtime Version: python:{runtime.removeprefix('python')}.local"


def init_report_line(init_duration_ms: float, error_type: str) -> str:
    """The line Lambda logs when the init phase fails."""
    return (
        f"INIT_REPORT Init Duration: {init_duration_ms:.2f} ms\tPhase: init\tStatus: error"
        f"\tError Type: {error_type}"
    )


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def timeout_message(request_id: str, timeout_seconds: float) -> str:
    return f"RequestId: {request_id} Error: Task timed out after {timeout_seconds:.2f} seconds"


def timeout_log_line(request_id: str, timeout_seconds: float, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{stamp} {request_id} Task timed out after {timeout_seconds:.2f} seconds"


def exit_message(request_id: str, exit_code: int | None) -> str:
    if exit_code is None:
        reason = "exit status unknown"
    elif exit_code < 0:
        reason = f"signal: {_signal_name(-exit_code)}"
    else:
        reason = f"exit status {exit_code}"
    prefix = f"RequestId: {request_id} " if request_id else ""
    return f"{prefix}Error: Runtime exited with error: {reason}"


def _signal_name(number: int) -> str:
    import signal

    try:
        return {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault"}.get(
            signal.Signals(number), signal.Signals(number).name.lower()
        )
    except ValueError:
        return str(number)
