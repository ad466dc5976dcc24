"""The execution environments a local cloud runs, seen from outside LocalStack: their memory (Pss),
and the cgroups a crashed LocalStack left behind.

Reads the PID records the extension's executor writes under `<state>/run/functions/`:
`ENVIRONMENT_ID.pid` for an environment, `template-RUNTIME.pid` for a runtime template and
`snapshot-FUNCTION_VERSION.pid` for a SnapStart snapshot (the processes environments are forked
from). Stdlib only: the full-scale benchmark and `scripts/localcloud status` import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from localcloud import procs

SUPPORT_PREFIXES = ("template-", "snapshot-")


@dataclass(frozen=True)
class EnvironmentsMemory:
    environments: int  # running execution environments
    environments_pss_bytes: int  # their proportional set size, summed
    support_processes: int  # runtime templates and SnapStart snapshots
    support_pss_bytes: int

    @property
    def total_pss_bytes(self) -> int:
        return self.environments_pss_bytes + self.support_pss_bytes

    @property
    def pss_per_environment_bytes(self) -> float:
        return self.environments_pss_bytes / self.environments if self.environments else 0.0


def pss_bytes(pid: int, proc: Path = procs.PROC) -> int | None:
    """The process's proportional set size: its private pages plus its share of shared ones."""
    try:
        text = (proc / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def memory(functions_pids_dir: Path, proc: Path = procs.PROC) -> EnvironmentsMemory:
    """Count and total Pss of every running environment (and of what they are forked from)."""
    counts = {True: [0, 0], False: [0, 0]}
    if functions_pids_dir.is_dir():
        for path in functions_pids_dir.glob("*.pid"):
            record = procs.read_pidfile(path)
            if record is None or not record.is_running(proc):
                continue
            pss = pss_bytes(record.pid, proc)
            if pss is None:
                continue
            support = path.stem.startswith(SUPPORT_PREFIXES)
            counts[support][0] += 1
            counts[support][1] += pss
    return EnvironmentsMemory(counts[False][0], counts[False][1], counts[True][0], counts[True][1])


def function_processes(functions_pids_dir: Path, proc: Path = procs.PROC) -> dict[int, str]:
    """PID -> function name of every running environment, from the records' third field (a
    forked process's /proc/PID/environ shows the runtime template's variables, not its own)."""
    found: dict[int, str] = {}
    if functions_pids_dir.is_dir():
        for path in functions_pids_dir.glob("*.pid"):
            try:
                fields = path.read_text().split()
            except OSError:
                continue
            record = procs.read_pidfile(path)
            if len(fields) >= 3 and record is not None and record.is_running(proc):
                found[record.pid] = fields[2]
    return found


def remove_cgroups(parents: tuple[Path, ...]) -> list[str]:
    """End every process left in the environments' cgroups and remove them (`down` after a crash);
    what it did, in words."""
    messages: list[str] = []
    for parent in parents:
        if not parent.is_dir():
            continue
        for directory in sorted(p for p in parent.iterdir() if p.is_dir()):
            members = _members(directory)
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if _rmdir_once_empty(directory):
                if members:
                    messages.append(f"cgroup {directory}: {len(members)} processes killed")
            else:
                messages.append(f"cgroup {directory} could not be removed: still in use")
        with contextlib.suppress(OSError):
            parent.rmdir()
    return messages


def _members(directory: Path) -> list[int]:
    try:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _rmdir_once_empty(directory: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            directory.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)  # killed processes leave the cgroup once they are reaped
