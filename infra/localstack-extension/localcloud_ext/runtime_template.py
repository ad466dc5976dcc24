"""The runtime template: a process per Lambda runtime interpreter that has imported AWS's runtime
interface client and the managed runtime's libraries, and forks execution environments on request.

It runs in the runtime's interpreter (`runtimes/python3.X/bin/python runtime_template.py FD`),
not in LocalStack: standard library only, Python 3.10+. LocalStack talks to it over a
SOCK_SEQPACKET socket (FD): one JSON message per packet, descriptors passed with SCM_RIGHTS.

  LocalStack -> template   {"op": "spawn", "id": N, ...EnvironmentRequest}  fds: [output, (control)]
  template -> LocalStack   {"op": "hello", "mount_namespaces": bool, "reason": str}
                           {"op": "spawned", "id": N, "pid": P}
                           {"op": "spawn_failed", "id": N, "error": str}
                           {"op": "exited", "pid": P, "status": S}   (S as Popen.returncode)

A spawned environment is a fork: its own session and process group, cgroups, resource limits,
mount namespace (the code at /var/task), environment, working directory and Runtime API address.
It then imports the handler through awslambdaric as on AWS, so its Init Duration is its own.

SnapStart: a spawn with a control descriptor is a version's snapshot. It inits as on AWS
(AWS_LAMBDA_INITIALIZATION_TYPE=snap-start: import, then the before-snapshot hooks), and where
awslambdaric asks the Runtime API for `restore/next` (the moment AWS takes the snapshot), it says
"snapshot_ready" on its control socket and serves the same protocol there: each restore is a fork
that returns from `restore/next`, so awslambdaric runs the after-restore hooks in it and then serves
invocations on that environment's own Runtime API.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import sys
from typing import Any

# Run by path: our package's directory must not shadow the function's modules (report, runtimes...).
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

MAX_PACKET = 1 << 20
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 4096, 16384, 1 << 18
TASK_ROOT = "/var/task"
LAYERS_ROOT = "/opt"


def preload() -> None:
    """What every environment of this runtime shares, read once (copy-on-write after fork).

    Not awslambdaric.lambda_runtime_client (nor bootstrap and __main__, which import it): its C
    client takes AWS_LAMBDA_RUNTIME_API when imported, once per process, so each environment
    imports it itself, with its own address. The rest of awslambdaric and its imports are here.
    """
    for module in (
        "awslambdaric",
        "awslambdaric.lambda_context",
        "awslambdaric.lambda_runtime_exception",
        "awslambdaric.lambda_runtime_log_utils",
        "awslambdaric.lambda_runtime_marshaller",
        "awslambdaric.lambda_config",
        "awslambdaric.lambda_runtime_hooks_runner",
        "http.client",
        "importlib",
        "traceback",
        "boto3",
        "boto3.session",
        "botocore.session",
        "snapshot_restore_py",
    ):
        with contextlib.suppress(ImportError):
            __import__(module)
    gc.collect()
    # Objects that survive the preload move to the permanent generation: a collection in an
    # environment then never writes to their pages, which stay shared.
    gc.freeze()


# --- messages ----------------------------------------------------------------------------


def send(channel: socket.socket, message: dict[str, Any]) -> None:
    channel.sendall(json.dumps(message).encode())


def receive(channel: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _flags, _address = socket.recv_fds(channel, MAX_PACKET, 4)
    if not data:
        return None, fds
    return json.loads(data), fds


# --- the fork server ---------------------------------------------------------------------


def serve(channel: socket.socket, greeting: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """Fork on each spawn request; report children's exits. Returns only in a forked child, with
    its request and descriptors. Exits when LocalStack closes the channel."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ, "channel")
    selector.register(wake_read, selectors.EVENT_READ, "child")
    send(channel, greeting)
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                _drain(wake_read)
                _report_exits(channel)
                continue
            request, fds = receive(channel)
            if request is None:
                os._exit(0)
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                pid = os.fork()
            except OSError as error:
                for fd in fds:
                    os.close(fd)
                send(channel, {"op": "spawn_failed", "id": request["id"], "error": str(error)})
                continue
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                selector.close()
                for fd in (wake_read, wake_write):
                    os.close(fd)
                channel.close()
                return request, fds
            for fd in fds:
                os.close(fd)
            send(channel, {"op": "spawned", "id": request["id"], "pid": pid})


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _report_exits(channel: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        send(channel, {"op": "exited", "pid": pid, "status": code})


# --- becoming an environment -------------------------------------------------------------


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _encode(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def _mount(
    libc: Any,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
) -> None:
    encode = _encode
    _check(
        libc.mount(
            encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)
        ),
        f"mount {source} on {target}",
    )


def enter_mount_namespace(task_root: str, layers: list[str]) -> None:
    """The code at /var/task (read-only) and the layers at /opt, in a mount namespace of this
    process's own; mounts are made private first, so nothing reaches the host's namespace."""
    libc = _libc()
    _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount(libc, task_root, TASK_ROOT, None, _MS_BIND)
    _mount(libc, None, TASK_ROOT, None, _MS_BIND | 32 | _MS_RDONLY)  # MS_REMOUNT = 32
    if len(layers) == 1:
        _mount(libc, layers[0], LAYERS_ROOT, None, _MS_BIND)
    elif layers:
        # As Lambda extracts them into /opt in order: a later layer's file wins.
        lower = ":".join(reversed(layers))
        _mount(libc, "overlay", LAYERS_ROOT, "overlay", _MS_RDONLY, f"lowerdir={lower}")
    else:
        _mount(libc, "tmpfs", LAYERS_ROOT, "tmpfs", _MS_RDONLY, "size=4k")


def probe_mount_namespace() -> tuple[bool, str]:
    """Whether environments can get /var/task: tried once, in a throwaway child."""
    try:
        os.makedirs(TASK_ROOT, exist_ok=True)
    except OSError as error:
        return False, f"cannot create {TASK_ROOT}: {error}"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            enter_mount_namespace(os.path.dirname(os.path.abspath(__file__)), [])
            os.write(write_fd, b"ok")
        except OSError as error:
            os.write(write_fd, str(error).encode())
        os._exit(0)
    os.close(write_fd)
    answer = os.read(read_fd, 4096).decode(errors="replace")
    os.close(read_fd)
    os.waitpid(pid, 0)
    return answer == "ok", "" if answer == "ok" else answer


def become_environment(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: the isolation and identity of one execution environment."""
    os.setsid()
    for procs_file in request.get("cgroup_procs", []):
        with open(procs_file, "w") as cgroup:
            cgroup.write(str(os.getpid()))
    for name, soft, hard in request.get("rlimits", []):
        resource.setrlimit(getattr(resource, name), (soft, hard))
    output = fds[0]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(devnull)
    os.close(output)
    env = request["env"]
    os.environ.clear()
    os.environ.update(env)
    if request.get("mount_namespace"):
        enter_mount_namespace(request["host_task_root"], request.get("layers", []))
    os.chdir(request["cwd"])


def run_runtime(request: dict[str, Any]) -> None:
    """awslambdaric's own entry point, as `python -m awslambdaric HANDLER` would run it."""
    exec_argv = request.get("exec")
    if exec_argv:
        # AWS_LAMBDA_EXEC_WRAPPER: the wrapper gets the runtime's command line as its arguments.
        try:
            os.execve(exec_argv[0], exec_argv, os.environ)
        except OSError as error:
            print(f"{exec_argv[0]}: {error.strerror}", file=sys.stderr, flush=True)
            os._exit(127 if not os.path.exists(exec_argv[0]) else 126)
    for path in reversed(request.get("sys_path", [])):
        sys.path.insert(0, path)
    sys.argv = ["awslambdaric", request["handler"]]
    if request.get("snapshot_control") is not None:
        _snapshot_at_restore_next(request["snapshot_control"])
    entry_point: Any = importlib.import_module("awslambdaric.__main__")
    try:
        entry_point.main(sys.argv)
    except SystemExit as exit_:
        sys.stdout.flush()
        sys.stderr.flush()
        code = exit_.code
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))
    os._exit(0)


DEADLINE_HEADER = "Lambda-Runtime-Deadline-Ms"


class HttpRuntimeClient:
    """The Runtime API calls of awslambdaric's C client (`runtime_client`), over http.client.

    A restored environment needs it: the snapshot imported the C client with the snapshot's own
    Runtime API address, and the C client cannot be pointed elsewhere afterwards. Same requests,
    same headers, one kept-alive connection.
    """

    def __init__(self, address: str) -> None:
        import http.client

        self._connection = http.client.HTTPConnection(address)

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        connection = self._connection
        if connection.sock is None:
            connection.connect()
            sock: Any = connection.sock
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"Runtime API {method} {path}: {response.status}")
        return data, dict(response.getheaders())

    def next(self) -> tuple[bytes, dict[str, Any]]:
        body, headers = self._request("GET", "/2018-06-01/runtime/invocation/next")
        # The C client hands the deadline on as a number (the context computes with it).
        answer: dict[str, Any] = dict(headers)
        deadline = headers.get(DEADLINE_HEADER)
        if deadline is not None:
            answer[DEADLINE_HEADER] = int(deadline)
        return body, answer

    def post_invocation_result(
        self, invoke_id: str, result: bytes, content_type: str, invocation_id: str | None = None
    ) -> None:
        self._request(
            "POST",
            f"/2018-06-01/runtime/invocation/{invoke_id}/response",
            result,
            {"Content-Type": content_type},
        )

    def post_error(
        self,
        invoke_id: str,
        error_response_data: str,
        xray_fault: str,
        invocation_id: str | None = None,
    ) -> None:
        try:
            error_type = str(json.loads(error_response_data).get("errorType", ""))
        except (ValueError, AttributeError):
            error_type = ""
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Function-Error-Type": error_type or "Runtime.Unknown",
        }
        if xray_fault:
            headers["Lambda-Runtime-Function-XRay-Error-Cause"] = xray_fault
        self._request(
            "POST",
            f"/2018-06-01/runtime/invocation/{invoke_id}/error",
            error_response_data.encode(),
            headers,
        )


def _snapshot_at_restore_next(control_fd: int) -> None:
    """Make awslambdaric's `restore/next` the snapshot: serve restores from here."""
    runtime_client_module: Any = importlib.import_module("awslambdaric.lambda_runtime_client")

    def restore_next(client: Any) -> None:
        channel = socket.socket(fileno=control_fd)
        sys.stdout.flush()
        sys.stderr.flush()
        gc.collect()
        gc.freeze()
        request, fds = serve(channel, {"op": "snapshot_ready"})
        become_environment(request, fds)
        address = os.environ["AWS_LAMBDA_RUNTIME_API"]
        client.lambda_runtime_address = address
        runtime_client_module.runtime_client = HttpRuntimeClient(address)

    runtime_client_module.BaseLambdaRuntimeClient.restore_next = restore_next


def main() -> None:
    channel = socket.socket(fileno=int(sys.argv[1]))
    preload()
    mount_ok, reason = probe_mount_namespace()
    request, fds = serve(channel, {"op": "hello", "mount_namespaces": mount_ok, "reason": reason})
    control = request.get("snapshot_control_index")
    if control is not None:
        request["snapshot_control"] = fds.pop(control)
    try:
        become_environment(request, fds)
    except OSError as error:
        print(
            f"local cloud: could not set up the execution environment: {error}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(125)
    run_runtime(request)


if __name__ == "__main__":
    main()
