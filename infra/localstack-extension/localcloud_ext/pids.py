"""Records of the function processes this local cloud started, so that a stop that LocalStack
did not get to (a crash, a SIGKILL) can still end them by PID, and only them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): with the PID, it names one process
    for the whole life of the machine, so a reused PID is never mistaken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]


@dataclass(frozen=True)
class PidRecord:
    path: Path
    pid: int
    start_time: str

    @classmethod
    def create(
        cls, directory: Path, environment_id: str, pid: int, function_name: str = ""
    ) -> PidRecord:
        """`function_name` is a third field: a forked environment's /proc/PID/environ still shows
        the runtime template's variables, so tools find a function's processes here."""
        directory.mkdir(parents=True, exist_ok=True)
        record = cls(directory / f"{environment_id}.pid", pid, process_start_time(pid) or "")
        record.path.write_text(f"{pid} {record.start_time} {function_name}".rstrip() + "\n")
        return record

    def remove(self) -> None:
        """Remove the file if it still describes this process (a respawn may have replaced it)."""
        with contextlib.suppress(OSError):
            # Empty while its writer is still at it: that writer sees the exit and removes it.
            fields = self.path.read_text().split()
            if fields and fields[0] == str(self.pid):
                self.path.unlink()
