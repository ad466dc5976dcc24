"""The database proxy (PgBouncer, RDS Proxy's stand-in) against the local cloud's PostgreSQL: many
clients share a bounded pool of server connections; without it, as many clients run the
database out of connections, and the app's store reports that as the database being
unavailable (retried, never lost). Both publish their connection counts as AWS/RDS metrics."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from chalicelib.errors import DependencyUnavailable
from chalicelib.postgres_store import STATEMENT_TIMEOUT_MS, PostgresTaskStore, conninfo_from_secret
from chalicelib.settings import DatabaseEndpoint
from localcloud.aws import client_for_running
from localcloud.settings import PG_MAX_CONNECTIONS, PROXY_MAX_SERVER_CONNECTIONS
from tests.metrics import metric_values
from tests.polling import wait_for

CLIENTS = 200
TRANSACTIONS_PER_CLIENT = 5


@pytest.fixture(scope="module")
def proxy(local_cloud: dict[str, Any]) -> DatabaseEndpoint:
    section = local_cloud["database_proxy"]
    return DatabaseEndpoint(section["host"], int(section["port"]))


def server_connections(owner: str, role: str) -> int:
    """The role's connections as PostgreSQL counts them (pg_stat_activity)."""
    with psycopg.connect(owner, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_200_clients_share_at_most_100_server_connections(
    owner: str, app_role: dict[str, Any], proxy: DatabaseEndpoint
) -> None:
    conninfo = conninfo_from_secret(app_role, through=proxy)
    all_connected = threading.Barrier(CLIENTS + 1, timeout=60)

    def client() -> int:
        with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as connection:
            all_connected.wait()
            for _ in range(TRANSACTIONS_PER_CLIENT):
                with connection.transaction():
                    connection.execute("SELECT pg_sleep(0.02)")
                    connection.execute("SELECT count(*) FROM tasks")
            return TRANSACTIONS_PER_CLIENT

    peak = 0
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client) for _ in range(CLIENTS)]
        all_connected.wait()  # 200 clients hold a connection to the proxy now
        while not all(f.done() for f in futures):
            peak = max(peak, server_connections(owner, app_role["username"]))
            time.sleep(0.02)
        finished = sum(f.result() for f in futures)

    print(f"{CLIENTS} clients through the proxy: at most {peak} server connections")
    assert finished == CLIENTS * TRANSACTIONS_PER_CLIENT
    assert 0 < peak <= PROXY_MAX_SERVER_CONNECTIONS < PG_MAX_CONNECTIONS


def test_without_the_proxy_as_many_clients_run_out_of_connections(
    owner: str, app_role: dict[str, Any]
) -> None:
    direct = conninfo_from_secret(app_role)
    refused: psycopg.OperationalError | None = None
    with ExitStack() as held:
        for _ in range(CLIENTS):
            try:
                held.enter_context(psycopg.connect(direct, autocommit=True))
            except psycopg.OperationalError as e:
                refused = e
                break
        store = PostgresTaskStore(lambda: direct, "proxy-test")
        with pytest.raises(DependencyUnavailable) as unavailable:
            store.check()

    assert refused is not None
    assert "too many clients" in str(refused) or "remaining connection slots" in str(refused)
    # the store's adapter turns it into the app's retryable outage, which keeps nothing
    assert isinstance(unavailable.value.__cause__, psycopg.OperationalError)


def test_the_store_through_the_proxy_keeps_no_session_state(
    app_role: dict[str, Any], proxy: DatabaseEndpoint
) -> None:
    store = PostgresTaskStore(lambda: conninfo_from_secret(app_role, through=proxy), "proxy-test")
    try:
        for _ in range(10):  # past psycopg's default prepare threshold (5)
            store.count_by_status()
        connection = store._connect()
        timeout = connection.execute("SHOW statement_timeout").fetchone()
    finally:
        store.close()

    assert connection.prepare_threshold is None
    assert timeout == {"statement_timeout": f"{STATEMENT_TIMEOUT_MS // 1000}s"}


def test_the_proxy_refuses_a_wrong_password_and_a_superuser(
    app_role: dict[str, Any], proxy: DatabaseEndpoint
) -> None:
    wrong = {**app_role, "password": "not-the-password"}
    superuser = {**app_role, "username": "postgres"}

    for secret in (wrong, superuser):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(conninfo_from_secret(secret, through=proxy)).close()


def test_the_connection_counts_are_published_as_aws_rds_metrics(
    local_cloud: dict[str, Any], app_role: dict[str, Any], proxy: DatabaseEndpoint
) -> None:
    cloudwatch = client_for_running(local_cloud, "cloudwatch")
    instance = ("DBInstanceIdentifier", local_cloud["postgres"]["db_instance_identifier"])
    proxy_name = ("ProxyName", local_cloud["database_proxy"]["name"])
    # Few: the proxy's own pool may already hold its 78, and PostgreSQL has 112 in all.
    held = 10
    since = datetime.now(UTC)

    def peak(metric: str, dimension: tuple[str, str]) -> float:
        values = metric_values(cloudwatch, since, "AWS/RDS", metric, dimension, "Maximum")
        return max(values, default=0.0)

    with ExitStack() as clients:
        direct = [
            clients.enter_context(psycopg.connect(conninfo_from_secret(app_role)))
            for _ in range(held)
        ]
        pooled = [
            clients.enter_context(psycopg.connect(conninfo_from_secret(app_role, through=proxy)))
            for _ in range(held)
        ]
        for connection in pooled:  # each takes a server connection while its transaction runs
            connection.execute("SELECT 1")
        wait_for(
            lambda: peak("ClientConnections", proxy_name),
            lambda n: n >= held,
            30,
            f"AWS/RDS ClientConnections of the proxy >= {held}",
        )
        wait_for(
            lambda: peak("DatabaseConnections", instance),
            lambda n: n >= len(direct) + 1,
            30,
            f"AWS/RDS DatabaseConnections of the instance >= {len(direct) + 1}",
        )
    assert peak("DatabaseConnections", proxy_name) >= 1
