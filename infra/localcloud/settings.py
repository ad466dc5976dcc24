"""All configuration of the local cloud, in one place.

Every value comes from an explicit argument, else the environment, else a documented default.
Invalid values stop with a :class:`SettingsError` that names the variable and the fix.

Environment variables (all optional):

``LOCALCLOUD_STATE_DIR``  pids, logs, data, endpoints.json (default ``<repo>/.localcloud``)
``LOCALCLOUD_VENVS_DIR``  holds ``localstack-venv/`` and ``runtimes/`` (default: the state dir);
                          lets a second instance (tests) reuse the venvs built by ``scripts/setup``
``LOCALCLOUD_PORT``       LocalStack gateway port on 127.0.0.1 (default 4566)
``LOCALCLOUD_PG_PORT``    PostgreSQL port on 127.0.0.1 (default 15432)
``LOCALCLOUD_PROXY_PORT`` the database proxy's port on 127.0.0.1 (PgBouncer, the RDS Proxy
                          stand-in; default 16432)
``LOCALCLOUD_ESM_SCALE_UP_PER_MINUTE``  how fast an SQS event source mapping adds concurrent
                          batches while a backlog lasts (default 300, AWS's rate; 1-60000)
``LOCALCLOUD_ACCOUNT_CONCURRENCY``  the account's concurrent executions, shared by every
                          function (default 1000, AWS's; 10-100000)
``LOCALCLOUD_RUNTIME``    ``host`` (default): LocalStack, PostgreSQL and PgBouncer as processes
                          of this machine; ``docker``: the same three as containers
                          (docker-compose.localstack.yml, driven by ``localcloud.compose``)

The last two are the extension's settings: their names, defaults and ranges are
``localcloud_ext.contract``, which both sides import.

Stdlib only: ``install.py`` imports this with the system Python before any venv exists.
"""

from __future__ import annotations

import enum
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from localcloud_ext import contract

ENV_STATE_DIR = "LOCALCLOUD_STATE_DIR"
ENV_VENVS_DIR = "LOCALCLOUD_VENVS_DIR"
ENV_PORT = "LOCALCLOUD_PORT"
ENV_PG_PORT = "LOCALCLOUD_PG_PORT"
ENV_PROXY_PORT = "LOCALCLOUD_PROXY_PORT"
ENV_RUNTIME = "LOCALCLOUD_RUNTIME"
# Not for users: the metrics reader's password, which `localcloud.compose` hands the containers
# (from the state dir's monitor.pgpass) and `localcloud.container` writes where it is expected.
ENV_MONITOR_PASSWORD = "LOCALCLOUD_MONITOR_PASSWORD"

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_PORT = 4566
DEFAULT_PG_PORT = 15432
DEFAULT_PROXY_PORT = 16432
# Where the scaling SQS poller publishes its gauges (ConcurrentBatches, ScalingTarget by
# EventSourceMappingUUID), for the deploy and the burst's report.
EVENT_SOURCE_MAPPING_METRICS_NAMESPACE = contract.EVENT_SOURCE_MAPPING_NAMESPACE
PG_DATABASE = "app"
# The database's owner, RDS's master user (its secret is SECRET_NAME); the deploy makes each
# stage's functions a role of their own. A state dir made before keeps its owner, "app".
PG_OWNER_ROLE = "app_owner"
SECRET_NAME = "localcloud/rds/credentials"
# What the database is on AWS's terms: its DB instance identifier (the AWS/RDS metrics'
# DBInstanceIdentifier) and its instance class, whose memory sets max_connections as RDS's
# default parameter group does: LEAST(DBInstanceClassMemory / 9531392, 5000). db.t4g.micro has
# 1 GiB: 112 connections (RDS subtracts what its own processes use from the class's memory
# first, so a real db.t4g.micro reports somewhat fewer). Three of them are kept for superusers
# (PostgreSQL's superuser_reserved_connections), as RDS keeps its own for rdsadmin.
DB_INSTANCE_IDENTIFIER = "localcloud-postgres"
DB_INSTANCE_CLASS = "db.t4g.micro"
DB_INSTANCE_CLASS_MEMORY_BYTES = 1024**3
RDS_BYTES_PER_CONNECTION = 9531392
PG_MAX_CONNECTIONS = min(DB_INSTANCE_CLASS_MEMORY_BYTES // RDS_BYTES_PER_CONNECTION, 5000)
# The database proxy (PgBouncer in front of PostgreSQL, as RDS Proxy in front of RDS): its name
# (the AWS/RDS metrics' ProxyName), and how many server connections it may hold in all, at most,
# however many clients it serves (RDS Proxy: MaxConnectionsPercent of max_connections). 70 %
# (78 of 112) leaves the rest to sessions that go straight to the database (the owner's
# migrations, scripts and tests, the metrics reader, a stage deployed --no-database-proxy): with
# all 100 the proxy's idle pool could starve them ("remaining connection slots are reserved").
PROXY_NAME = "localcloud-proxy"
PROXY_MAX_CONNECTIONS_PERCENT = 70
PROXY_MAX_SERVER_CONNECTIONS = PG_MAX_CONNECTIONS * PROXY_MAX_CONNECTIONS_PERCENT // 100
PROXY_MAX_CLIENT_CONNECTIONS = 2000  # 1,000 concurrent batches and the API, with room
# LocalStack accepts any credentials; these are its documented defaults.
AWS_ACCESS_KEY_ID = "test"
AWS_SECRET_ACCESS_KEY = "test"

CGROUP_V1_ROOT = Path("/sys/fs/cgroup")

# Requirement files that define the venvs built by scripts/setup.
REQUIREMENTS_DEV = PROJECT_ROOT / "requirements-dev.txt"
# included by requirements-dev.txt (-r), so a change to it must rebuild the tools venv too
REQUIREMENTS_INCLUDED = PROJECT_ROOT / "requirements.txt"
LOCALSTACK_CONSTRAINTS = PROJECT_ROOT / "infra" / "localstack-constraints.txt"
LAMBDA_RUNTIME_REQUIREMENTS = PROJECT_ROOT / "infra" / "lambda-runtime-requirements.txt"
EXTENSION_DIR = PROJECT_ROOT / "infra" / "localstack-extension"
DASHBOARD_DIR = PROJECT_ROOT / "dashboard"  # its package.json/package-lock.json: npm ci
LOCALSTACK_REQUIREMENT = "localstack-core[runtime]==2026.3.0"
# localstack-core 2026.3.0 needs Python 3.13 (PEP 695 syntax, warnings.deprecated).
LOCALSTACK_PYTHON_MINOR = 13
# The local cloud as containers (LOCALCLOUD_RUNTIME=docker): the compose file, and the image's
# Dockerfile (its build context is the project root: it copies infra/).
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.localstack.yml"
DOCKERFILE = PROJECT_ROOT / "infra" / "localcloud" / "Dockerfile"
# Lambda managed runtimes we build when an interpreter is found (python3.10 .. python3.13).
RUNTIME_MINORS = (10, 11, 12, 13)


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable and the fix."""


class Runtime(enum.Enum):
    """Where the local cloud's three servers run (LOCALCLOUD_RUNTIME)."""

    HOST = "host"  # processes of this machine (localcloud.control)
    DOCKER = "docker"  # containers (localcloud.compose, docker-compose.localstack.yml)


def parse_runtime(raw: str | None) -> Runtime:
    if raw is None or raw.strip() == "":
        return Runtime.HOST
    try:
        return Runtime(raw.strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in Runtime)
        raise SettingsError(
            f"{ENV_RUNTIME}={raw!r} is not one of {choices}: unset it for host processes "
            f"(the default), or set it to docker for containers"
        ) from None


def parse_port(name: str, raw: str | None, default: int) -> int:
    """The TCP port in ``raw`` (the value of variable ``name``), or ``default`` when unset."""
    if raw is None or raw.strip() == "":
        return default
    try:
        port = int(raw.strip())
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not a port number: set it to an integer 1024-65535 "
            f"or unset it (default {default})"
        ) from None
    if not 1024 <= port <= 65535:
        raise SettingsError(
            f"{name}={port} is out of range: use a port 1024-65535 that nothing else listens on "
            f"(unset it for the default {default})"
        )
    return port


def parse_number(setting: contract.NumberSetting, env: Mapping[str, str]) -> float:
    """One of the extension's settings, as the contract defines it."""
    try:
        return setting.parse(env.get(setting.variable))
    except ValueError as error:
        raise SettingsError(str(error)) from None


def parse_dir(name: str, raw: str | None, default: Path) -> Path:
    """Return the directory in ``raw`` as an absolute path, or ``default`` when unset."""
    if raw is None or raw.strip() == "":
        return default
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute():
        raise SettingsError(f"{name}={raw!r} must be an absolute path (e.g. {Path.cwd() / raw})")
    if path.exists() and not path.is_dir():
        raise SettingsError(f"{name}={raw!r} exists and is not a directory: point it elsewhere")
    return path


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    venvs_dir: Path
    port: int
    pg_port: int
    proxy_port: int = DEFAULT_PROXY_PORT
    esm_scale_up_per_minute: float = contract.ESM_SCALE_UP_PER_MINUTE.default
    account_concurrency: int = int(contract.ACCOUNT_CONCURRENCY.default)
    runtime: Runtime = Runtime.HOST
    host: str = HOST
    region: str = REGION
    project_root: Path = PROJECT_ROOT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state_dir = parse_dir(ENV_STATE_DIR, env.get(ENV_STATE_DIR), PROJECT_ROOT / ".localcloud")
        venvs_dir = parse_dir(ENV_VENVS_DIR, env.get(ENV_VENVS_DIR), state_dir)
        port = parse_port(ENV_PORT, env.get(ENV_PORT), DEFAULT_PORT)
        pg_port = parse_port(ENV_PG_PORT, env.get(ENV_PG_PORT), DEFAULT_PG_PORT)
        proxy_port = parse_port(ENV_PROXY_PORT, env.get(ENV_PROXY_PORT), DEFAULT_PROXY_PORT)
        named = {ENV_PORT: port, ENV_PG_PORT: pg_port, ENV_PROXY_PORT: proxy_port}
        for first, second in itertools.combinations(named, 2):
            if named[first] == named[second]:
                raise SettingsError(
                    f"{first} and {second} are both {named[first]}: give them different values"
                )
        return cls(
            state_dir=state_dir,
            venvs_dir=venvs_dir,
            port=port,
            pg_port=pg_port,
            proxy_port=proxy_port,
            esm_scale_up_per_minute=parse_number(contract.ESM_SCALE_UP_PER_MINUTE, env),
            account_concurrency=int(parse_number(contract.ACCOUNT_CONCURRENCY, env)),
            runtime=parse_runtime(env.get(ENV_RUNTIME)),
        )

    # --- venvs (built by scripts/setup) ---
    @property
    def localstack_venv(self) -> Path:
        return self.venvs_dir / "localstack-venv"

    @property
    def localstack_python(self) -> Path:
        return self.localstack_venv / "bin" / "python"

    @property
    def runtimes_dir(self) -> Path:
        return self.venvs_dir / "runtimes"

    # --- state of a running instance ---
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def functions_pids_dir(self) -> Path:
        return self.run_dir / "functions"

    @property
    def cgroup_parents(self) -> tuple[Path, Path]:
        """(memory, pids) cgroups (v1) holding this local cloud's execution environments, one
        cgroup each; named after the state dir, so two local clouds never share one."""
        import hashlib

        name = "localcloud-" + hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return CGROUP_V1_ROOT / "memory" / name, CGROUP_V1_ROOT / "pids" / name

    @property
    def localstack_log(self) -> Path:
        return self.logs_dir / "localstack.log"

    @property
    def localstack_pidfile(self) -> Path:
        return self.run_dir / "localstack.pid"

    @property
    def localstack_root(self) -> Path:
        """LocalStack's FILESYSTEM_ROOT."""
        return self.state_dir / "localstack"

    @property
    def localstack_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "socket"

    @property
    def pg_log(self) -> Path:
        return self.logs_dir / "postgres.log"

    @property
    def pg_credentials(self) -> Path:
        return self.pg_dir / "credentials.json"

    @property
    def pg_pidfile(self) -> Path:
        return self.run_dir / "postgres.pid"

    @property
    def proxy_dir(self) -> Path:
        """The proxy's configuration (written on every `up`)."""
        return self.state_dir / "pgbouncer"

    @property
    def proxy_log(self) -> Path:
        return self.logs_dir / "pgbouncer.log"

    @property
    def proxy_pidfile(self) -> Path:
        return self.run_dir / "pgbouncer.pid"

    @property
    def monitor_passfile(self) -> Path:
        """The metrics reader's password, as a libpq password file (mode 0600): LocalStack's
        extension reads the connection counts with it (LOCALCLOUD_DATABASE_METRICS_*)."""
        return self.pg_dir / "monitor.pgpass"

    @property
    def endpoints_file(self) -> Path:
        return self.state_dir / "endpoints.json"

    # --- the local cloud as containers (LOCALCLOUD_RUNTIME=docker) ---
    @property
    def compose_project(self) -> str:
        """Docker Compose's project name (it names the containers and PostgreSQL's volume):
        "localcloud" for the default state dir, one of its own for any other, so that two local
        clouds never share a database."""
        if self.state_dir == PROJECT_ROOT / ".localcloud":
            return "localcloud"
        import hashlib

        return "localcloud-" + hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:12]

    @property
    def compose_dir(self) -> Path:
        """Files the containers read from the host (PostgreSQL's access rules)."""
        return self.state_dir / "docker"
