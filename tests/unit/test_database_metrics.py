"""The RDS stand-in's connection metrics: what the extension reads and how it names it."""

from __future__ import annotations

import pytest

from localcloud import settings
from localcloud_ext import contract, database_metrics
from localcloud_ext.database_metrics import Reading, Sources, proxy_counts

COLUMNS = [
    "database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
    "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle",
    "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode",
]  # fmt: skip


def pool(database: str, clients: tuple[int, int], servers: tuple[int, int, int]) -> tuple:
    active, waiting = clients
    sv_active, sv_idle, sv_used = servers
    return (database, "u", active, waiting, 0, 0, sv_active, 0, 0, sv_idle, sv_used, 0, 0, 0, 0,
            "transaction")  # fmt: skip


def test_the_proxy_counts_every_pool_but_its_admin_console() -> None:
    rows = [
        pool("app", (180, 20), (60, 5, 10)),
        pool("app", (3, 0), (1, 0, 0)),
        pool("pgbouncer", (1, 0), (0, 0, 0)),
    ]

    assert proxy_counts(COLUMNS, rows) == (203, 76)


def test_a_stale_reading_is_not_published() -> None:
    now = [100.0]
    reading = Reading(lambda: now[0])
    with pytest.raises(LookupError):
        reading.read()

    reading.set(42)
    now[0] += database_metrics.STALE_AFTER_SECONDS
    assert reading.read() == 42
    now[0] += 0.5
    with pytest.raises(LookupError):
        reading.read()


def test_without_the_local_cloud_s_variables_nothing_is_read() -> None:
    assert Sources.from_env({}) is None
    assert Sources.from_env({contract.DB_METRICS_POSTGRES_VARIABLE: "host=x"}) is None


def test_the_gauges_are_aws_rds_s_metrics_by_its_dimensions() -> None:
    registered: list[dict[str, object]] = []
    env = {
        contract.DB_METRICS_POSTGRES_VARIABLE: "host=127.0.0.1 port=1",
        contract.DB_METRICS_PROXY_VARIABLE: "host=127.0.0.1 port=2",
        contract.DB_INSTANCE_IDENTIFIER_VARIABLE: settings.DB_INSTANCE_IDENTIFIER,
        contract.DB_PROXY_NAME_VARIABLE: settings.PROXY_NAME,
    }
    started = database_metrics.start(
        env, lambda key, **gauge: registered.append(gauge), "000000000000", run=False
    )
    try:
        assert started
        assert {
            (g["namespace"], g["metric"], tuple(g["dimensions"].items())) for g in registered
        } == {  # type: ignore[union-attr]
            ("AWS/RDS", "DatabaseConnections", (("DBInstanceIdentifier", "localcloud-postgres"),)),
            ("AWS/RDS", "ClientConnections", (("ProxyName", "localcloud-proxy"),)),
            ("AWS/RDS", "DatabaseConnections", (("ProxyName", "localcloud-proxy"),)),
        }
    finally:
        database_metrics.stop(lambda key: None)
