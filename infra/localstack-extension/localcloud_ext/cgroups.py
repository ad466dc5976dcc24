"""A cgroup per execution environment: MemorySize enforced (memory controller) and 1,024
processes and threads (pids controller), as Lambda's limits are per environment.

Where it works: the cgroup v1 hierarchies at /sys/fs/cgroup/{memory,pids}, writable as root.
Where no cgroup can be made (no root, cgroup v2 only without delegated controllers), environments
run without either limit, and the executor logs that once. RLIMIT_NPROC is no substitute: the
kernel counts it per user across all processes (every environment runs as the same user), so one
environment's fork bomb would starve all the others; and root ignores it.

Layout: PARENT/<environment id>, the parents (one per controller, one local cloud's environments)
named by `infra/localcloud` in LOCALCLOUD_MEMORY_CGROUP and LOCALCLOUD_PIDS_CGROUP; it also
removes what a crashed LocalStack left (`scripts/localcloud down`). Stdlib only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from localcloud_ext import contract

LOG = logging.getLogger(__name__)

MEMORY_PARENT_VARIABLE = contract.MEMORY_CGROUP_VARIABLE
PIDS_PARENT_VARIABLE = contract.PIDS_CGROUP_VARIABLE
# Lambda: "Execution processes/threads: 1,024" per execution environment.
PIDS_PER_ENVIRONMENT = 1024


def parents() -> tuple[Path, Path] | None:
    """(memory, pids) parent cgroups of this local cloud's environments; None: no cgroups."""
    memory, pids = os.environ.get(MEMORY_PARENT_VARIABLE), os.environ.get(PIDS_PARENT_VARIABLE)
    return (Path(memory), Path(pids)) if memory and pids else None


@dataclass(frozen=True)
class EnvironmentCgroups:
    """The cgroups of one environment incarnation (memory and pids)."""

    directories: tuple[Path, ...]
    memory: Path | None

    @classmethod
    def create(
        cls, parents: tuple[Path, Path], environment_id: str, memory_mb: int
    ) -> EnvironmentCgroups:
        """Raises OSError when a cgroup cannot be made (the caller runs without limits)."""
        memory = parents[0] / environment_id
        pids = parents[1] / environment_id
        made: list[Path] = []
        try:
            for directory in (memory, pids):
                directory.mkdir(parents=True, exist_ok=True)
                made.append(directory)
            (memory / "memory.limit_in_bytes").write_text(str(memory_mb * 1024 * 1024))
            # No swap either, as on Lambda (only where swap accounting is on).
            swap_limit = memory / "memory.memsw.limit_in_bytes"
            if swap_limit.exists():
                with contextlib.suppress(OSError):
                    swap_limit.write_text(str(memory_mb * 1024 * 1024))
            (pids / "pids.max").write_text(str(PIDS_PER_ENVIRONMENT))
        except OSError:
            for directory in made:
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise
        return cls((memory, pids), memory)

    def procs_files(self) -> list[str]:
        return [str(directory / "cgroup.procs") for directory in self.directories]

    def out_of_memory(self) -> bool:
        """True once the kernel's OOM killer killed a process of this environment."""
        if self.memory is None:
            return False
        try:
            for line in (self.memory / "memory.oom_control").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value) > 0
            # Older kernels have no oom_kill counter: the limit was hit and a process died.
            return int((self.memory / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def kill_all(self) -> None:
        """SIGKILL every process left in the environment (one that left its process group too)."""
        for directory in self.directories:
            for pid in _members(directory):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Remove the cgroups once empty; False when a process is still in one."""
        removed = True
        for directory in self.directories:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
        return removed


def _members(directory: Path) -> list[int]:
    try:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
