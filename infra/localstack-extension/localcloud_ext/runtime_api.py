"""The Lambda Runtime API of every function process, served from one thread.

AWS's runtime interface client (`awslambdaric`) inside the function process long-polls
`GET /2018-06-01/runtime/invocation/next`, runs the handler, and posts the result back. Each
process incarnation gets its own endpoint (a listening socket on 127.0.0.1, its
AWS_LAMBDA_RUNTIME_API), and what its runtime does becomes `RuntimeEvent`s on one queue, so the
environment that owns it can wait for "ready", "response", "error" or "process exited" with a
single blocking `get`. All endpoints share one selector loop (`_Hub`): a thousand idle
environments cost LocalStack one thread, not a server thread and a connection thread each.

Stdlib only: it runs inside LocalStack's interpreter and in the project's unit tests alike.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import json
import logging
import queue
import re
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

LOG = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime"
_INVOCATION_RESULT = re.compile(
    rf"^{API_PREFIX}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$"
)


class EventKind(enum.Enum):
    READY = "ready"  # the runtime initialised and asked for its first event
    INIT_ERROR = "init_error"  # the handler could not be loaded
    RESPONSE = "response"
    ERROR = "error"  # the handler raised
    RESTORE_ERROR = "restore_error"  # an after-restore hook raised (SnapStart)
    EXITED = "exited"  # the function process ended (posted by its owner, not by the runtime)
    STOPPED = "stopped"  # the environment is being stopped (posted by its owner)


@dataclass(frozen=True)
class RuntimeEvent:
    kind: EventKind
    request_id: str = ""
    body: bytes = b""
    error_type: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class InvocationRequest:
    """What the runtime receives from `next`: the event and its headers."""

    request_id: str
    payload: bytes
    deadline_ms: int
    invoked_function_arn: str
    trace_id: str = ""
    client_context: str | None = None
    cognito_identity: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(self.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.invoked_function_arn,
            "Lambda-Runtime-Trace-Id": self.trace_id,
        }
        if self.client_context:
            headers["Lambda-Runtime-Client-Context"] = self.client_context
        if self.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = self.cognito_identity
        return headers


@dataclass
class _State:
    """One endpoint's state: touched by the hub thread, and by its owner through locked calls."""

    events: queue.Queue[RuntimeEvent] = field(default_factory=queue.Queue)
    invocations: collections.deque[InvocationRequest] = field(default_factory=collections.deque)
    closing: bool = False
    ready_sent: bool = False
    waiting: _Connection | None = None  # the connection whose `next` awaits an invocation
    connections: set[_Connection] = field(default_factory=set)


_MAX_HEADER_BYTES = 64 * 1024
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    404: "Not Found",
    411: "Length Required",
}


class _Connection:
    """One HTTP/1.1 keep-alive connection of a runtime client: requests parsed as they arrive."""

    def __init__(self, sock: socket.socket, state: _State) -> None:
        self.sock = sock
        self.state = state
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.close_after_write = False
        self._head: tuple[str, str, dict[str, str]] | None = None
        self._continue_sent = False

    def next_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        """A whole request from what arrived so far, or None until more arrives."""
        if self._head is None:
            end = self.inbox.find(b"\r\n\r\n")
            if end < 0:
                if len(self.inbox) > _MAX_HEADER_BYTES:
                    raise ValueError("request head too large")
                return None
            lines = bytes(self.inbox[:end]).decode("latin-1").split("\r\n")
            del self.inbox[: end + 4]
            method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self._head = (method, path, headers)
            self._continue_sent = False
        method, path, headers = self._head
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ValueError("chunked request bodies are not supported")
        length = int(headers.get("content-length") or 0)
        if len(self.inbox) < length:
            if headers.get("expect", "").lower() == "100-continue" and not self._continue_sent:
                self._continue_sent = True
                self.outbox += b"HTTP/1.1 100 Continue\r\n\r\n"
            return None
        body = bytes(self.inbox[:length])
        del self.inbox[:length]
        self._head = None
        if headers.get("connection", "").lower() == "close":
            self.close_after_write = True
        return method, path, headers, body

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        head.append(f"Content-Length: {len(body)}")
        self.outbox += ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _handle(
    connection: _Connection, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    """One request of the Runtime API (on the hub thread)."""
    state = connection.state
    if method == "GET" and path == f"{API_PREFIX}/invocation/next":
        if not state.ready_sent:
            # The first `next` marks the end of the init phase.
            state.ready_sent = True
            state.events.put(RuntimeEvent(EventKind.READY))
        state.waiting = connection
        _serve_waiting(state)
        return
    if method != "POST":
        connection.reply(HTTPStatus.NOT_FOUND)
        return
    error_type = headers.get("lambda-runtime-function-error-type", "")
    if path == f"{API_PREFIX}/init/error":
        event = RuntimeEvent(EventKind.INIT_ERROR, body=body, error_type=error_type)
    elif path == f"{API_PREFIX}/restore/error":
        event = RuntimeEvent(EventKind.RESTORE_ERROR, body=body, error_type=error_type)
    elif (match := _INVOCATION_RESULT.match(path)) is not None:
        kind = EventKind.RESPONSE if match["kind"] == "response" else EventKind.ERROR
        event = RuntimeEvent(kind, match["id"], body, error_type if kind is EventKind.ERROR else "")
    else:
        connection.reply(HTTPStatus.NOT_FOUND)
        return
    state.events.put(event)
    connection.reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')


def _serve_waiting(state: _State) -> None:
    """Answer the pending `next` with the next invocation, if both are there."""
    connection = state.waiting
    if connection is None or not state.invocations:
        return
    state.waiting = None
    request = state.invocations.popleft()
    connection.reply(
        HTTPStatus.OK, request.payload, {"Content-Type": "application/json", **request.headers()}
    )


class _Hub:
    """The one thread and selector that serve every endpoint."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._calls: list[Callable[[], None]] = []
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="lambda-runtime-api", daemon=True)
        self._thread.start()

    def call(self, function: Callable[[], None]) -> None:
        """Run `function` on the hub thread, soon."""
        with self._lock:
            self._calls.append(function)
        with contextlib.suppress(BlockingIOError):
            self._wake_write.send(b"x")

    def listen(self, listener: socket.socket, state: _State) -> None:
        def register() -> None:
            self._selector.register(listener, selectors.EVENT_READ, (listener, state))

        self.call(register)

    def _run(self) -> None:
        while True:
            for key, mask in self._selector.select():
                if key.data is None:
                    self._run_calls()
                elif isinstance(key.data, _Connection):
                    self._service(key.data, mask)
                else:
                    self._accept(*key.data)

    def _run_calls(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_read.recv(4096):
                pass
        with self._lock:
            calls, self._calls = self._calls, []
        for function in calls:
            try:
                function()
            except Exception:  # one endpoint's trouble must not stop the others
                LOG.exception("runtime api: call failed")

    def _accept(self, listener: socket.socket, state: _State) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, OSError):
            return
        sock.setblocking(False)
        # Small request/response pairs on a kept-alive connection: without this, Nagle's
        # algorithm and delayed ACKs add ~40 ms to an invocation.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(sock, state)
        state.connections.add(connection)
        self._selector.register(sock, selectors.EVENT_READ, connection)

    def _service(self, connection: _Connection, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                data = connection.sock.recv(262144)
                if not data:
                    self.drop(connection)
                    return
                connection.inbox += data
                while (request := connection.next_request()) is not None:
                    _handle(connection, *request)
            self.flush(connection)
        except (OSError, ValueError) as error:
            LOG.debug("runtime api: dropping a connection: %s", error)
            self.drop(connection)

    def flush(self, connection: _Connection) -> None:
        """Write what the connection has to send; wait for writability when the socket is full."""
        if connection.sock.fileno() < 0:
            return
        if connection.outbox:
            try:
                sent = connection.sock.send(connection.outbox)
                del connection.outbox[:sent]
            except BlockingIOError:
                pass
        if not connection.outbox and connection.close_after_write:
            self.drop(connection)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if connection.outbox else 0)
        self._selector.modify(connection.sock, events, connection)

    def drop(self, connection: _Connection) -> None:
        state = connection.state
        state.connections.discard(connection)
        if state.waiting is connection:
            state.waiting = None
        if connection.sock.fileno() >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(connection.sock)
            connection.sock.close()

    def close_endpoint(self, listener: socket.socket, state: _State) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(listener)
        listener.close()
        for connection in list(state.connections):
            self.drop(connection)


_hub: _Hub | None = None
_hub_lock = threading.Lock()


def _the_hub() -> _Hub:
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = _Hub()
        return _hub


class RuntimeApiServer:
    """One Runtime API endpoint, for one function process incarnation."""

    def __init__(self) -> None:
        self._state = _State()
        self._hub = _the_hub()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.setblocking(False)
        self._port = int(self._listener.getsockname()[1])
        self._hub.listen(self._listener, self._state)

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """The value of AWS_LAMBDA_RUNTIME_API for the function process."""
        return f"127.0.0.1:{self.port}"

    def deliver(self, request: InvocationRequest) -> None:
        """Hand an event to the runtime's (pending or next) `next` long-poll."""
        state = self._state

        def hand_over() -> None:
            state.invocations.append(request)
            waiting = state.waiting
            _serve_waiting(state)
            if waiting is not None and state.waiting is None:
                self._hub.flush(waiting)

        self._hub.call(hand_over)

    def post(self, event: RuntimeEvent) -> None:
        """Post an event from outside the runtime (process exit, stop)."""
        self._state.events.put(event)

    def next_event(self, timeout: float | None) -> RuntimeEvent | None:
        """The next thing that happened, or None when `timeout` seconds passed first."""
        try:
            return self._state.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop serving: the listener and every connection close (on the hub thread)."""
        state, listener = self._state, self._listener
        if state.closing:
            return
        state.closing = True
        self._hub.call(lambda: self._hub.close_endpoint(listener, state))


def error_payload(error_type: str, message: str) -> bytes:
    """An error body in the shape Lambda returns for errors the runtime did not report itself."""
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()
