"""``up``, ``down`` and ``status`` of the local cloud (LocalStack, PostgreSQL and its proxy).

Processes are only ever signalled by recorded PID, after checking that the PID still has the start
time recorded at launch (see :mod:`localcloud.procs`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from localcloud import database_proxy, endpoints, environments, localstack, procs
from localcloud.postgres import (
    Credentials,
    PostgresError,
    PostgresServer,
    load_or_create_monitor_password,
)
from localcloud.settings import (
    DB_INSTANCE_CLASS,
    DB_INSTANCE_IDENTIFIER,
    ENV_PG_PORT,
    ENV_PORT,
    ENV_PROXY_PORT,
    PG_MAX_CONNECTIONS,
    PROXY_MAX_SERVER_CONNECTIONS,
    PROXY_NAME,
    SECRET_NAME,
    Settings,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


class UpError(RuntimeError):
    """``up`` failed; whatever this ``up`` started has been stopped again."""


@dataclass
class UpResult:
    already_running: bool
    endpoints: dict[str, Any]
    seconds: float = 0.0


@dataclass
class DownResult:
    messages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- function processes (written by the extension's executor) ----------------------------


def function_records(cfg: Settings) -> list[tuple[str, procs.ProcessRecord | None]]:
    """(environment id, record) for every ``<state>/run/functions/<id>.pid``."""
    d = cfg.functions_pids_dir
    if not d.is_dir():
        return []
    return [(p.stem, procs.read_pidfile(p)) for p in sorted(d.glob("*.pid"))]


def stop_functions(cfg: Settings) -> list[str]:
    """SIGKILL each recorded function process group that is still ours; remove its pid file."""
    messages: list[str] = []
    for env_id, record in function_records(cfg):
        if record is not None and procs.kill_group(record):
            procs.wait_gone(record, 5.0)
            messages.append(f"function environment {env_id}: pid {record.pid} killed")
        else:
            messages.append(f"function environment {env_id}: not running, pid file removed")
        (cfg.functions_pids_dir / f"{env_id}.pid").unlink(missing_ok=True)
    # What a crashed LocalStack left in the environments' cgroups (a process that left its
    # process group), and the cgroups themselves.
    messages.extend(environments.remove_cgroups(cfg.cgroup_parents))
    return messages


# --- up ----------------------------------------------------------------------------------


def _port_taken_message(cfg: Settings, port: int, variable: str, what: str) -> str:
    return (
        f"port {cfg.host}:{port} (for {what}) is already in use by "
        f"{procs.describe_port_owner(port)}, "
        f"which localcloud did not start. Fix: stop that process, or choose another port, "
        f"e.g. `{variable}={port + 1} scripts/localcloud up`"
    )


def _publish(
    cfg: Settings,
    ls: procs.ProcessRecord,
    pg: procs.ProcessRecord,
    proxy: procs.ProcessRecord,
    creds: Credentials,
    fresh: bool,
) -> dict[str, Any]:
    from localcloud import aws  # boto3 is slow to import: only `up` needs it

    arn = aws.ensure_rds_secret(cfg, creds)
    return endpoints.update(
        cfg.endpoints_file,
        endpoint_sections(
            cfg,
            creds,
            arn,
            pids=Servers(ls.pid, pg.pid, proxy.pid),
            logs=Servers(str(cfg.localstack_log), str(cfg.pg_log), str(cfg.proxy_log)),
        ),
        fresh=fresh,
    )


@dataclass(frozen=True)
class Servers(Generic[T]):
    """One value per server of the local cloud (a PID, where its log is)."""

    localstack: T
    postgres: T
    database_proxy: T


def endpoint_sections(
    cfg: Settings,
    creds: Credentials,
    secret_arn: str,
    pids: Servers[int],
    logs: Servers[str],
) -> dict[str, Any]:
    """The sections of endpoints.json that `up` owns, host processes or containers alike."""
    return {
        "region": cfg.region,
        "localstack": {
            "url": cfg.localstack_url,
            "pid": pids.localstack,
            "log": logs.localstack,
        },
        "postgres": {
            "host": cfg.host,
            "port": cfg.pg_port,
            "dbname": creds.dbname,
            "secret_name": SECRET_NAME,
            "secret_arn": secret_arn,
            "pid": pids.postgres,
            "log": logs.postgres,
            # AWS's names for it: the AWS/RDS metrics' DBInstanceIdentifier, its class
            "db_instance_identifier": DB_INSTANCE_IDENTIFIER,
            "instance_class": DB_INSTANCE_CLASS,
            "max_connections": PG_MAX_CONNECTIONS,
        },
        # RDS Proxy's stand-in: clients connect here with their own secret's credentials
        "database_proxy": {
            "host": cfg.host,
            "port": cfg.proxy_port,
            "name": PROXY_NAME,  # the AWS/RDS metrics' ProxyName
            "dbname": creds.dbname,
            "max_server_connections": PROXY_MAX_SERVER_CONNECTIONS,
            "pid": pids.database_proxy,
            "log": logs.database_proxy,
        },
    }


def clean_stale(cfg: Settings, pg: PostgresServer) -> list[str]:
    """Remove pid files whose processes are gone, and end leftover function processes of a
    LocalStack that is no longer running. Logs and returns what it did."""
    messages: list[str] = []
    if cfg.localstack_pidfile.exists() and localstack.running_record(cfg) is None:
        cfg.localstack_pidfile.unlink()
        messages.append(f"removed stale {cfg.localstack_pidfile} (LocalStack was not running)")
    if localstack.running_record(cfg) is None:
        messages.extend(f"stale {m}" for m in stop_functions(cfg))
    if cfg.proxy_pidfile.exists() and database_proxy.running_record(cfg) is None:
        cfg.proxy_pidfile.unlink()
        messages.append(f"removed stale {cfg.proxy_pidfile} (the proxy was not running)")
    if not pg.is_running():
        if cfg.pg_pidfile.exists():
            cfg.pg_pidfile.unlink()
            messages.append(f"removed stale {cfg.pg_pidfile} (PostgreSQL was not running)")
        messages.extend(pg.clean_stale())
    for message in messages:
        logger.info("%s", message)
    return messages


def up(cfg: Settings) -> UpResult:
    """Start what is not running, wait until healthy, publish the secret and endpoints.json.

    Idempotent: with everything running and healthy it only refreshes the secret and endpoints.
    On failure it stops what it started (and nothing else) and raises :class:`UpError`.
    """
    started_at = time.monotonic()
    if not cfg.localstack_python.exists():
        raise UpError(f"{cfg.localstack_python} not found: run scripts/setup first")
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        pg = PostgresServer(cfg)
    except PostgresError as e:
        raise UpError(str(e)) from e
    clean_stale(cfg, pg)

    ls_rec = localstack.running_record(cfg)
    pg_rec = pg.postmaster_record()
    proxy_rec = database_proxy.running_record(cfg)
    if ls_rec is not None and pg_rec is not None and proxy_rec is not None:
        if localstack.health(cfg) is None:
            raise UpError(
                f"LocalStack (pid {ls_rec.pid}) runs but {cfg.localstack_url} does not answer: "
                f"see `scripts/localcloud logs`, then `scripts/localcloud down` and `up`"
            )
        if not pg.is_ready():
            raise UpError(
                f"PostgreSQL (pid {pg_rec.pid}) runs but not on {cfg.host}:{cfg.pg_port}: "
                f"`scripts/localcloud down` then `up`"
            )
        creds = Credentials.load_or_create(cfg.pg_credentials)
        # idempotent: an owner (and the proxy's roles) made by an older `up` are brought up to date
        pg.ensure_app_database(creds)
        pg.ensure_proxy_roles(load_or_create_monitor_password(cfg.monitor_passfile))
        data = _publish(cfg, ls_rec, pg_rec, proxy_rec, creds, fresh=False)
        return UpResult(True, data, time.monotonic() - started_at)

    if ls_rec is None and not procs.port_is_free(cfg.host, cfg.port):
        raise UpError(_port_taken_message(cfg, cfg.port, ENV_PORT, "LocalStack"))
    if pg_rec is None and not procs.port_is_free(cfg.host, cfg.pg_port):
        raise UpError(_port_taken_message(cfg, cfg.pg_port, ENV_PG_PORT, "PostgreSQL"))
    if proxy_rec is None and not procs.port_is_free(cfg.host, cfg.proxy_port):
        raise UpError(
            _port_taken_message(cfg, cfg.proxy_port, ENV_PROXY_PORT, "the database proxy")
        )

    started: list[tuple[str, procs.ProcessRecord]] = []
    fresh_localstack = ls_rec is None
    try:
        if ls_rec is None:  # start first: it boots while PostgreSQL starts
            ls_rec = localstack.start(cfg)
            started.append(("localstack", ls_rec))
        if pg_rec is None:
            pg.prepare()
            if not pg.is_initialised():
                pg.initdb()
            pg.write_config()
            pg_rec = pg.start()
            started.append(("postgres", pg_rec))
        else:
            procs.write_pidfile(cfg.pg_pidfile, pg_rec)
            # started by an older `up`: its access rules may predate the proxy
            pg.write_config()
            pg.reload()
        creds = Credentials.load_or_create(cfg.pg_credentials)
        pg.ensure_app_database(creds)
        monitor_password = load_or_create_monitor_password(cfg.monitor_passfile)
        pg.ensure_proxy_roles(monitor_password)
        if proxy_rec is None:
            proxy_rec = database_proxy.start(cfg, pg.proxy_layout(), monitor_password)
            started.append(("proxy", proxy_rec))
        localstack.wait_healthy(cfg, ls_rec)
        data = _publish(cfg, ls_rec, pg_rec, proxy_rec, creds, fresh=fresh_localstack)
    except BaseException as e:
        for name, record in reversed(started):
            if name == "proxy":
                logger.warning("up failed: %s", database_proxy.stop(record))
                cfg.proxy_pidfile.unlink(missing_ok=True)
            elif name == "postgres":
                logger.warning("up failed: %s", pg.stop(record))
                cfg.pg_pidfile.unlink(missing_ok=True)
            else:
                logger.warning("up failed: %s", localstack.stop(cfg, record))
                cfg.localstack_pidfile.unlink(missing_ok=True)
                stop_functions(cfg)
        if isinstance(e, Exception):
            raise UpError(str(e)) from e
        raise
    return UpResult(False, data, time.monotonic() - started_at)


# --- down --------------------------------------------------------------------------------


def down(cfg: Settings) -> DownResult:
    """Stop LocalStack, every recorded function process and PostgreSQL; verify nothing is left."""
    started_at = time.monotonic()
    result = DownResult()
    ls_rec = procs.read_pidfile(cfg.localstack_pidfile)
    result.messages.append(localstack.stop(cfg, ls_rec))
    result.messages.extend(stop_functions(cfg))
    proxy_rec = procs.read_pidfile(cfg.proxy_pidfile)
    result.messages.append(database_proxy.stop(proxy_rec))
    pg_rec = procs.read_pidfile(cfg.pg_pidfile)
    try:
        result.messages.append(PostgresServer(cfg).stop(pg_rec))
    except PostgresError as e:  # binaries gone: fall back to the recorded PID
        logger.warning("%s", e)
        result.messages.append(
            "postgres: not running"
            if pg_rec is None
            else procs.stop(pg_rec, "postgres", grace=10.0)
        )

    for record, name in ((ls_rec, "localstack"), (proxy_rec, "pgbouncer"), (pg_rec, "postgres")):
        if record is not None and record.is_running():
            result.problems.append(f"{name} pid {record.pid} is still running")
    for env_id, record in function_records(cfg):
        if record is not None and record.is_running():
            result.problems.append(
                f"function environment {env_id} pid {record.pid} is still running"
            )
    for port, what in (
        (cfg.port, "LocalStack"),
        (cfg.pg_port, "PostgreSQL"),
        (cfg.proxy_port, "the database proxy"),
    ):
        if not procs.port_is_free(cfg.host, port):
            result.problems.append(
                f"port {cfg.host}:{port} ({what}) is still bound by "
                f"{procs.describe_port_owner(port)}"
            )
    if not result.problems:
        cfg.localstack_pidfile.unlink(missing_ok=True)
        cfg.proxy_pidfile.unlink(missing_ok=True)
        cfg.pg_pidfile.unlink(missing_ok=True)
        endpoints.remove(cfg.endpoints_file)
    result.seconds = time.monotonic() - started_at
    return result


# --- status ------------------------------------------------------------------------------


@dataclass
class Status:
    localstack_pid: int | None
    localstack_healthy: bool
    postgres_pid: int | None
    postgres_ready: bool
    functions: list[tuple[str, int]]
    proxy_pid: int | None = None
    proxy_listening: bool = False
    memory: environments.EnvironmentsMemory | None = None

    @property
    def ok(self) -> bool:
        return self.localstack_healthy and self.postgres_ready and self.proxy_listening


def status(cfg: Settings) -> Status:
    ls_rec = localstack.running_record(cfg)
    healthy = ls_rec is not None and localstack.health(cfg) is not None
    pg_pid: int | None = None
    ready = False
    try:
        pg = PostgresServer(cfg)
        pg_rec = pg.postmaster_record()
        if pg_rec is not None:
            pg_pid = pg_rec.pid
            ready = pg.is_ready()
    except PostgresError as e:
        logger.warning("%s", e)
    functions = [
        (env_id, record.pid)
        for env_id, record in function_records(cfg)
        if record is not None and record.is_running()
    ]
    proxy_rec = database_proxy.running_record(cfg)
    return Status(
        ls_rec.pid if ls_rec else None,
        healthy,
        pg_pid,
        ready,
        functions,
        proxy_rec.pid if proxy_rec else None,
        proxy_rec is not None and database_proxy.accepts_connections(cfg),
        environments.memory(cfg.functions_pids_dir),
    )
