"""Which interpreter serves which Lambda runtime.

`scripts/setup` builds one virtual environment per Python found on the machine under
`$LOCALCLOUD_RUNTIMES_DIR/pythonX.Y`, holding what AWS's managed runtime holds (awslambdaric,
boto3). A runtime with no such environment cannot run here, and says so.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from localcloud_ext import contract

RUNTIMES_DIR_VARIABLE = contract.RUNTIMES_DIR_VARIABLE
PIDS_DIR_VARIABLE = contract.PIDS_DIR_VARIABLE

_PYTHON_RUNTIME = re.compile(r"^python3\.\d+$")


class RuntimeNotAvailable(Exception):
    """The function's runtime cannot run on this machine; the message says why and what to do."""


def runtimes_dir() -> Path | None:
    value = os.environ.get(RUNTIMES_DIR_VARIABLE)
    return Path(value) if value else None


def pids_dir() -> Path | None:
    value = os.environ.get(PIDS_DIR_VARIABLE)
    return Path(value) if value else None


def available_runtimes(directory: Path | None = None) -> list[str]:
    directory = directory or runtimes_dir()
    if directory is None or not directory.is_dir():
        return []
    return sorted(
        entry.name
        for entry in directory.iterdir()
        if _PYTHON_RUNTIME.match(entry.name) and (entry / "bin" / "python").exists()
    )


def interpreter_for(runtime: str | None, directory: Path | None = None) -> Path:
    """The Python that runs `runtime`, or RuntimeNotAvailable naming the cause and the fix."""
    directory = directory or runtimes_dir()
    if runtime is None:
        raise RuntimeNotAvailable(
            "container image functions are not supported by the local cloud's process executor: "
            "deploy a zip package with a python3.x runtime"
        )
    if not _PYTHON_RUNTIME.match(runtime):
        raise RuntimeNotAvailable(
            f"runtime {runtime} is not supported by the local cloud's process executor, "
            "which runs Python runtimes (python3.x) only"
        )
    if directory is None:
        raise RuntimeNotAvailable(
            f"{RUNTIMES_DIR_VARIABLE} is not set: start LocalStack with scripts/localcloud up"
        )
    interpreter = directory / runtime / "bin" / "python"
    if not interpreter.exists():
        have = ", ".join(available_runtimes(directory)) or "none"
        raise RuntimeNotAvailable(
            f"no interpreter for runtime {runtime} on this machine (expected {interpreter}; "
            f"available: {have}). Install Python {runtime.removeprefix('python')} and run "
            "scripts/setup, or deploy with one of the available runtimes"
        )
    return interpreter
