"""Find interpreters and PostgreSQL binaries on this machine.

Stdlib only (used by ``install.py`` before any venv exists). Every function takes its
environment, ``which`` and prober as arguments so tests can pass fakes.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

Which = Callable[[str], "str | None"]
Probe = Callable[[Path], "tuple[int, int, int] | None"]
Glob = Callable[[str], "list[str]"]

_PROBE_CODE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


class DiscoveryError(RuntimeError):
    """Something required was not found; the message says what and how to fix it."""


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: tuple[int, int, int]

    @property
    def minor(self) -> int:
        return self.version[1]

    @property
    def tag(self) -> str:
        """``python3.13``: the Lambda runtime identifier."""
        return f"python{self.version[0]}.{self.version[1]}"


def probe_interpreter(path: Path) -> tuple[int, int, int] | None:
    """Run ``path`` and return its version, or None when it does not run (e.g. a pyenv shim
    answering "command not found")."""
    try:
        out = subprocess.run(
            [str(path), "-c", _PROBE_CODE],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    try:
        major, minor, micro = (int(x) for x in out.stdout.strip().split("."))
    except ValueError:
        return None
    return major, minor, micro


def override_variable(minor: int) -> str:
    """``LOCALCLOUD_PYTHON313`` for 3.13: names an interpreter explicitly."""
    return f"LOCALCLOUD_PYTHON3{minor}"


def default_pyenv_root(env: Mapping[str, str]) -> Path | None:
    if env.get("PYENV_ROOT"):
        return Path(env["PYENV_ROOT"])
    home = env.get("HOME")
    candidate = Path(home) / ".pyenv" if home else None
    return candidate if candidate is not None and candidate.is_dir() else None


def candidate_paths(
    minor: int,
    env: Mapping[str, str],
    which: Which = shutil.which,
    pyenv_root: Path | None = None,
    glob_fn: Glob = glob.glob,
) -> list[Path]:
    """Where to look for python3.<minor>, in order (the override variable is handled apart)."""
    name = f"python3.{minor}"
    found: list[Path] = []
    on_path = which(name)
    if on_path:
        found.append(Path(on_path))
    if pyenv_root is not None:
        pattern = str(pyenv_root / "versions" / f"3.{minor}*" / "bin" / name)
        # Newest patch release first (3.13.10 before 3.13.9).
        found.extend(Path(p) for p in sorted(glob_fn(pattern), key=_natural_key, reverse=True))
    found.extend(Path(d) / name for d in ("/usr/bin", "/usr/local/bin"))
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def _natural_key(text: str) -> list[object]:
    parts: list[object] = []
    for chunk in text.replace("/", ".").split("."):
        parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk))
    return parts


def find_python(
    minor: int,
    env: Mapping[str, str] | None = None,
    which: Which = shutil.which,
    probe: Probe = probe_interpreter,
    pyenv_root: Path | None = None,
    glob_fn: Glob = glob.glob,
) -> Interpreter | None:
    """Return a working python3.<minor>, or None.

    An explicit ``LOCALCLOUD_PYTHON3<minor>`` must work (it raises otherwise: a wrong
    override is a mistake to report, not to paper over with another interpreter).
    """
    env = os.environ if env is None else env
    variable = override_variable(minor)
    override = env.get(variable, "").strip()
    if override:
        version = probe(Path(override))
        if version is None or version[:2] != (3, minor):
            got = "does not run" if version is None else "is Python {}.{}.{}".format(*version)
            raise DiscoveryError(
                f"{variable}={override} {got}: point it at a Python 3.{minor} interpreter "
                f"or unset it to search the machine"
            )
        return Interpreter(Path(override), version)
    if pyenv_root is None:
        pyenv_root = default_pyenv_root(env)
    for path in candidate_paths(minor, env, which, pyenv_root, glob_fn):
        version = probe(path)
        if version is not None and version[:2] == (3, minor):
            logger.debug("found python3.%d at %s", minor, path)
            return Interpreter(path, version)
        logger.debug("python3.%d candidate %s: not usable", minor, path)
    return None


def find_runtimes(
    minors: Iterable[int],
    env: Mapping[str, str] | None = None,
    which: Which = shutil.which,
    probe: Probe = probe_interpreter,
    pyenv_root: Path | None = None,
    glob_fn: Glob = glob.glob,
) -> dict[int, Interpreter]:
    """All interpreters found among ``minors``, keyed by minor version."""
    found: dict[int, Interpreter] = {}
    for minor in minors:
        interp = find_python(minor, env, which, probe, pyenv_root, glob_fn)
        if interp is not None:
            found[minor] = interp
    return found


def missing_python_message(minor: int) -> str:
    return (
        f"No working Python 3.{minor} found (looked at ${override_variable(minor)}, "
        f"python3.{minor} on PATH, $(pyenv root)/versions/3.{minor}*/bin/python3.{minor}, "
        f"/usr/bin/python3.{minor}, /usr/local/bin/python3.{minor}).\n"
        f"Fix: `pyenv install 3.{minor}` (or your OS package: apt install python3.{minor}-venv), "
        f"or set {override_variable(minor)}=/path/to/python3.{minor}"
    )


# --- PostgreSQL ---------------------------------------------------------------------------

PG_TOOLS = ("initdb", "pg_ctl", "postgres", "psql")


def find_pg_bindir(
    which: Which = shutil.which,
    glob_fn: Glob = glob.glob,
    extra: Iterable[Path] = (),
) -> Path | None:
    """A directory holding initdb, pg_ctl, postgres and psql: PATH first (resolving the Debian
    symlinks in /usr/local/bin or /usr/bin to the real bindir), then /usr/lib/postgresql/*/bin
    (newest), then ``extra`` (e.g. pgserver's bundled binaries)."""
    dirs: list[Path] = []
    initdb = which("initdb")
    if initdb:
        dirs.append(Path(os.path.realpath(initdb)).parent)
    dirs.extend(
        Path(p)
        for p in sorted(glob_fn("/usr/lib/postgresql/*/bin"), key=_natural_key, reverse=True)
    )
    dirs.extend(extra)
    for d in dirs:
        if all((d / tool).is_file() and os.access(d / tool, os.X_OK) for tool in PG_TOOLS):
            return d
    return None
