"""LocalStack's side of the runtime template (`runtime_template.py`): a fork server per runtime
interpreter, and per SnapStart version its snapshot, which serves restores the same way.

Function processes are children of the template (or of the snapshot), not of LocalStack: their
exits arrive as messages on the server's channel, read by one thread per server (a runtime or a
version), never one per process.

Stdlib only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from localcloud_ext.pids import PidRecord

if TYPE_CHECKING:  # environment.py imports this module
    from localcloud_ext.cgroups import EnvironmentCgroups
    from localcloud_ext.environment import FunctionSpec

LOG = logging.getLogger(__name__)

TEMPLATE_SCRIPT = Path(__file__).with_name("runtime_template.py")
MAX_PACKET = 1 << 20
SPAWN_TIMEOUT_SECONDS = 30.0
GREETING_TIMEOUT_SECONDS = 60.0

ExitCallback = Callable[[int | None], None]  # the exit status as Popen.returncode; None: unknown


class ForkserverGone(Exception):
    """The template or snapshot is not running (any more)."""


class Channel(Protocol):
    """One message per packet, with descriptors beside it (a SOCK_SEQPACKET socket here)."""

    def send(self, message: dict[str, Any], fds: list[int]) -> None: ...

    def receive(self) -> dict[str, Any] | None:
        """The next message; None once the other side is gone."""
        ...

    def close(self) -> None: ...


class SocketChannel:
    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock

    def send(self, message: dict[str, Any], fds: list[int]) -> None:
        socket.send_fds(self._socket, [json.dumps(message).encode()], fds)

    def receive(self) -> dict[str, Any] | None:
        try:
            data, _fds, _flags, _address = socket.recv_fds(self._socket, MAX_PACKET, 0)
        except OSError:
            return None
        return json.loads(data) if data else None

    def close(self) -> None:
        # shutdown wakes the reader blocked in recv; the server sees end of file and exits.
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._socket.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class _Pending:
    future: Future[int]
    on_exit: ExitCallback


class Forkserver:
    """One fork server's channel: spawn requests out, spawned/exited messages in."""

    def __init__(
        self, channel: Channel, name: str, kill_group: Callable[[int], None] = _kill_group
    ) -> None:
        self.name = name
        self._channel = channel
        self._kill_group = kill_group
        self._lock = threading.Lock()  # the pending spawns and the children
        self._send_lock = threading.Lock()  # one message at a time on the channel
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._children: dict[int, ExitCallback] = {}
        self._greeting: Future[dict[str, Any]] = Future()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name=f"forkserver-{name}", daemon=True)
        self._reader.start()

    # --- what the server said ------------------------------------------------------------

    def greeting(self, timeout: float = GREETING_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The server's first message (hello, or snapshot_ready). Raises ForkserverGone."""
        return self._greeting.result(timeout=timeout)

    def on_greeting(self, callback: Callable[[Future[dict[str, Any]]], None]) -> None:
        self._greeting.add_done_callback(callback)

    @property
    def alive(self) -> bool:
        return not self._closed

    # --- spawning ------------------------------------------------------------------------

    def spawn(self, request: dict[str, Any], fds: list[int], on_exit: ExitCallback) -> int:
        """Fork one process with `request`; returns its PID. `on_exit` is called (on the reader
        thread) once it ended. The caller keeps and closes its own copies of `fds`."""
        with self._lock:
            if self._closed:
                raise ForkserverGone(f"{self.name} is not running")
            request_id = next(self._ids)
            pending = _Pending(Future(), on_exit)
            self._pending[request_id] = pending
        # Not under _lock: a send may wait for the server, which may wait for the reader.
        try:
            with self._send_lock:
                self._channel.send({**request, "id": request_id}, fds)
        except OSError as error:
            with self._lock:
                self._pending.pop(request_id, None)
            raise ForkserverGone(f"{self.name}: {error}") from error
        try:
            return pending.future.result(timeout=SPAWN_TIMEOUT_SECONDS)
        except TimeoutError as error:
            raise ForkserverGone(f"{self.name} did not answer a spawn") from error

    def close(self) -> None:
        """End the channel: the server exits; its children stay until their owners stop them."""
        with self._lock:
            self._closed = True
        self._channel.close()

    # --- the reader ----------------------------------------------------------------------

    def _read(self) -> None:
        while (message := self._channel.receive()) is not None:
            self._handle(message)
        self._gone()

    def _handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if not self._greeting.done():
            self._greeting.set_result(message)
            return
        if op == "spawned":
            with self._lock:
                pending = self._pending.pop(message["id"])
                # Registered here, on the reader thread, before any exit message is read.
                self._children[message["pid"]] = pending.on_exit
            pending.future.set_result(message["pid"])
        elif op == "spawn_failed":
            with self._lock:
                pending = self._pending.pop(message["id"])
            pending.future.set_exception(ForkserverGone(f"{self.name}: {message['error']}"))
        elif op == "exited":
            with self._lock:
                callback = self._children.pop(message["pid"], None)
            if callback is not None:
                _call(callback, message["status"])

    def _gone(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
            children, self._children = dict(self._children), {}
        if not self._greeting.done():
            self._greeting.set_exception(ForkserverGone(f"{self.name} ended before it was ready"))
        for item in pending:
            item.future.set_exception(ForkserverGone(f"{self.name} ended"))
        # Nobody is left to report their exits: end them, so no environment waits forever.
        for pid, callback in children.items():
            self._kill_group(pid)
            _call(callback, None)
        self._channel.close()


def _call(callback: ExitCallback, status: int | None) -> None:
    try:
        callback(status)
    except Exception:  # one environment's bookkeeping must not stop the reader
        LOG.exception("exit callback failed")


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(ours, theirs): a message channel; `theirs` is inheritable, for the server."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.set_inheritable(True)
    return ours, theirs


# --- templates, one per runtime interpreter ----------------------------------------------


@dataclass(frozen=True)
class TemplateInfo:
    mount_namespaces: bool
    reason: str  # why not, when not


class RuntimeTemplate:
    """The template process of one interpreter, started on first use and again if it died."""

    def __init__(self, interpreter: Path, pids_dir: Path | None) -> None:
        self.interpreter = interpreter
        self._pids_dir = pids_dir
        self._lock = threading.Lock()
        self._server: Forkserver | None = None
        self._info = TemplateInfo(False, "not started")

    def server(self) -> tuple[Forkserver, TemplateInfo]:
        with self._lock:
            if self._server is None or not self._server.alive:
                self._server, self._info = self._start()
            return self._server, self._info

    def _start(self) -> tuple[Forkserver, TemplateInfo]:
        ours, theirs = channel_pair()
        env = {
            "PATH": f"{self.interpreter.parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        try:
            process = subprocess.Popen(
                [str(self.interpreter), str(TEMPLATE_SCRIPT), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        # Its exit is LocalStack's to collect: a thread that only waits, one per runtime.
        threading.Thread(target=process.wait, name="runtime-template-wait", daemon=True).start()
        if self._pids_dir is not None:
            runtime = self.interpreter.parent.parent.name
            PidRecord.create(self._pids_dir, f"template-{runtime}", process.pid)
        server = Forkserver(SocketChannel(ours), f"runtime template {self.interpreter}")
        hello = server.greeting()
        info = TemplateInfo(bool(hello.get("mount_namespaces")), str(hello.get("reason", "")))
        if not info.mount_namespaces:
            LOG.warning(
                "functions run from their host paths, not /var/task: no mount namespace (%s)",
                info.reason,
            )
        return server, info

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.close()
                self._server = None


_templates: dict[Path, RuntimeTemplate] = {}
_templates_lock = threading.Lock()


def template_for(interpreter: Path, pids_dir: Path | None) -> RuntimeTemplate:
    with _templates_lock:
        template = _templates.get(interpreter)
        if template is None:
            template = _templates[interpreter] = RuntimeTemplate(interpreter, pids_dir)
        return template


def close_templates() -> None:
    with _templates_lock:
        templates = list(_templates.values())
        _templates.clear()
    for template in templates:
        template.close()


# --- launchers (environment.Launcher) ----------------------------------------------------


class TemplateLauncher:
    """Each process a fork of its runtime's template, which then imports the handler (an init)."""

    restores = False

    def __init__(self, template: RuntimeTemplate) -> None:
        self._template = template

    @classmethod
    def for_spec(cls, spec: FunctionSpec) -> TemplateLauncher:
        return cls(template_for(spec.interpreter, spec.pids_dir))

    def prepare(self) -> None:
        self._template.server()

    def launch(
        self,
        spec: FunctionSpec,
        runtime_api_address: str,
        output_fd: int,
        cgroups: EnvironmentCgroups | None,
        on_exit: ExitCallback,
    ) -> int:
        server, info = self._template.server()
        request = spec.launch_request(runtime_api_address, info.mount_namespaces, cgroups)
        return server.spawn(request, [output_fd], on_exit)

    def server_info(self) -> tuple[Forkserver, TemplateInfo]:
        return self._template.server()
