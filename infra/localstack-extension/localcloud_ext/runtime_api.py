"""The Lambda Runtime API for one incarnation of a function process.

AWS's runtime interface client (`awslambdaric`) inside the function process long-polls
`GET /2018-06-01/runtime/invocation/next`, runs the handler, and posts the result back. This
module serves that API on 127.0.0.1 and turns what the runtime does into `RuntimeEvent`s on one
queue, so the environment that owns it can wait for "ready", "response", "error" or "process
exited" with a single blocking `get`.

Stdlib only: it runs inside LocalStack's interpreter and in the project's unit tests alike.
"""

from __future__ import annotations

import enum
import json
import logging
import queue
import re
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime"
_INVOCATION_RESULT = re.compile(
    rf"^{API_PREFIX}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$"
)
# How often a blocked `next` long-poll checks whether its server is closing.
_NEXT_POLL_SECONDS = 0.5


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
    events: queue.Queue[RuntimeEvent] = field(default_factory=queue.Queue)
    invocations: queue.Queue[InvocationRequest] = field(default_factory=queue.Queue)
    closing: threading.Event = field(default_factory=threading.Event)
    ready_sent: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive: the runtime client reuses its connection for every call.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Small request/response pairs on a kept-alive connection: without this, Nagle's
        # algorithm and delayed ACKs add ~40 ms to an invocation.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        LOG.debug("runtime api: " + format, *args)

    def _reply(
        self, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path != f"{API_PREFIX}/invocation/next":
            self._reply(HTTPStatus.NOT_FOUND)
            return
        state = self.server.state
        with state.lock:
            if not state.ready_sent:
                # The first `next` marks the end of the init phase.
                state.ready_sent = True
                state.events.put(RuntimeEvent(EventKind.READY))
        while True:
            try:
                request = state.invocations.get(timeout=_NEXT_POLL_SECONDS)
                break
            except queue.Empty:
                if state.closing.is_set():
                    self.close_connection = True
                    return
        self._reply(
            HTTPStatus.OK,
            request.payload,
            {"Content-Type": "application/json", **request.headers()},
        )

    def do_POST(self) -> None:
        body = self._read_body()
        state = self.server.state
        if self.path == f"{API_PREFIX}/init/error":
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
            state.events.put(RuntimeEvent(EventKind.INIT_ERROR, body=body, error_type=error_type))
            self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
            return
        if self.path == f"{API_PREFIX}/restore/error":
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
            state.events.put(
                RuntimeEvent(EventKind.RESTORE_ERROR, body=body, error_type=error_type)
            )
            self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
            return
        match = _INVOCATION_RESULT.match(self.path)
        if match is None:
            self._reply(HTTPStatus.NOT_FOUND)
            return
        if match["kind"] == "response":
            event = RuntimeEvent(EventKind.RESPONSE, request_id=match["id"], body=body)
        else:
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
            event = RuntimeEvent(EventKind.ERROR, match["id"], body, error_type)
        state.events.put(event)
        self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of environments starting at once must not overflow the listen queue.
    request_queue_size = 64

    def __init__(self, state: _State) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)


class RuntimeApiServer:
    """One Runtime API endpoint, for one function process incarnation."""

    def __init__(self) -> None:
        self._state = _State()
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name=f"lambda-runtime-api-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """The value of AWS_LAMBDA_RUNTIME_API for the function process."""
        return f"127.0.0.1:{self.port}"

    def deliver(self, request: InvocationRequest) -> None:
        """Hand an event to the runtime's (pending or next) `next` long-poll."""
        self._state.invocations.put(request)

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
        """Stop serving. Returns at once: the serving thread winds down in the background."""
        self._state.closing.set()
        threading.Thread(
            target=self._shut_down, name="lambda-runtime-api-close", daemon=True
        ).start()

    def _shut_down(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def error_payload(error_type: str, message: str) -> bytes:
    """An error body in the shape Lambda returns for errors the runtime did not report itself."""
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()
