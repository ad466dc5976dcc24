"""The TaskStore contract against PostgreSQL: the same suite the in-memory store passes, on a
throwaway schema migrated by the project's own migrations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from chalicelib.postgres_store import PostgresTaskStore
from deployment import migrations
from tests.contract import TaskStoreContract, new_task


@pytest.fixture(scope="module")
def schema_conninfo(database_conninfo: str) -> Iterator[str]:
    name = f"test_store_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    conninfo = make_conninfo(database_conninfo, options=f"-c search_path={name}")
    migrations.apply_migrations(conninfo)
    try:
        yield conninfo
    finally:
        with psycopg.connect(database_conninfo, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


class TestPostgresTaskStore(TaskStoreContract):
    @pytest.fixture
    def store(self, schema_conninfo: str) -> Iterator[PostgresTaskStore]:
        store = PostgresTaskStore(lambda: schema_conninfo, "contract")
        yield store
        store.close()


def test_a_broken_connection_is_replaced(schema_conninfo: str, database_conninfo: str) -> None:
    store = PostgresTaskStore(lambda: schema_conninfo, "contract")
    store.check()
    assert store._connection is not None
    backend = store._connection.info.backend_pid
    with psycopg.connect(database_conninfo, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))

    store.check()  # reconnects instead of failing

    assert store._connection.info.backend_pid != backend
    store.close()


def test_each_stage_reconciles_only_its_own_tasks(schema_conninfo: str) -> None:
    ours = PostgresTaskStore(lambda: schema_conninfo, "ours")
    theirs = PostgresTaskStore(lambda: schema_conninfo, "theirs")
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    mine, other = (replace(new_task(), accepted_at=long_ago) for _ in range(2))
    for store, task in ((ours, mine), (theirs, other)):
        store.admit([task])
        store.commit([task.id])
    abandoned = replace(new_task(), accepted_at=long_ago)
    theirs.admit([abandoned])

    try:
        idle = {t.id for t in ours.idle_tasks(datetime.now(UTC), 1000)}
        assert mine.id in idle and other.id not in idle
        assert ours.unfinished_count() == 1
        assert ours.withdraw_abandoned(60) == 0  # theirs: not ours to withdraw
        assert theirs.get(abandoned.id) is not None
    finally:
        ours.close()
        theirs.close()
