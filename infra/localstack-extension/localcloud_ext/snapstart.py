"""Lambda SnapStart for Python: init once per published version, snapshot, restore per environment.

AWS runs a SnapStart version's init once, when the version is published: it imports the handler
(AWS_LAMBDA_INITIALIZATION_TYPE=snap-start), runs the before-snapshot hooks, and snapshots the
environment where the runtime asks the Runtime API for `restore/next`. Each new environment is a
restore of that snapshot: the runtime returns from `restore/next`, runs the after-restore hooks
(10 s at most), and serves invocations; its first REPORT shows Restore Duration and Billed Restore
Duration instead of Init Duration.

Here the snapshot is a process: the version's init, forked from the runtime template, stopped at
`restore/next` as a fork server (runtime_template.py); a restore is a fork of it. Its memory is
shared copy-on-write by every environment of the version. The init runs at the version's first
environment (LocalStack starts no environment at publish time), with that environment's
variables; the init's own log lines go to that environment's log stream.

Stdlib only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from localcloud_ext import report
from localcloud_ext.cgroups import EnvironmentCgroups
from localcloud_ext.environment import ExitCallback, FunctionSpec, InitFailed
from localcloud_ext.forkserver import Forkserver, SocketChannel, TemplateLauncher, channel_pair
from localcloud_ext.log_shipper import LogEvent
from localcloud_ext.output_capture import shared_reader
from localcloud_ext.pids import PidRecord
from localcloud_ext.runtime_api import EventKind, RuntimeApiServer, RuntimeEvent, error_payload

LOG = logging.getLogger(__name__)

INITIALIZATION_TYPE = "snap-start"
# Not in a SnapStart function's environment on AWS (snapstart-monitoring: "not available").
ABSENT_VARIABLES = ("AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME")
# AWS: the snapshotting init may take 15 minutes.
SNAPSHOT_INIT_TIMEOUT_SECONDS = 15 * 60.0


class SnapshotInitFailed(InitFailed):
    """The version's own init failed: `events` is its log, for the environment's stream."""

    def __init__(self, payload: bytes, events: list[LogEvent], permanent: bool = True) -> None:
        super().__init__(payload, "".join(f"{event.message}\n" for event in events))
        self.events = events
        self.permanent = permanent  # the handler's init failed: the version is Failed


def _now_ms() -> int:
    return int(time.time() * 1000)


def applies(snap_start: Any, qualifier: str) -> bool:
    """SnapStart is on for this version: ApplyOn PublishedVersions, and a published version."""
    if qualifier == "$LATEST" or not snap_start:
        return False
    return bool(snap_start.get("ApplyOn") == "PublishedVersions")


def environment_of(environment: dict[str, str]) -> dict[str, str]:
    """A SnapStart environment's variables, from an on-demand environment's."""
    env = {name: value for name, value in environment.items() if name not in ABSENT_VARIABLES}
    env["AWS_LAMBDA_INITIALIZATION_TYPE"] = INITIALIZATION_TYPE
    return env


@dataclass
class VersionSnapshot:
    """The initialised process of one version, from which its environments are restored."""

    key: str
    spec: FunctionSpec
    _server: Forkserver | None = None
    _pid: int = 0
    _record: PidRecord | None = None
    _in_namespace: bool = False
    _init_logs: list[LogEvent] = field(default_factory=list)
    _failure: InitFailed | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ensure(self) -> None:
        """Create the snapshot once (the version's init). Raises InitFailed, every time, when the
        init failed: the version cannot start environments, as on AWS (State: Failed)."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._server is not None and self._server.alive:
                return
            try:
                self._create()
            except SnapshotInitFailed as failure:
                if failure.permanent:
                    self._failure = failure
                raise

    def take_init_logs(self) -> list[LogEvent]:
        """The version's init log (INIT_START, its output, INIT_REPORT), once: the executor
        writes it to the log stream of the environment that waited for it."""
        with self._lock:
            logs, self._init_logs = self._init_logs, []
            return logs

    def _create(self) -> None:
        spec = self.spec
        server, info = TemplateLauncher.for_spec(spec).server_info()
        self._in_namespace = info.mount_namespaces
        api = RuntimeApiServer()
        ours, theirs = channel_pair()
        snapshot = Forkserver(SocketChannel(ours), f"snapshot of {self.key}")

        def ready(greeting: Future[dict[str, Any]]) -> None:
            if greeting.exception() is None:
                api.post(RuntimeEvent(EventKind.READY))

        snapshot.on_greeting(ready)
        exited = threading.Event()

        def on_exit(status: int | None) -> None:
            exited.set()
            snapshot.close()
            if self._record is not None:
                self._record.remove()
            api.post(RuntimeEvent(EventKind.EXITED, exit_code=status))

        read_fd, write_fd = os.pipe()
        init_log = [LogEvent(_now_ms(), report.init_start_line(spec.runtime))]
        output = shared_reader().watch(read_fd, init_log.append)
        request = spec.launch_request(api.address, info.mount_namespaces, None)
        request["snapshot_control_index"] = 1
        started = time.monotonic()
        try:
            pid = server.spawn(request, [write_fd, theirs.fileno()], on_exit)
        finally:
            os.close(write_fd)
            theirs.close()
        if spec.pids_dir is not None:
            self._record = PidRecord.create(spec.pids_dir, _record_name(self.key), pid)
        deadline = started + max(SNAPSHOT_INIT_TIMEOUT_SECONDS, spec.timeout_seconds)
        event = api.next_event(timeout=deadline - time.monotonic())
        init_ms = (time.monotonic() - started) * 1000
        if event is not None and event.kind is EventKind.READY:
            api.close()  # the snapshot asks its Runtime API nothing more
            self._server, self._pid = snapshot, pid
            output.flush()
            self._init_logs = [
                *init_log,
                LogEvent(_now_ms(), f"INIT_REPORT Init Duration: {init_ms:.2f} ms"),
            ]
            LOG.info(
                "SnapStart snapshot of %s ready (pid %s, init %.0f ms)", self.key, pid, init_ms
            )
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        exited.wait(timeout=5)
        snapshot.close()
        api.close()
        if event is not None and event.kind is EventKind.INIT_ERROR:
            payload, error_type = event.body, event.error_type or "Runtime.Unknown"
        elif event is None:
            error_type = "Runtime.InitTimeout"
            payload = error_payload(error_type, "the SnapStart init did not finish in time")
        else:
            error_type = "Runtime.ExitError"
            payload = error_payload(error_type, report.exit_message("", event.exit_code))
        output.flush()
        events = [*init_log, LogEvent(_now_ms(), report.init_report_line(init_ms, error_type))]
        # Only the function's own init error fails the version for good; a snapshot process
        # that was killed or timed out is made again by the next environment that needs it.
        permanent = event is not None and event.kind is EventKind.INIT_ERROR
        raise SnapshotInitFailed(payload, events, permanent=permanent)

    def restore(
        self,
        spec: FunctionSpec,
        runtime_api_address: str,
        output_fd: int,
        cgroups: EnvironmentCgroups | None,
        on_exit: ExitCallback,
    ) -> int:
        server = self._server
        if server is None:
            raise InitFailed(
                error_payload("SnapStartNotReadyException", "no snapshot"),
                "",
                "SnapStartNotReadyException",
            )
        env = spec.process_environment(runtime_api_address, self._in_namespace)
        request = {
            "op": "restore",
            "env": env,
            "cwd": env["LAMBDA_TASK_ROOT"],
            "cgroup_procs": cgroups.procs_files() if cgroups is not None else [],
            "rlimits": [list(limit) for limit in _resource_limits()],
        }
        return server.spawn(request, [output_fd], on_exit)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.close()
                self._server = None
            if self._pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._pid, signal.SIGKILL)
                self._pid = 0
            if self._record is not None:
                self._record.remove()


def _resource_limits() -> tuple[tuple[str, int, int], ...]:
    from localcloud_ext.environment import RESOURCE_LIMITS

    return RESOURCE_LIMITS


def _record_name(key: str) -> str:
    return "snapshot-" + re.sub(r"[^A-Za-z0-9_.-]", "_", key.rsplit(":function:", 1)[-1])


class SnapshotLauncher:
    """environment.Launcher: each process of an environment a restore of its version's snapshot
    (a crashed or timed-out environment is restored again, as on AWS)."""

    restores = True

    def __init__(self, snapshot: VersionSnapshot) -> None:
        self.snapshot = snapshot

    def prepare(self) -> None:
        self.snapshot.ensure()

    def launch(
        self,
        spec: FunctionSpec,
        runtime_api_address: str,
        output_fd: int,
        cgroups: EnvironmentCgroups | None,
        on_exit: ExitCallback,
    ) -> int:
        return self.snapshot.restore(spec, runtime_api_address, output_fd, cgroups, on_exit)


_snapshots: dict[str, VersionSnapshot] = {}
_snapshots_lock = threading.Lock()


def launcher_for(key: str, spec: FunctionSpec) -> SnapshotLauncher:
    """The launcher of a SnapStart version (`key`: its qualified ARN); the first caller's spec
    makes the snapshot."""
    with _snapshots_lock:
        snapshot = _snapshots.get(key)
        if snapshot is None:
            snapshot = _snapshots[key] = VersionSnapshot(key, spec)
    return SnapshotLauncher(snapshot)


def discard(key: str) -> None:
    """The version is gone: end its snapshot (its environments are stopped by LocalStack)."""
    with _snapshots_lock:
        snapshot = _snapshots.pop(key, None)
    if snapshot is not None:
        snapshot.close()


def discard_all() -> None:
    with _snapshots_lock:
        snapshots = list(_snapshots.values())
        _snapshots.clear()
    for snapshot in snapshots:
        snapshot.close()
