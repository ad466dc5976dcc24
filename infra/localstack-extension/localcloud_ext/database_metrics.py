"""The RDS stand-in's connection metrics, as AWS publishes them for RDS and RDS Proxy.

AWS/RDS `DatabaseConnections` (DBInstanceIdentifier): the database's client connections, as
PostgreSQL counts them (pg_stat_activity's client backends, this reader's own left out).
AWS/RDS `ClientConnections` and `DatabaseConnections` (ProxyName): the proxy's connections from
its clients and to the database (PgBouncer's SHOW POOLS, every pool but its admin console).

The local cloud (infra/localcloud) runs PostgreSQL and its proxy beside LocalStack and says where
they are in LocalStack's environment (`LOCALCLOUD_DB_*`, libpq connection strings whose password
comes from a password file); without them this module publishes nothing. It knows nothing of
any app. A thread of its own reads both once a second and the service metrics' gauges publish
the last reading, so a database that does not answer never holds up the other metrics: its
gauges are skipped (a gap, not a zero) until it answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from localcloud_ext import contract

LOG = logging.getLogger(__name__)

# Set by infra/localcloud (localcloud_ext.contract names them for both sides).
ENV_DB_METRICS_POSTGRES = contract.DB_METRICS_POSTGRES_VARIABLE
ENV_DB_METRICS_PROXY = contract.DB_METRICS_PROXY_VARIABLE
ENV_DB_INSTANCE_IDENTIFIER = contract.DB_INSTANCE_IDENTIFIER_VARIABLE
ENV_DB_PROXY_NAME = contract.DB_PROXY_NAME_VARIABLE
NAMESPACE = "AWS/RDS"
DATABASE_CONNECTIONS = "DatabaseConnections"
CLIENT_CONNECTIONS = "ClientConnections"
READ_INTERVAL_SECONDS = 1.0
# A reading older than this is not published: the database or the proxy stopped answering.
STALE_AFTER_SECONDS = 3.0
ADMIN_CONSOLE = "pgbouncer"  # PgBouncer's own pseudo-database, left out of its counts

SERVER_CONNECTIONS_QUERY = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
CLIENT_STATES = ("cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req")
SERVER_STATES = ("sv_active", "sv_active_cancel", "sv_idle", "sv_used", "sv_tested", "sv_login")


@dataclass(frozen=True)
class Sources:
    """Where to read, and the identifiers AWS gives what is read."""

    postgres_conninfo: str
    proxy_conninfo: str
    db_instance_identifier: str
    proxy_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Sources | None:
        names = (
            ENV_DB_METRICS_POSTGRES,
            ENV_DB_METRICS_PROXY,
            ENV_DB_INSTANCE_IDENTIFIER,
            ENV_DB_PROXY_NAME,
        )
        values = [env.get(name, "") for name in names]
        return cls(*values) if all(values) else None


def proxy_counts(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[int, int]:
    """(client connections, server connections) from SHOW POOLS, the admin console left out."""
    index = {name: i for i, name in enumerate(columns)}
    clients = servers = 0
    for row in rows:
        if row[index["database"]] == ADMIN_CONSOLE:
            continue
        clients += sum(int(row[index[c]]) for c in CLIENT_STATES if c in index)
        servers += sum(int(row[index[c]]) for c in SERVER_STATES if c in index)
    return clients, servers


class Reading:
    """The last value read of one gauge, and when; `read()` raises once it is stale (the
    service metrics then skip that second)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._value: float | None = None
        self._at = 0.0

    def set(self, value: float) -> None:
        self._value, self._at = value, self._clock()

    def read(self) -> float:
        if self._value is None or self._clock() - self._at > STALE_AFTER_SECONDS:
            raise LookupError("no recent reading")
        return self._value


class _Connection:
    """One psycopg connection, opened on first use and again after it broke."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._connection: Any = None

    def rows(self, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    self._conninfo, autocommit=True, prepare_threshold=None
                )
            cursor = self._connection.execute(query)
            return [d.name for d in cursor.description or []], cursor.fetchall()
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class DatabaseMetricsReader:
    def __init__(self, sources: Sources, clock: Callable[[], float] = time.monotonic) -> None:
        self.sources = sources
        self.database_connections = Reading(clock)
        self.proxy_client_connections = Reading(clock)
        self.proxy_database_connections = Reading(clock)
        self._postgres = _Connection(sources.postgres_conninfo)
        self._proxy = _Connection(sources.proxy_conninfo)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="localcloud-db-metrics", daemon=True)
        self._failing: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(READ_INTERVAL_SECONDS + 3)
        self._postgres.close()
        self._proxy.close()

    def read_once(self) -> None:
        self._read("PostgreSQL", self._read_postgres)
        self._read("the database proxy", self._read_proxy)

    def _read_postgres(self) -> None:
        _, rows = self._postgres.rows(SERVER_CONNECTIONS_QUERY)
        self.database_connections.set(float(rows[0][0]))

    def _read_proxy(self) -> None:
        clients, servers = proxy_counts(*self._proxy.rows("SHOW POOLS"))
        self.proxy_client_connections.set(float(clients))
        self.proxy_database_connections.set(float(servers))

    def _read(self, what: str, read: Callable[[], None]) -> None:
        try:
            read()
        except Exception as e:  # a database that is down: one log line, then a gap
            if what not in self._failing:
                LOG.warning("connection metrics: %s does not answer (%s)", what, e)
                self._failing.add(what)
            return
        if what in self._failing:
            LOG.info("connection metrics: %s answers again", what)
            self._failing.discard(what)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.read_once()
            self._stop.wait(READ_INTERVAL_SECONDS)


_reader: DatabaseMetricsReader | None = None
_GAUGE_KEYS: list[str] = []


def start(
    env: Mapping[str, str],
    register_gauge: Callable[..., None],
    account_id: str,
    run: bool = True,
) -> bool:
    """Register the three gauges with the service metrics (`register_gauge`) and, if `run`,
    start reading; False when the environment names no database (a LocalStack someone else
    started)."""
    global _reader
    sources = Sources.from_env(env)
    if sources is None or _reader is not None:
        return False
    _reader = DatabaseMetricsReader(sources)
    gauges = (
        (
            DATABASE_CONNECTIONS,
            "DBInstanceIdentifier",
            sources.db_instance_identifier,
            _reader.database_connections,
        ),
        (CLIENT_CONNECTIONS, "ProxyName", sources.proxy_name, _reader.proxy_client_connections),
        (DATABASE_CONNECTIONS, "ProxyName", sources.proxy_name, _reader.proxy_database_connections),
    )
    for metric, dimension, value, reading in gauges:
        key = f"rds/{dimension}/{value}/{metric}"
        register_gauge(
            key,
            account_id=account_id,
            region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            namespace=NAMESPACE,
            metric=metric,
            dimensions={dimension: value},
            read=reading.read,
        )
        _GAUGE_KEYS.append(key)
    if run:
        _reader.start()
    return True


def stop(unregister_gauge: Callable[[str], None]) -> None:
    global _reader
    if _reader is None:
        return
    for key in _GAUGE_KEYS:
        unregister_gauge(key)
    _GAUGE_KEYS.clear()
    _reader.stop()
    _reader = None
