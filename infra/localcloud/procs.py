"""Processes we started, identified by PID *and* start time, so a recycled PID is never signalled.

A pid file holds ``PID STARTTIME`` where STARTTIME is field 22 of ``/proc/PID/stat`` (clock ticks
since boot). The executor in the LocalStack extension writes function pid files in the same format.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int
    starttime: int


def parse_stat(text: str) -> ProcStat:
    """Parse ``/proc/PID/stat``; ``comm`` may contain spaces and parentheses."""
    head, _, rest = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = rest.split()
    # fields[0] is field 3 (state); field N is fields[N - 3].
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        state=fields[0],
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        starttime=int(fields[19]),
    )


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def exited(stat: ProcStat) -> bool:
    """A zombie or dead entry: the process has ended, only its table entry is left."""
    return stat.state in ("Z", "X")


def is_alive(pid: int, proc: Path = PROC) -> bool:
    """True while the process exists and is not a zombie."""
    stat = read_stat(pid, proc)
    return stat is not None and not exited(stat)


@dataclass(frozen=True)
class ProcessRecord:
    """A process we started: PID plus its start time, which together never repeat."""

    pid: int
    starttime: int

    @classmethod
    def of(cls, pid: int, proc: Path = PROC) -> ProcessRecord | None:
        stat = read_stat(pid, proc)
        return None if stat is None else cls(pid, stat.starttime)

    def format(self) -> str:
        return f"{self.pid} {self.starttime}\n"

    @classmethod
    def parse(cls, text: str) -> ProcessRecord:
        pid_text, starttime_text = text.split()[:2]
        pid, starttime = int(pid_text), int(starttime_text)
        if pid <= 1:
            raise ValueError(f"refusing pid {pid}")
        return cls(pid, starttime)

    def stat(self, proc: Path = PROC) -> ProcStat | None:
        """The live process, or None when this PID is gone, a zombie, or a different process."""
        stat = read_stat(self.pid, proc)
        if stat is None or exited(stat) or stat.starttime != self.starttime:
            return None
        return stat

    def is_running(self, proc: Path = PROC) -> bool:
        return self.stat(proc) is not None


def write_pidfile(path: Path, record: ProcessRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(record.format())
    tmp.replace(path)


def read_pidfile(path: Path) -> ProcessRecord | None:
    """The record in ``path``; None when missing or malformed (logged)."""
    try:
        return ProcessRecord.parse(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        logger.warning("ignoring malformed pid file %s: %s", path, e)
        return None


def _signal_group_or_pid(record: ProcessRecord, sig: signal.Signals, group: bool) -> None:
    try:
        if group:
            os.killpg(record.pid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as e:
        logger.warning("cannot signal pid %d: %s", record.pid, e)


def wait_gone(record: ProcessRecord, timeout: float, proc: Path = PROC) -> bool:
    deadline = time.monotonic() + timeout
    while record.is_running(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def group_members(pgid: int, proc: Path = PROC) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members: list[int] = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name), proc)
            if stat is not None and stat.pgid == pgid and not exited(stat):
                members.append(stat.pid)
    return members


def group_alive(pgid: int, proc: Path = PROC) -> bool:
    """True while a live process is left in group ``pgid``. Zombies do not count: an orphan's
    zombie lingers until init reaps it."""
    return bool(group_members(pgid, proc))


def stop(
    record: ProcessRecord,
    name: str,
    grace: float = 10.0,
    group: bool = True,
    proc: Path = PROC,
) -> str:
    """SIGTERM (to the process group when ``group``), wait ``grace`` s, then SIGKILL.

    Signals only when ``record`` still names the process we started; returns what happened.
    A group is only signalled when its leader is ``record`` (pgid == pid), i.e. started with
    start_new_session; while the group has members its id cannot be reused.
    """
    stat = record.stat(proc)
    if stat is None:
        return f"{name}: pid {record.pid} not running"
    use_group = group and stat.pgid == record.pid and stat.pgid != os.getpgrp()
    _signal_group_or_pid(record, signal.SIGTERM, use_group)
    if wait_gone(record, grace, proc):
        outcome = f"{name}: pid {record.pid} stopped (SIGTERM)"
    else:
        logger.warning(
            "%s: pid %d still running after %.0f s, sending SIGKILL", name, record.pid, grace
        )
        _signal_group_or_pid(record, signal.SIGKILL, use_group)
        wait_gone(record, 5.0, proc)
        outcome = f"{name}: pid {record.pid} killed (SIGKILL after {grace:.0f} s)"
    if use_group and (members := group_members(record.pid, proc)):
        # the leader is gone but members remain (e.g. a worker that ignored SIGTERM)
        _signal_group_or_pid(record, signal.SIGKILL, True)
        poll(lambda: not group_alive(record.pid, proc), 5.0, interval=0.05)
        outcome += f"; leftover group members {members} killed"
    return outcome


def kill_group(record: ProcessRecord, proc: Path = PROC) -> bool:
    """SIGKILL a process-group leader we started (verified by start time); True if signalled."""
    stat = record.stat(proc)
    if stat is None:
        return False
    if stat.pgid == record.pid and stat.pgid != os.getpgrp():
        _signal_group_or_pid(record, signal.SIGKILL, True)
    else:
        _signal_group_or_pid(record, signal.SIGKILL, False)
    return True


# --- ports --------------------------------------------------------------------------------


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (tries to bind it, then lets it go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def listening_inodes(port: int, proc: Path = PROC) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address), from /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10:
                continue
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(inode)
    return inodes


def port_owners(port: int, proc: Path = PROC) -> list[tuple[int, str]]:
    """(pid, command line) of processes holding a socket listening on ``port``, when visible."""
    inodes = listening_inodes(port, proc)
    if not inodes:
        return []
    targets = {f"socket:[{i}]" for i in inodes}
    owners: list[tuple[int, str]] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if links & targets:
            owners.append((int(entry.name), cmdline(int(entry.name), proc)))
    return owners


def cmdline(pid: int, proc: Path = PROC) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def describe_port_owner(port: int, proc: Path = PROC) -> str:
    owners = port_owners(port, proc)
    if not owners:
        return "a process this user cannot see"
    return ", ".join(f"pid {pid} ({cmd[:120]})" for pid, cmd in owners)


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Call ``condition`` until it is true or ``timeout`` s passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
