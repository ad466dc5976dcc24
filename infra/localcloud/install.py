"""Build the virtualenvs the project needs; run by ``scripts/setup`` with the system python3.

Stdlib only: nothing is installed yet when this runs.

* ``.venv/``                                 tools (requirements-dev.txt), from Python 3.12 where
                                             found (the app's Lambda runtime), else this one
* ``<venvs>/localstack-venv/``               localstack-core + our extension, from Python 3.13
* ``<venvs>/runtimes/python3.X/``            Lambda "managed runtimes" (awslambdaric, boto3),
                                             one per Python 3.10-3.13 found on the machine
* ``dashboard/node_modules/``                the dashboard's chart library, ``npm ci`` from its
                                             lockfile; without npm, a note says what to install
                                             and everything else is still set up
* PgBouncer (the database proxy)             Debian's ``pgbouncer`` package, with apt-get as
                                             root; Debian's own pgbouncer service is stopped
                                             and disabled (the local cloud runs its own)

Each venv holds a stamp file with a hash of what defines it (interpreter, requirement and
constraint files, the extension's pyproject.toml). A venv whose stamp matches is left alone, so a
second run takes about a second. When the hash changes, pip installs into the existing venv
(fast, incremental); when the interpreter changed or the venv is broken, or with ``--rebuild``,
the venv is recreated from scratch.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localcloud import discovery, settings  # noqa: E402
from localcloud.database_proxy import BINARY_CANDIDATES, DEBIAN_PACKAGE  # noqa: E402
from localcloud.settings import Settings, SettingsError  # noqa: E402

logger = logging.getLogger("localcloud.install")

MIN_TOOLS_PYTHON = (3, 10)
# The tools venv's Python is the app's Lambda runtime (Chalice deploys on the Python it runs on).
TOOLS_PYTHON_MINOR = 12
STAMP_NAME = ".localcloud-stamp"
PGSERVER_REQUIREMENT = "pgserver~=0.1.4"


class InstallError(RuntimeError):
    """Setup cannot continue; the message says why and what to do."""


@dataclass
class VenvSpec:
    """What defines a venv: its interpreter, the pip commands that fill it, and the files whose
    content those commands depend on."""

    name: str
    path: Path
    interpreter: discovery.Interpreter
    pip_steps: list[list[str]]
    inputs: list[Path] = field(default_factory=list)

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self.interpreter.path}|{self.interpreter.version}\n".encode())
        for step in self.pip_steps:
            h.update(("\0".join(step) + "\n").encode())
        for path in self.inputs:
            h.update(f"{path}\n".encode())
            h.update(path.read_bytes() if path.is_file() else b"<missing>")
        return h.hexdigest()


def venv_python_version(venv: Path) -> tuple[int, int, int] | None:
    python = venv / "bin" / "python"
    return discovery.probe_interpreter(python) if python.exists() else None


def is_current(spec: VenvSpec) -> bool:
    stamp = spec.path / STAMP_NAME
    if not stamp.is_file() or stamp.read_text().strip() != spec.digest():
        return False
    return venv_python_version(spec.path) == spec.interpreter.version


def _run_logged(cmd: Sequence[str], log: Path, cwd: Path) -> None:
    logger.info("  $ %s", " ".join(cmd))
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=False
        )
    if result.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise InstallError(f"command failed (exit {result.returncode}), see {log}:\n{tail}")


def ensure_venv(spec: VenvSpec, log_dir: Path, rebuild: bool = False) -> bool:
    """Make ``spec.path`` match ``spec``; return True when something was (re)installed."""
    if not rebuild and is_current(spec):
        logger.info("%s: up to date (%s)", spec.name, spec.path)
        return False
    started = time.monotonic()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"setup-{spec.name}.log"
    log.write_text("")
    current = venv_python_version(spec.path)
    if rebuild or current != spec.interpreter.version:
        why = (
            "rebuild requested"
            if rebuild
            else (
                "new"
                if current is None
                else f"interpreter changed ({current} -> {spec.interpreter.version})"
            )
        )
        logger.info(
            "%s: creating %s with %s (%s); log: %s",
            spec.name,
            spec.path,
            spec.interpreter.path,
            why,
            log,
        )
        if spec.path.exists():
            shutil.rmtree(spec.path)
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        _run_logged(
            [str(spec.interpreter.path), "-m", "venv", str(spec.path)], log, settings.PROJECT_ROOT
        )
    else:
        logger.info("%s: requirements changed, updating %s; log: %s", spec.name, spec.path, log)
    pip = [str(spec.path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    for step in spec.pip_steps:
        _run_logged(pip + step, log, settings.PROJECT_ROOT)
    (spec.path / STAMP_NAME).write_text(spec.digest() + "\n")
    logger.info("%s: done in %.0f s", spec.name, time.monotonic() - started)
    return True


def ensure_dashboard_packages(
    dashboard: Path = settings.DASHBOARD_DIR, log_dir: Path | None = None
) -> str | None:
    """`npm ci` in dashboard/ when its lockfile changed; return a note for the user when it
    cannot run (no npm), None when the packages are in place."""
    lockfile = dashboard / "package-lock.json"
    if not lockfile.is_file():
        return f"{lockfile} not found: the dashboard has no packages to install"
    stamp = dashboard / "node_modules" / STAMP_NAME
    digest = hashlib.sha256(lockfile.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == digest:
        logger.info("dashboard: up to date (%s)", stamp.parent)
        return None
    npm = shutil.which("npm")
    if npm is None:
        return (
            "npm not found: the dashboard will have no charts. Install Node.js and npm "
            "(e.g. `apt-get install nodejs npm`), then rerun scripts/setup"
        )
    log = (log_dir or dashboard) / "setup-dashboard.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    logger.info("dashboard: npm ci in %s; log: %s", dashboard, log)
    # --ignore-scripts: nothing the packages ship runs here; uPlot needs no build step.
    _run_logged([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], log, dashboard)
    stamp.write_text(digest + "\n")
    return None


def ensure_database_proxy(
    which: discovery.Which = shutil.which,
    is_root: bool | None = None,
    candidates: Sequence[str] = BINARY_CANDIDATES,
) -> bool:
    """Install PgBouncer when it is missing (Debian's package, as root); True when installed
    now. Debian's package starts its own service on port 6432: the local cloud runs its own
    PgBouncer under the state dir, so that one is stopped and disabled at once."""
    if which("pgbouncer") is not None or any(Path(c).is_file() for c in candidates):
        logger.info("database proxy: PgBouncer installed")
        return False
    root = os.geteuid() == 0 if is_root is None else is_root
    if not root or which("apt-get") is None:
        raise InstallError(
            "PgBouncer (the database proxy, RDS Proxy's stand-in) is not installed: rerun "
            "scripts/setup as root, which installs Debian's pgbouncer package with apt-get, or "
            "install it yourself (`sudo apt-get install pgbouncer`) and rerun scripts/setup"
        )
    logger.info("database proxy: installing Debian's pgbouncer package (apt-get)")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", DEBIAN_PACKAGE],
    ):
        result = subprocess.run(command, env=environment, capture_output=True, text=True)
        if result.returncode != 0:
            raise InstallError(
                f"`{' '.join(command)}` failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
    disable_debian_pgbouncer_service()
    return True


def disable_debian_pgbouncer_service() -> None:
    """Stop and disable the service Debian's package starts (systemd, or its init script)."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        commands = [["systemctl", "disable", "--now", "pgbouncer.service"]]
    else:
        commands = [["/etc/init.d/pgbouncer", "stop"], ["update-rc.d", "pgbouncer", "disable"]]
    for command in commands:
        if shutil.which(command[0]) or Path(command[0]).is_file():
            result = subprocess.run(command, capture_output=True, text=True)
            logger.info("  $ %s (exit %d)", " ".join(command), result.returncode)


def tools_interpreter(env: dict[str, str], notes: list[str]) -> discovery.Interpreter:
    """Python 3.12 where the machine has it, else this python3 (>= 3.10).

    Chalice deploys the functions on the Python it runs on, so the tools venv's Python is the
    app's Lambda runtime: 3.12 is the oldest that has SnapStart for Python, which the deploy
    turns on for the worker (infra/deployment/snapstart.py)."""
    try:
        preferred = discovery.find_python(TOOLS_PYTHON_MINOR, env)
    except discovery.DiscoveryError as e:
        raise InstallError(str(e)) from e
    if preferred is not None:
        return preferred
    version = sys.version_info[:3]
    if version[:2] < MIN_TOOLS_PYTHON:
        raise InstallError(
            f"python3 is {'.'.join(map(str, version))} at {sys.executable}; the tools need "
            f">= {'.'.join(map(str, MIN_TOOLS_PYTHON))}. Put a newer python3 first on PATH "
            f"(e.g. `pyenv global 3.12`) and rerun scripts/setup"
        )
    notes.append(
        f"no Python 3.{TOOLS_PYTHON_MINOR}: the tools venv uses {sys.executable} "
        f"({'.'.join(map(str, version))}), so the app deploys on python{version[0]}.{version[1]}"
        f"{'' if version[:2] >= (3, TOOLS_PYTHON_MINOR) else ', without SnapStart'} "
        f"(`pyenv install 3.{TOOLS_PYTHON_MINOR}` and rerun scripts/setup to change that)"
    )
    return discovery.Interpreter(Path(sys.executable), (version[0], version[1], version[2]))


def plan(cfg: Settings, env: dict[str, str]) -> tuple[list[VenvSpec], list[str]]:
    """The venvs to build, and notes for the user; InstallError when Python 3.13 is missing."""
    notes: list[str] = []
    tools_python = tools_interpreter(env, notes)
    root = settings.PROJECT_ROOT

    tools_steps = [["-r", str(settings.REQUIREMENTS_DEV)]]
    if discovery.find_pg_bindir() is None:
        notes.append(
            "no PostgreSQL binaries found: installing pgserver (bundled PostgreSQL) into .venv"
        )
        tools_steps.append([PGSERVER_REQUIREMENT])
    specs = [
        VenvSpec(
            "tools",
            root / ".venv",
            tools_python,
            tools_steps,
            [settings.REQUIREMENTS_DEV, settings.REQUIREMENTS_INCLUDED],
        )
    ]

    try:
        py313 = discovery.find_python(settings.LOCALSTACK_PYTHON_MINOR, env)
    except discovery.DiscoveryError as e:
        raise InstallError(str(e)) from e
    if py313 is None:
        raise InstallError(discovery.missing_python_message(settings.LOCALSTACK_PYTHON_MINOR))
    constraints = ["-c", str(settings.LOCALSTACK_CONSTRAINTS)]
    ls_steps = [[settings.LOCALSTACK_REQUIREMENT, *constraints]]
    ext_pyproject = settings.EXTENSION_DIR / "pyproject.toml"
    if ext_pyproject.is_file():
        ls_steps.append([*constraints, "-e", str(settings.EXTENSION_DIR)])
    else:
        notes.append(
            f"{ext_pyproject} not found: LocalStack installed without the localcloud extension "
            "(Lambda functions will not run); rerun scripts/setup once it exists"
        )
    specs.append(
        VenvSpec(
            "localstack",
            cfg.localstack_venv,
            py313,
            ls_steps,
            [settings.LOCALSTACK_CONSTRAINTS, ext_pyproject],
        )
    )

    try:
        runtimes = discovery.find_runtimes(settings.RUNTIME_MINORS, env)
    except discovery.DiscoveryError as e:
        raise InstallError(str(e)) from e
    if tools_python.minor in settings.RUNTIME_MINORS:
        runtimes.setdefault(tools_python.minor, tools_python)
    for minor in settings.RUNTIME_MINORS:
        if minor in runtimes:
            interp = runtimes[minor]
            specs.append(
                VenvSpec(
                    f"runtime-{interp.tag}",
                    cfg.runtimes_dir / interp.tag,
                    interp,
                    [["-r", str(settings.LAMBDA_RUNTIME_REQUIREMENTS)]],
                    [settings.LAMBDA_RUNTIME_REQUIREMENTS],
                )
            )
        else:
            notes.append(
                f"no Python 3.{minor}: functions with runtime python3.{minor} cannot run "
                f"(optional; `pyenv install 3.{minor}` to add it)"
            )
    return specs, notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/setup", description=__doc__.split("\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="recreate every venv from scratch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    try:
        cfg = Settings.from_env()
        specs, notes = plan(cfg, dict(os.environ))
        for note in notes:
            logger.info("note: %s", note)
        ensure_database_proxy()
        for spec in specs:
            ensure_venv(spec, cfg.logs_dir, rebuild=args.rebuild)
        dashboard_note = ensure_dashboard_packages(log_dir=cfg.logs_dir)
        if dashboard_note:
            logger.warning("note: %s", dashboard_note)
    except (InstallError, SettingsError) as e:
        logger.error("setup failed: %s", e)
        return 1
    logger.info("")
    logger.info("setup complete in %.1f s:", time.monotonic() - started)
    for spec in specs:
        logger.info(
            "  %-22s %s (Python %s)",
            spec.name,
            spec.path,
            ".".join(map(str, spec.interpreter.version)),
        )
    logger.info("next: scripts/localcloud up    (starts LocalStack, PostgreSQL and its proxy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
