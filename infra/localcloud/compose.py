"""``up``, ``down``, ``status`` and ``logs`` of the local cloud as containers
(LOCALCLOUD_RUNTIME=docker): ``docker compose`` over ``docker-compose.localstack.yml``.

The same local cloud as :mod:`localcloud.control` runs as host processes, and the same outcome:
LocalStack with the extension on 127.0.0.1:PORT, PostgreSQL and PgBouncer on theirs, the owner
role and the proxy's roles made with the same scripts (``postgres.OWNER_DATABASE_SCRIPT``,
``PROXY_ROLES_SCRIPT``), the RDS-style secret, and ``endpoints.json`` in the same shape
(``control.endpoint_sections``), so that the deploy, the burst tool, the dashboard and the
tests need not know which runtime serves them. What differs is written down where it is:

* PIDs in endpoints.json are the containers' main processes as the host sees them
  (``docker inspect``: ``State.Pid``); their ``log`` is the ``docker compose logs`` command;
* PostgreSQL's data is a named volume of the compose project (``down`` keeps it, as the host's
  ``down`` keeps the state dir's cluster); the owner's and the metrics reader's passwords stay
  in the state dir, as for host processes, and reach the containers in their environment.

Every ``docker`` command goes through a :class:`Runner`, so the tests drive this module with a
fake one (no Docker engine runs on our machines).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud import endpoints, procs
from localcloud.control import DownResult, Servers, UpError, UpResult, endpoint_sections
from localcloud.postgres import (
    OWNER_DATABASE_SCRIPT,
    PROXY_ROLES_SCRIPT,
    SERVER_USER_WHEN_ROOT,
    Credentials,
    load_or_create_monitor_password,
    render_hba,
    render_ident,
    scram_sha256_verifier,
)
from localcloud.settings import (
    COMPOSE_FILE,
    ENV_MONITOR_PASSWORD,
    ENV_PG_PORT,
    ENV_PORT,
    ENV_PROXY_PORT,
    ENV_RUNTIME,
    ENV_STATE_DIR,
    PG_DATABASE,
    PG_MAX_CONNECTIONS,
    Settings,
)
from localcloud_ext import contract

logger = logging.getLogger(__name__)

# The compose file's services.
LOCALSTACK_SERVICE = "localstack"
POSTGRES_SERVICE = "postgres"
PROXY_SERVICE = "pgbouncer"
SERVICES = Servers(LOCALSTACK_SERVICE, POSTGRES_SERVICE, PROXY_SERVICE)
# Variables only the compose file reads (the others are the settings' own, ENV_*).
PG_MAX_CONNECTIONS_VARIABLE = "LOCALCLOUD_PG_MAX_CONNECTIONS"
SUPERUSER_PASSWORD_VARIABLE = "LOCALCLOUD_PG_SUPERUSER_PASSWORD"
# PostgreSQL's access rules, read by its container from the state dir (compose `configs`).
HBA_FILE = "pg_hba.conf"
IDENT_FILE = "pg_ident.conf"
SUPERUSER_PASSWORD_FILE = "postgres-superuser.password"
# The first `up` builds the image (localstack-core and three venvs: minutes); later ones don't.
UP_TIMEOUT_S = 1200.0
DOWN_GRACE_S = 15
COMMAND_TIMEOUT_S = 120.0
# What psql's \set may carry in single quotes: role names, database names, SCRAM verifiers.
_PSQL_VALUE = re.compile(r"^[A-Za-z0-9_$:+/=.-]*$")


class DockerError(UpError):
    """Docker (its CLI, its compose plugin, its engine) is not there or failed; the message
    says which and what to do."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""


# (argv, extra environment, stdin, timeout) -> Result; FileNotFoundError when argv[0] is missing.
Runner = Callable[[Sequence[str], Mapping[str, str] | None, str | None, float], Result]


def subprocess_runner(
    argv: Sequence[str], env: Mapping[str, str] | None, stdin: str | None, timeout: float
) -> Result:
    done = subprocess.run(
        list(argv),
        input=stdin,
        env={**os.environ, **env} if env else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


# --- the commands --------------------------------------------------------------------------


def compose_command(cfg: Settings, *args: str) -> list[str]:
    return [
        "docker",
        "compose",
        "--project-name",
        cfg.compose_project,
        "--file",
        str(COMPOSE_FILE),
        *args,
    ]


def compose_environment(
    cfg: Settings, monitor_password: str, superuser_password: str
) -> dict[str, str]:
    """Every variable the compose file reads, from the settings (one place for each value)."""
    return {
        ENV_STATE_DIR: str(cfg.state_dir),
        ENV_PORT: str(cfg.port),
        ENV_PG_PORT: str(cfg.pg_port),
        ENV_PROXY_PORT: str(cfg.proxy_port),
        PG_MAX_CONNECTIONS_VARIABLE: str(PG_MAX_CONNECTIONS),
        contract.ESM_SCALE_UP_PER_MINUTE.variable: contract.ESM_SCALE_UP_PER_MINUTE.render(
            cfg.esm_scale_up_per_minute
        ),
        contract.ACCOUNT_CONCURRENCY.variable: str(cfg.account_concurrency),
        ENV_MONITOR_PASSWORD: monitor_password,
        SUPERUSER_PASSWORD_VARIABLE: superuser_password,
    }


def psql_command(cfg: Settings, database: str) -> list[str]:
    """psql in the postgres container as its server user, over the socket (peer: the admin,
    as on the host), the script on stdin."""
    return compose_command(
        cfg,
        "exec",
        "-T",
        "--user",
        SERVER_USER_WHEN_ROOT,
        POSTGRES_SERVICE,
        "psql",
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        database,
        "-f",
        "-",
    )


def psql_input(script: str, variables: Mapping[str, str]) -> str:
    """The script with its variables set first (``\\set``): the scripts read theirs with
    ``\\getenv``, which leaves a variable alone when the environment lacks it, so the values
    travel on stdin, never in a command line (``docker exec -e`` would show them)."""
    lines = []
    for name, value in variables.items():
        if not _PSQL_VALUE.match(value):
            raise ValueError(f"psql variable {name}: a value psql cannot take quoted")
        lines.append(f"\\set {name} '{value}'\n")
    return "".join(lines) + script


def logs_command(cfg: Settings, service: str, follow: bool, lines: int) -> list[str]:
    return compose_command(
        cfg,
        "logs",
        "--no-log-prefix",
        "--tail",
        str(lines),
        *(["--follow"] if follow else []),
        service,
    )


def access_rules(cfg: Settings) -> dict[Path, str]:
    """PostgreSQL's pg_hba.conf and pg_ident.conf for its container, as on the host but for TCP
    from anywhere: the host's connections come through Docker's forwarding (from the bridge's
    address), the functions' over the shared loopback; only 127.0.0.1 of the host is published."""
    return {
        cfg.compose_dir / HBA_FILE: render_hba(SERVER_USER_WHEN_ROOT, tcp_from="all"),
        cfg.compose_dir / IDENT_FILE: render_ident(SERVER_USER_WHEN_ROOT),
    }


# --- the engine ----------------------------------------------------------------------------


def no_engine_message(detail: str) -> str:
    return (
        f"{ENV_RUNTIME}=docker, but {detail}. Start Docker (or point DOCKER_HOST at an engine), "
        f"or unset {ENV_RUNTIME} to run the local cloud as host processes (scripts/setup; no "
        "Docker needed)"
    )


def check_engine(run: Runner) -> None:
    """Docker's CLI, its compose plugin (v2) and a running engine, or :class:`DockerError`."""
    try:
        version = run(["docker", "compose", "version", "--short"], None, None, 30.0)
    except FileNotFoundError:
        raise DockerError(no_engine_message("there is no `docker` command on PATH")) from None
    if version.returncode != 0:
        raise DockerError(
            no_engine_message(
                "`docker compose` (Compose v2, the CLI plugin) is missing: "
                f"{(version.stderr or version.stdout).strip()}"
            )
        )
    info = run(["docker", "info", "--format", "{{.ServerVersion}}"], None, None, 30.0)
    if info.returncode != 0 or not info.stdout.strip():
        raise DockerError(
            no_engine_message(
                f"no Docker engine answers (`docker info`: {(info.stderr or info.stdout).strip()})"
            )
        )


def _checked(run: Runner, argv: Sequence[str], what: str, **kwargs: Any) -> Result:
    result = run(
        argv, kwargs.get("env"), kwargs.get("stdin"), kwargs.get("timeout", COMMAND_TIMEOUT_S)
    )
    if result.returncode != 0:
        raise DockerError(
            f"{what} failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}\n  command: {' '.join(argv)}"
        )
    return result


# --- up ------------------------------------------------------------------------------------


def load_or_create_superuser_password(path: Path) -> str:
    """PostgreSQL's superuser password, which the image wants at its first start. Kept (mode
    0600) so the container's configuration does not change on every `up` (Compose recreates a
    container whose environment changed); nothing logs in with it: the admin is peer."""
    if path.is_file():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def write_access_rules(cfg: Settings) -> None:
    cfg.compose_dir.mkdir(parents=True, exist_ok=True)
    for path, text in access_rules(cfg).items():
        path.write_text(text)
        path.chmod(0o644)  # read by the postgres user of its container; no secret in them


def query_environment(cfg: Settings) -> dict[str, str]:
    """The compose file's environment for commands that create nothing (ps, logs, down):
    Compose interpolates the whole file for any command, but only `up` uses the passwords."""
    write_access_rules(cfg)
    return compose_environment(cfg, monitor_password="unused", superuser_password="unused")


def prepare_state(cfg: Settings) -> tuple[Credentials, dict[str, str]]:
    """The owner's credentials and the compose file's environment, from the state dir."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    write_access_rules(cfg)
    creds = Credentials.load_or_create(cfg.pg_credentials)
    environment = compose_environment(
        cfg,
        load_or_create_monitor_password(cfg.monitor_passfile),
        load_or_create_superuser_password(cfg.compose_dir / SUPERUSER_PASSWORD_FILE),
    )
    return creds, environment


def ensure_roles(
    cfg: Settings, run: Runner, creds: Credentials, environment: Mapping[str, str]
) -> None:
    """The owner and its database, the proxy's lookup role and the metrics reader: the host's
    scripts, run by psql in the postgres container."""
    _checked(
        run,
        psql_command(cfg, "postgres"),
        "creating the owner role and database",
        env=environment,
        stdin=psql_input(
            OWNER_DATABASE_SCRIPT,
            {
                "role": creds.username,
                "dbname": creds.dbname,
                "verifier": scram_sha256_verifier(creds.password),
            },
        ),
    )
    _checked(
        run,
        psql_command(cfg, PG_DATABASE),
        "creating the proxy's roles",
        env=environment,
        stdin=psql_input(
            PROXY_ROLES_SCRIPT,
            {"monitor_verifier": scram_sha256_verifier(environment[ENV_MONITOR_PASSWORD])},
        ),
    )


def container_pids(
    cfg: Settings, run: Runner, environment: Mapping[str, str], proc: Path = Path("/proc")
) -> Servers[int]:
    """Each service's main process, as the host numbers it."""
    pids: list[int] = []
    for service in (SERVICES.localstack, SERVICES.postgres, SERVICES.database_proxy):
        container = _checked(
            run, compose_command(cfg, "ps", "-q", service), "docker compose ps", env=environment
        )
        ident = container.stdout.strip()
        if not ident:
            raise DockerError(f"service {service} has no container: `scripts/localcloud logs`")
        inspected = _checked(
            run, ["docker", "inspect", "--format", "{{.State.Pid}}", ident], "docker inspect"
        )
        pids.append(int(inspected.stdout.strip()))
    # LocalStack's container runs an init (`init: true`: it reaps the orphans of function
    # processes), whose child is LocalStack: the process the benchmarks read CPU and memory of.
    return Servers(main_process(pids[0], proc), pids[1], pids[2])


def main_process(init_pid: int, proc: Path = Path("/proc")) -> int:
    """The first child of a container's init, as the host's /proc shows it; the init itself
    where /proc does not (Docker Desktop: the containers run in a VM)."""
    try:
        children = (proc / str(init_pid) / "task" / str(init_pid) / "children").read_text()
    except OSError:
        return init_pid
    return int(children.split()[0]) if children.split() else init_pid


def publish_rds_secret(cfg: Settings, creds: Credentials) -> str:
    from localcloud import aws  # boto3 is slow to import: only `up` needs it

    return aws.ensure_rds_secret(cfg, creds)


def up(
    cfg: Settings,
    run: Runner = subprocess_runner,
    publish_secret: Callable[[Settings, Credentials], str] = publish_rds_secret,
    proc: Path = Path("/proc"),
) -> UpResult:
    """Build the image if needed, start (or keep) the three containers until healthy, make the
    roles, publish the secret and endpoints.json. Idempotent, as the host's `up`."""
    started_at = time.monotonic()
    check_engine(run)
    creds, environment = prepare_state(cfg)
    previous = endpoints.load(cfg.endpoints_file)
    logger.info(
        "starting the local cloud's containers (project %s; the first build takes minutes)",
        cfg.compose_project,
    )
    _checked(
        run,
        compose_command(cfg, "up", "--detach", "--build", "--wait"),
        "docker compose up",
        env=environment,
        timeout=UP_TIMEOUT_S,
    )
    ensure_roles(cfg, run, creds, environment)
    pids = container_pids(cfg, run, environment, proc)
    arn = publish_secret(cfg, creds)
    logs = Servers(
        *(
            " ".join(logs_command(cfg, service, follow=False, lines=50))
            for service in (SERVICES.localstack, SERVICES.postgres, SERVICES.database_proxy)
        )
    )
    # LocalStack keeps no state across restarts: a new container drops what the deploy wrote.
    fresh = previous.get("localstack", {}).get("pid") != pids.localstack
    data = endpoints.update(
        cfg.endpoints_file, endpoint_sections(cfg, creds, arn, pids, logs), fresh=fresh
    )
    return UpResult(not fresh, data, time.monotonic() - started_at)


# --- down ----------------------------------------------------------------------------------


def down(
    cfg: Settings,
    run: Runner = subprocess_runner,
    port_is_free: Callable[[str, int], bool] = procs.port_is_free,
) -> DownResult:
    """Stop and remove the containers (PostgreSQL's volume stays); check that nothing of the
    project runs and the ports are free; remove endpoints.json."""
    started_at = time.monotonic()
    result = DownResult()
    check_engine(run)
    environment = query_environment(cfg)
    _checked(
        run,
        compose_command(cfg, "down", "--remove-orphans", "--timeout", str(DOWN_GRACE_S)),
        "docker compose down",
        env=environment,
        timeout=COMMAND_TIMEOUT_S,
    )
    result.messages.append(
        f"containers of project {cfg.compose_project} removed (PostgreSQL's data volume kept)"
    )
    left = _checked(
        run, compose_command(cfg, "ps", "--all", "-q"), "docker compose ps", env=environment
    )
    if left.stdout.strip():
        result.problems.append(f"containers still there: {' '.join(left.stdout.split())}")
    for port, what in (
        (cfg.port, "LocalStack"),
        (cfg.pg_port, "PostgreSQL"),
        (cfg.proxy_port, "the database proxy"),
    ):
        if not port_is_free(cfg.host, port):
            result.problems.append(f"port {cfg.host}:{port} ({what}) is still bound")
    if not result.problems:
        endpoints.remove(cfg.endpoints_file)
    result.seconds = time.monotonic() - started_at
    return result


# --- status --------------------------------------------------------------------------------


@dataclass
class ServiceState:
    service: str
    state: str  # "running", "exited", ... or "missing"
    health: str  # "healthy", "starting", "unhealthy", or "" (no check)


@dataclass
class ComposeStatus:
    services: list[ServiceState] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.state == "running" and s.health == "healthy" for s in self.services)


def parse_ps(output: str) -> dict[str, dict[str, Any]]:
    """`docker compose ps --format json`: one object per line (Compose >= 2.21) or one array."""
    text = output.strip()
    if not text:
        return {}
    rows: list[dict[str, Any]] = (
        json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
    )
    return {row["Service"]: row for row in rows}


def status(cfg: Settings, run: Runner = subprocess_runner) -> ComposeStatus:
    check_engine(run)
    environment = query_environment(cfg)
    listed = _checked(
        run,
        compose_command(cfg, "ps", "--all", "--format", "json"),
        "docker compose ps",
        env=environment,
    )
    rows = parse_ps(listed.stdout)
    return ComposeStatus(
        [
            ServiceState(
                service,
                str(rows.get(service, {}).get("State", "missing")),
                str(rows.get(service, {}).get("Health", "")),
            )
            for service in (SERVICES.localstack, SERVICES.postgres, SERVICES.database_proxy)
        ]
    )
