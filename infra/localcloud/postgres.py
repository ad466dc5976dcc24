"""PostgreSQL, the RDS stand-in: a cluster under the state dir, on 127.0.0.1 only.

Uses the machine's binaries (``initdb``/``pg_ctl`` on PATH or /usr/lib/postgresql/*/bin); where
there are none, the binaries bundled in the ``pgserver`` wheel (installed into the tools venv by
``scripts/setup`` only in that case). PostgreSQL refuses to run as root: as root, every server
command runs as the ``postgres`` system user through ``runuser``.

Authentication: TCP from 127.0.0.1 with SCRAM only; the unix socket (in the state dir, mode 0700)
uses peer authentication, so only the OS user running the server is the admin there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import pwd
import secrets
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from localcloud import discovery, procs
from localcloud.database_proxy import AUTH_ROLE, MONITOR_ROLE, ProxyLayout
from localcloud.settings import (
    DB_INSTANCE_CLASS,
    PG_DATABASE,
    PG_MAX_CONNECTIONS,
    PG_OWNER_ROLE,
    Settings,
)

logger = logging.getLogger(__name__)

SERVER_USER_WHEN_ROOT = "postgres"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
PSQL_VARIABLE_PREFIX = "LOCALCLOUD_PSQL_"
# The owner role (RDS's master user: it may create the functions' roles) and its database.
# Values come from psql variables set from the environment; format() quotes them (%I, %L).
OWNER_DATABASE_SCRIPT = """\\getenv role LOCALCLOUD_PSQL_ROLE
\\getenv dbname LOCALCLOUD_PSQL_DBNAME
\\getenv verifier LOCALCLOUD_PSQL_VERIFIER
SELECT format('CREATE ROLE %I', :'role')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEROLE PASSWORD %L', :'role', :'verifier') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'dbname', :'role')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dbname') \\gexec
"""
# In the app's database (PgBouncer 1.18 runs its auth_query in the database a client asks
# for): the proxy's lookup role, which logs in by peer authentication over the unix socket and
# may only run the lookup function; the function returns a login role's SCRAM verifier, never a
# superuser's. The metrics reader: login and pg_monitor (to see every backend's type in
# pg_stat_activity), nothing else; its verifier from the psql variable.
PROXY_ROLES_SCRIPT = f"""\\getenv monitor_verifier LOCALCLOUD_PSQL_MONITOR_VERIFIER
SELECT 'CREATE ROLE {AUTH_ROLE}'
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{AUTH_ROLE}') \\gexec
ALTER ROLE {AUTH_ROLE} WITH LOGIN NOINHERIT PASSWORD NULL;
SELECT 'CREATE ROLE {MONITOR_ROLE}'
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{MONITOR_ROLE}') \\gexec
SELECT format('ALTER ROLE {MONITOR_ROLE} WITH LOGIN INHERIT PASSWORD %L', :'monitor_verifier')
  \\gexec
GRANT pg_monitor TO {MONITOR_ROLE};
CREATE SCHEMA IF NOT EXISTS {AUTH_ROLE};
REVOKE ALL ON SCHEMA {AUTH_ROLE} FROM PUBLIC;
GRANT USAGE ON SCHEMA {AUTH_ROLE} TO {AUTH_ROLE};
CREATE OR REPLACE FUNCTION {AUTH_ROLE}.login_verifier(login text)
  RETURNS TABLE (username text, password text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
AS $$
  SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid
  WHERE rolname = login AND rolcanlogin AND NOT rolsuper
    AND (rolvaliduntil IS NULL OR rolvaliduntil > now())
$$;
REVOKE ALL ON FUNCTION {AUTH_ROLE}.login_verifier(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {AUTH_ROLE}.login_verifier(text) TO {AUTH_ROLE};
"""
CONF_NAME = "localcloud.conf"
START_TIMEOUT_S = 30


class PostgresError(RuntimeError):
    """PostgreSQL could not be set up, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    dbname: str

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        """The owner's (master user's) credentials, generated once and kept in ``path``
        (mode 0600), the local cloud's own state, as RDS keeps its master password."""
        if path.is_file():
            data = json.loads(path.read_text())
            return cls(data["username"], data["password"], data["dbname"])
        creds = cls(PG_OWNER_ROLE, secrets.token_urlsafe(24), PG_DATABASE)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(creds), out, indent=2)
        return creds


def load_or_create_monitor_password(path: Path) -> str:
    """The metrics reader's password, generated once and kept as a libpq password file (mode
    0600) that LocalStack's extension connects with, to PostgreSQL and to the proxy."""
    if path.is_file():
        return path.read_text().strip().rsplit(":", 1)[1]
    password = secrets.token_urlsafe(24)  # no ':' or '\\' to escape in a password file
    write_monitor_passfile(path, password)
    return password


def write_monitor_passfile(path: Path, password: str) -> None:
    """The metrics reader's libpq password file (mode 0600), created anew."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"*:*:*:{MONITOR_ROLE}:{password}\n")


def pgserver_bindir() -> Path | None:
    """The binaries bundled in the pgserver wheel, when it is installed in this interpreter."""
    try:
        import pgserver  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def find_bindir() -> Path:
    extra = [d] if (d := pgserver_bindir()) is not None else []
    bindir = discovery.find_pg_bindir(extra=extra)
    if bindir is None:
        raise PostgresError(
            "no PostgreSQL binaries found (initdb, pg_ctl, postgres, psql on PATH or in "
            "/usr/lib/postgresql/*/bin) and pgserver is not installed in .venv. Fix: install "
            "PostgreSQL (e.g. apt install postgresql) or rerun scripts/setup, which installs "
            "pgserver when no binaries are found"
        )
    return bindir


def unreachable_parent(path: Path, uid: int, gids: Sequence[int]) -> Path | None:
    """The first existing ancestor of ``path`` that user ``uid`` cannot traverse (no x bit)."""
    for parent in [*reversed(path.parents)]:
        if not parent.exists():
            break
        st = parent.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return parent
    return None


def render_hba(server_user: str, tcp_from: str = "127.0.0.1/32") -> str:
    """pg_hba.conf: on the unix socket (mode 0700: only the server's OS user reaches it) the
    admin and the proxy's lookup role by peer, the roles the proxy logs in for by SCRAM; over
    TCP, SCRAM from ``tcp_from`` only (127.0.0.1 here; in a container, where the host's
    connections arrive through Docker's port forwarding from the bridge's address, "all")."""
    return (
        "# written by localcloud on every `up`\n"
        f"local all {server_user} peer\n"
        f"local {PG_DATABASE} {AUTH_ROLE} peer map={AUTH_ROLE}\n"
        "local all all scram-sha-256\n"
        f"host all all {tcp_from} scram-sha-256\n"
    )


def render_ident(server_user: str) -> str:
    """pg_ident.conf: the proxy runs as the server's OS user and looks verifiers up as its role."""
    return f"# written by localcloud on every `up`\n{AUTH_ROLE} {server_user} {AUTH_ROLE}\n"


class PostgresServer:
    def __init__(self, cfg: Settings, bindir: Path | None = None) -> None:
        self.cfg = cfg
        self.bindir = bindir if bindir is not None else find_bindir()
        if os.geteuid() == 0:
            try:
                self.user: pwd.struct_passwd = pwd.getpwnam(SERVER_USER_WHEN_ROOT)
            except KeyError:
                raise PostgresError(
                    "running as root and there is no 'postgres' user to run PostgreSQL as "
                    "(it refuses root). Fix: `useradd --system --home /var/lib/postgresql postgres`"
                ) from None
            self.run_as: str | None = self.user.pw_name
        else:
            self.user = pwd.getpwuid(os.geteuid())
            self.run_as = None

    # --- commands ---
    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def _run(
        self,
        tool: str,
        *args: str,
        stdin: str | None = None,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
    ) -> str:
        cmd = self._cmd(tool, *args)
        result = subprocess.run(
            cmd,
            input=stdin,
            env={**os.environ, **env} if env else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",  # the server user may not be able to read our cwd
        )
        if result.returncode != 0:
            raise PostgresError(
                f"{tool} failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
                f"\n  command: {' '.join(cmd)}\n  server log: {self.cfg.pg_log}"
            )
        return result.stdout

    def _chown(self, path: Path) -> None:
        if self.run_as:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    # --- layout ---
    def prepare(self) -> None:
        """Create the folders the server user owns, and check it can reach them."""
        cfg = self.cfg
        for d in (cfg.pg_dir, cfg.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        gids = os.getgrouplist(self.user.pw_name, self.user.pw_gid)
        blocked = unreachable_parent(cfg.pg_data, self.user.pw_uid, gids)
        if blocked is not None:
            raise PostgresError(
                f"user {self.user.pw_name!r} (it runs PostgreSQL) cannot traverse {blocked}, so it "
                f"cannot reach {cfg.pg_data}. Fix: `chmod o+x {blocked}` if it is yours, or set "
                f"LOCALCLOUD_STATE_DIR to a folder under a traversable path"
            )
        for d in (cfg.pg_data, cfg.pg_socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            self._chown(d)
            d.chmod(0o700)
        if not cfg.pg_log.exists():
            cfg.pg_log.touch(mode=0o640)
        self._chown(cfg.pg_log)

    def is_initialised(self) -> bool:
        return (self.cfg.pg_data / "PG_VERSION").is_file()

    def initdb(self) -> None:
        logger.info("initialising a PostgreSQL cluster in %s", self.cfg.pg_data)
        self._run(
            "initdb",
            "-D",
            str(self.cfg.pg_data),
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--no-instructions",
            timeout=120,
        )

    def write_config(self) -> None:
        """(Re)write our settings on every start, so a changed port applies."""
        data = self.cfg.pg_data
        conf = data / CONF_NAME
        conf.write_text(
            "# written by localcloud on every `up`; edits are lost\n"
            f"listen_addresses = '{self.cfg.host}'\n"
            f"port = {self.cfg.pg_port}\n"
            f"unix_socket_directories = '{self.cfg.pg_socket_dir}'\n"
            "unix_socket_permissions = 0700\n"
            "password_encryption = 'scram-sha-256'\n"
            f"# as RDS's default for {DB_INSTANCE_CLASS}: LEAST(memory / 9531392, 5000)\n"
            f"max_connections = {PG_MAX_CONNECTIONS}\n"
        )
        hba = data / "pg_hba.conf"
        hba.write_text(render_hba(self.user.pw_name))
        ident = data / "pg_ident.conf"
        ident.write_text(render_ident(self.user.pw_name))
        main_conf = data / "postgresql.conf"
        include = f"include_if_exists = '{CONF_NAME}'"
        text = main_conf.read_text()
        if include not in text:
            main_conf.write_text(text.rstrip("\n") + f"\n\n{include}\n")
        for path in (conf, hba, ident, main_conf):
            self._chown(path)
            path.chmod(0o600)

    # --- lifecycle ---
    def postmaster_record(self) -> procs.ProcessRecord | None:
        """The running postmaster of our data dir, from ``postmaster.pid``, if it is alive."""
        return _live_postgres(self.cfg.pg_data / "postmaster.pid")

    def clean_stale(self) -> list[str]:
        """Remove ``postmaster.pid`` and socket lock files left by a server that is gone (killed,
        or the machine rebooted); PostgreSQL refuses to start while they name a live PID."""
        removed: list[str] = []
        pidfile = self.cfg.pg_data / "postmaster.pid"
        if pidfile.exists() and _live_postgres(pidfile) is None:
            pidfile.unlink()
            removed.append(f"removed stale {pidfile} (its server is not running)")
        if self.cfg.pg_socket_dir.is_dir():
            for lock in self.cfg.pg_socket_dir.glob(".s.PGSQL.*.lock"):
                if _live_postgres(lock) is None:
                    lock.unlink()
                    lock.with_suffix("").unlink(missing_ok=True)  # the socket itself
                    removed.append(f"removed stale socket lock {lock}")
        return removed

    def start(self) -> procs.ProcessRecord:
        logger.info("starting PostgreSQL on %s:%d", self.cfg.host, self.cfg.pg_port)
        self._run(
            "pg_ctl",
            "-D",
            str(self.cfg.pg_data),
            "-l",
            str(self.cfg.pg_log),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-s",
            "start",
            timeout=START_TIMEOUT_S + 10,
        )
        record = self.postmaster_record()
        if record is None:
            raise PostgresError(
                f"pg_ctl reported a start but no postmaster runs; see {self.cfg.pg_log}"
            )
        procs.write_pidfile(self.cfg.pg_pidfile, record)
        return record

    def reload(self) -> None:
        """Apply a rewritten configuration to the running server (pg_hba.conf, pg_ident.conf and
        reloadable settings; max_connections waits for the next start)."""
        self._run("pg_ctl", "-D", str(self.cfg.pg_data), "-s", "reload", timeout=20)
        shown = self.psql_admin("SHOW max_connections").strip()
        if shown != str(PG_MAX_CONNECTIONS):
            logger.warning(
                "PostgreSQL runs with max_connections %s; %d applies at its next start "
                "(`scripts/localcloud down` and `up`)",
                shown,
                PG_MAX_CONNECTIONS,
            )

    def is_ready(self) -> bool:
        result = (
            subprocess.run(
                self._cmd(
                    "pg_isready", "-q", "-h", self.cfg.host, "-p", str(self.cfg.pg_port), "-t", "2"
                ),
                capture_output=True,
                timeout=10,
                check=False,
                cwd="/",
            )
            if (self.bindir / "pg_isready").exists()
            else None
        )
        if result is None:  # pgserver may lack pg_isready: a TCP probe will do
            return not procs.port_is_free(self.cfg.host, self.cfg.pg_port)
        return result.returncode == 0

    def psql_admin(
        self, sql: str, variables: Mapping[str, str] | None = None, database: str = "postgres"
    ) -> str:
        """Run ``sql`` as the admin over the unix socket (peer auth). SQL goes through stdin,
        ``variables`` through the environment (``\\getenv name LOCALCLOUD_PSQL_NAME`` in the
        script): neither appears in a process list."""
        environment = {
            f"{PSQL_VARIABLE_PREFIX}{k.upper()}": v for k, v in (variables or {}).items()
        }
        return self._run(
            "psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.cfg.pg_socket_dir),
            "-p",
            str(self.cfg.pg_port),
            "-d",
            database,
            "-f",
            "-",
            stdin=sql,
            env=environment,
        )

    def ensure_app_database(self, creds: Credentials) -> None:
        """Create or update the owner role (the master user, as RDS has one: LOGIN CREATEROLE,
        password = ``creds``) and the app's database it owns. The script is constant; the
        values reach psql in its environment (``\\getenv``, psql >= 15) and are quoted by
        ``format()``, and the password goes as a SCRAM verifier, never in plain text."""
        self.psql_admin(
            OWNER_DATABASE_SCRIPT,
            variables={
                "role": creds.username,
                "dbname": creds.dbname,
                "verifier": scram_sha256_verifier(creds.password),
            },
        )

    def ensure_proxy_roles(self, monitor_password: str) -> None:
        """The proxy's lookup role and function, and the metrics reader (PROXY_ROLES_SCRIPT), in
        the app's database; idempotent."""
        self.psql_admin(
            PROXY_ROLES_SCRIPT,
            variables={"monitor_verifier": scram_sha256_verifier(monitor_password)},
            database=PG_DATABASE,
        )

    def is_running(self) -> bool:
        return self.postmaster_record() is not None

    def proxy_layout(self) -> ProxyLayout:
        """How the proxy reaches this server: its socket, as its OS user (when we are root)."""
        return ProxyLayout(self.cfg.pg_socket_dir, self.cfg.pg_port, self.run_as)

    def stop(self, record: procs.ProcessRecord | None) -> str:
        """``pg_ctl stop -m fast``; SIGKILL the verified postmaster when that fails."""
        live = self.postmaster_record() or (
            record if record is not None and record.is_running() else None
        )
        if live is None:
            return "postgres: not running"
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.cfg.pg_data),
                "-m",
                "fast",
                "-w",
                "-t",
                "15",
                "-s",
                "stop",
                timeout=25,
            )
        except (PostgresError, subprocess.TimeoutExpired) as e:
            logger.warning("pg_ctl stop failed (%s); killing postmaster pid %d", e, live.pid)
            procs.kill_group(live)
            procs.wait_gone(live, 5.0)
            return f"postgres: pid {live.pid} killed (SIGKILL after pg_ctl stop failed)"
        return f"postgres: pid {live.pid} stopped (pg_ctl stop -m fast)"


def _live_postgres(pidfile: Path) -> procs.ProcessRecord | None:
    """The live postgres process whose PID is the first line of ``pidfile``."""
    try:
        pid = int(pidfile.read_text().splitlines()[0].strip())
    except (OSError, ValueError, IndexError):
        return None
    stat_ = procs.read_stat(pid)
    if stat_ is None or procs.exited(stat_) or stat_.comm not in ("postgres", "postmaster"):
        return None
    return procs.ProcessRecord(pid, stat_.starttime)


def scram_sha256_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677, as libpq's
    PQencryptPasswordConn makes it): ALTER ROLE ... PASSWORD takes it in place of the password,
    which then never reaches the server, its log or a failed statement's message."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
