"""The database proxy, RDS Proxy's stand-in: PgBouncer in front of PostgreSQL, on 127.0.0.1.

Why PgBouncer: it is in Debian's packages (``scripts/setup`` installs it as root), a single
small process, and does what RDS Proxy does for Lambda: many client connections multiplexed
onto a bounded pool of server connections, one transaction at a time (transaction pooling),
clients queued, not refused, when the pool is busy. pgpool-II would add load balancing and
replication we have no use for, with a process per client connection.

How it sits in front of PostgreSQL:

* clients log in with SCRAM over TCP with the credentials of their own secret; PgBouncer looks
  the role's SCRAM verifier up in PostgreSQL (``auth_query``, through a SECURITY DEFINER function
  only its own role may run), so a role a deploy creates later needs no restart or reload, and
  no password is in PgBouncer's files;
* it reaches PostgreSQL over its unix socket, logging in as the client (SCRAM pass-through: it
  proves the client's keys, it never holds the password); its own lookup role logs in by peer
  authentication, without a password;
* at most ``PROXY_MAX_SERVER_CONNECTIONS`` server connections in all (``max_db_connections``),
  however many clients (up to ``PROXY_MAX_CLIENT_CONNECTIONS``);
* a client that waits longer than ``QUERY_WAIT_TIMEOUT_S`` for a server connection gets an
  error (RDS Proxy's ConnectionBorrowTimeout), which the app treats as the database being
  unavailable: retried, never lost.

The metrics reader (``MONITOR_ROLE``) may read the admin console's SHOW commands
(``stats_users``); its SCRAM verifier is the only entry of ``auth_file``.

PgBouncer refuses to run as root: as root it is started as root and switches to PostgreSQL's
server user itself (``user =``), so the recorded PID is PgBouncer's own.
"""

from __future__ import annotations

import logging
import os
import pwd
import resource
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcloud import procs
from localcloud.settings import (
    PG_DATABASE,
    PROXY_MAX_CLIENT_CONNECTIONS,
    PROXY_MAX_SERVER_CONNECTIONS,
    Settings,
)

logger = logging.getLogger(__name__)

DEBIAN_PACKAGE = "pgbouncer"
BINARY_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
# The role PgBouncer looks verifiers up as, the schema of its lookup function (same name), and
# the role the metrics reader logs in as. Made by postgres.PostgresServer.ensure_app_database.
AUTH_ROLE = "localcloud_proxy"
MONITOR_ROLE = "localcloud_monitor"
AUTH_QUERY = f"SELECT username, password FROM {AUTH_ROLE}.login_verifier($1)"
ADMIN_DATABASE = "pgbouncer"  # PgBouncer's admin console (SHOW POOLS, SHOW STATS)
CONFIG_NAME = "pgbouncer.ini"
AUTH_FILE_NAME = "userlist.txt"
# RDS Proxy's ConnectionBorrowTimeout: how long a client waits for a server connection before it
# gets an error. As long as the app's statement timeout: a request never waits a minute.
QUERY_WAIT_TIMEOUT_S = 5
# After PostgreSQL was unreachable, try again after a second (PgBouncer's default: 15 s, which
# would stretch a short outage by as much).
SERVER_LOGIN_RETRY_S = 1
# A server connection idle this long is closed: after a burst the pool shrinks back within a
# minute, as RDS Proxy's does (PgBouncer's default: 10 minutes).
SERVER_IDLE_TIMEOUT_S = 60
START_TIMEOUT_S = 15.0
STOP_GRACE_S = 5.0
# File descriptors PgBouncer needs: a socket per client and per server connection, and some.
NEEDED_FILES = PROXY_MAX_CLIENT_CONNECTIONS + PROXY_MAX_SERVER_CONNECTIONS + 100


class ProxyError(RuntimeError):
    """The proxy could not be set up or started; the message says what to do."""


@dataclass(frozen=True)
class ProxyLayout:
    """Where PgBouncer finds PostgreSQL, and which OS user it runs as (None: ours)."""

    pg_socket_dir: Path
    pg_port: int
    run_as: str | None


def find_binary() -> Path:
    found = shutil.which("pgbouncer") or next(
        (c for c in BINARY_CANDIDATES if Path(c).is_file()), None
    )
    if found is None:
        raise ProxyError(
            "PgBouncer (the database proxy) is not installed: run scripts/setup as root, which "
            f"installs Debian's {DEBIAN_PACKAGE} package, or `sudo apt-get install "
            f"{DEBIAN_PACKAGE}`"
        )
    return Path(found)


def render_config(cfg: Settings, layout: ProxyLayout) -> str:
    """pgbouncer.ini: everything the proxy is, in one file (rewritten on every start)."""
    server = (
        f"host={layout.pg_socket_dir} port={layout.pg_port} dbname={PG_DATABASE} "
        f"auth_user={AUTH_ROLE}"
    )
    lines = [
        "; written by localcloud on every `up`; edits are lost",
        "[databases]",
        f"{PG_DATABASE} = {server}",
        "",
        "[pgbouncer]",
        f"listen_addr = {cfg.host}",
        f"listen_port = {cfg.proxy_port}",
        "unix_socket_dir =",  # no socket of its own: clients come over TCP, as to RDS Proxy
        "auth_type = scram-sha-256",
        f"auth_file = {cfg.proxy_dir / AUTH_FILE_NAME}",
        f"auth_query = {AUTH_QUERY}",
        # A server connection serves one transaction, then the next client's: what lets 1,000
        # mostly idle Lambda environments share 100 connections.
        "pool_mode = transaction",
        f"max_client_conn = {PROXY_MAX_CLIENT_CONNECTIONS}",
        f"default_pool_size = {PROXY_MAX_SERVER_CONNECTIONS}",
        f"max_db_connections = {PROXY_MAX_SERVER_CONNECTIONS}",
        "reserve_pool_size = 0",
        f"query_wait_timeout = {QUERY_WAIT_TIMEOUT_S}",
        f"server_login_retry = {SERVER_LOGIN_RETRY_S}",
        f"server_idle_timeout = {SERVER_IDLE_TIMEOUT_S}",
        f"stats_users = {MONITOR_ROLE}",
        # A thousand environments connecting would be a thousand log lines a burst.
        "log_connections = 0",
        "log_disconnections = 0",
        "log_pooler_errors = 1",
        "logfile =",  # stderr, which `start` sends to the log in the state dir
        "pidfile =",  # we record its PID ourselves (procs)
    ]
    if layout.run_as is not None:
        lines.append(f"user = {layout.run_as}")
    return "\n".join(lines) + "\n"


def render_auth_file(monitor_verifier: str) -> str:
    """userlist.txt: the metrics reader's SCRAM verifier (every other role: ``auth_query``)."""
    return f'"{MONITOR_ROLE}" "{monitor_verifier}"\n'


def nofile_limit(current: tuple[int, int], needed: int, root: bool) -> tuple[int, int]:
    """The (soft, hard) open-files limit to start PgBouncer with: at least ``needed`` when the
    hard limit allows it, or root may raise it."""
    soft, hard = current
    unlimited = resource.RLIM_INFINITY
    if hard != unlimited and hard < needed:
        if not root:
            raise ProxyError(
                f"the open-files limit is {hard}, and the database proxy needs {needed} (one per "
                f"client connection, up to {PROXY_MAX_CLIENT_CONNECTIONS}): raise it "
                f"(`ulimit -Hn {needed}` as root, or /etc/security/limits.conf), then `up` again"
            )
        hard = needed
    if soft != unlimited and soft < needed:
        soft = needed
    return soft, hard


def running_record(cfg: Settings) -> procs.ProcessRecord | None:
    record = procs.read_pidfile(cfg.proxy_pidfile)
    if record is None or not record.is_running():
        return None
    stat = record.stat()
    return record if stat is not None and stat.comm == "pgbouncer" else None


def accepts_connections(cfg: Settings, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((cfg.host, cfg.proxy_port), timeout=timeout):
            return True
    except OSError:
        return False


def write_files(cfg: Settings, layout: ProxyLayout, monitor_verifier: str) -> Path:
    """The configuration and auth file, readable by the proxy's user only; returns the config."""
    cfg.proxy_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    user = pwd.getpwnam(layout.run_as) if layout.run_as is not None else None
    config = cfg.proxy_dir / CONFIG_NAME
    for path, text in (
        (config, render_config(cfg, layout)),
        (cfg.proxy_dir / AUTH_FILE_NAME, render_auth_file(monitor_verifier)),
    ):
        path.write_text(text)
        path.chmod(0o600)
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
    if user is not None:
        os.chown(cfg.proxy_dir, user.pw_uid, user.pw_gid)
    cfg.proxy_dir.chmod(0o700)
    return config


def start(cfg: Settings, layout: ProxyLayout, monitor_verifier: str) -> procs.ProcessRecord:
    """Start PgBouncer in its own process group and wait until it accepts connections."""
    binary = find_binary()
    config = write_files(cfg, layout, monitor_verifier)
    limits = nofile_limit(
        resource.getrlimit(resource.RLIMIT_NOFILE), NEEDED_FILES, os.geteuid() == 0
    )
    for d in (cfg.logs_dir, cfg.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    logger.info(
        "starting the database proxy (PgBouncer) on %s:%d (log: %s)",
        cfg.host,
        cfg.proxy_port,
        cfg.proxy_log,
    )
    with cfg.proxy_log.open("ab") as log:
        child = subprocess.Popen(
            [str(binary), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
            preexec_fn=_limit_files(limits),
        )
    record = procs.ProcessRecord.of(child.pid)
    if record is None:
        child.wait()
        raise _start_failed(cfg, f"PgBouncer exited at once (code {child.returncode})")
    procs.write_pidfile(cfg.proxy_pidfile, record)
    child.returncode = 0  # not waited for by us: `down` stops it by its pid file
    if (
        not procs.poll(
            lambda: not record.is_running() or accepts_connections(cfg), START_TIMEOUT_S, 0.05
        )
        or not record.is_running()
    ):
        stop(record)
        cfg.proxy_pidfile.unlink(missing_ok=True)
        raise _start_failed(cfg, f"PgBouncer did not listen on {cfg.host}:{cfg.proxy_port}")
    return record


def _limit_files(limits: tuple[int, int]) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    return apply


def _start_failed(cfg: Settings, what: str) -> ProxyError:
    from localcloud.localstack import log_tail

    return ProxyError(f"{what}; log: {cfg.proxy_log}\n{log_tail(cfg.proxy_log, 15)}")


def stop(record: procs.ProcessRecord | None) -> str:
    """SIGTERM (PgBouncer's immediate shutdown), SIGKILL after a grace period."""
    if record is None:
        return "pgbouncer: not running"
    return procs.stop(record, "pgbouncer", grace=STOP_GRACE_S, group=True)
