"""Migrations against the local cloud's PostgreSQL, with the credentials from its secret.

Each test migrates a throwaway schema (the app role may not CREATE DATABASE, but it owns the app
database and so may create schemas), reached through search_path, so the real tasks table is
never touched.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from deployment import migrations
from deployment.migrations import MigrationError

PROJECT_VERSIONS = [m.version for m in migrations.discover_migrations()]
NEXT_VERSION = f"{int(PROJECT_VERSIONS[-1]) + 1:04d}"  # the number a new migration would take


@pytest.fixture
def schema(database_conninfo: str) -> Iterator[str]:
    name = f"test_migrations_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(database_conninfo, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def conninfo(database_conninfo: str, schema: str) -> str:
    return make_conninfo(database_conninfo, options=f"-c search_path={schema}")


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A copy of the project's migrations, free to edit."""
    return Path(shutil.copytree(migrations.MIGRATIONS_DIR, tmp_path / "migrations"))


def query(conninfo: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as connection:
        return connection.execute(statement, params or None).fetchall()


def test_applying_twice_applies_once(conninfo: str) -> None:
    first = migrations.apply_migrations(conninfo)
    second = migrations.apply_migrations(conninfo)

    assert first == PROJECT_VERSIONS and first[0] == "0001"
    assert second == []
    applied = query(conninfo, "SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in applied] == PROJECT_VERSIONS


def test_the_tasks_table_has_its_indexes(conninfo: str, schema: str) -> None:
    migrations.apply_migrations(conninfo)

    indexes = query(
        conninfo,
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'tasks'",
        schema,
    )
    assert {name for (name,) in indexes} == {
        "tasks_pkey",
        "tasks_idempotency_key_key",
        "tasks_status_idx",
        "tasks_accepted_at_idx",
        "tasks_finished_at_idx",
        "tasks_unfinished_idx",
    }
    with pytest.raises(psycopg.errors.CheckViolation):
        query(
            conninfo,
            "INSERT INTO tasks (id, type, payload, status, accepted_at) "
            "VALUES (gen_random_uuid(), 'echo', '{}', 'lost', now()) RETURNING id",
        )


def test_a_new_migration_is_applied_after_the_applied_ones(conninfo: str, directory: Path) -> None:
    migrations.apply_migrations(conninfo, directory)
    (directory / f"{NEXT_VERSION}_add_priority.sql").write_text(
        "ALTER TABLE tasks ADD priority integer;"
    )

    assert migrations.apply_migrations(conninfo, directory) == [NEXT_VERSION]
    assert query(conninfo, "SELECT priority FROM tasks") == []


def test_an_edited_applied_migration_is_refused(conninfo: str, directory: Path) -> None:
    migrations.apply_migrations(conninfo, directory)
    applied = directory / "0001_create_tasks.sql"
    applied.write_text(applied.read_text() + "\nCREATE INDEX tasks_type_idx ON tasks (type);\n")

    with pytest.raises(MigrationError, match="0001_create_tasks.sql was changed.*new migration"):
        migrations.apply_migrations(conninfo, directory)


def test_a_failing_migration_leaves_nothing_behind(conninfo: str, directory: Path) -> None:
    migrations.apply_migrations(conninfo, directory)
    (directory / f"{NEXT_VERSION}_broken.sql").write_text(
        "ALTER TABLE tasks ADD priority integer;\nALTER TABLE no_such_table ADD x integer;"
    )

    with pytest.raises(MigrationError, match=f"{NEXT_VERSION}_broken.sql failed and was rolled"):
        migrations.apply_migrations(conninfo, directory)

    applied = query(conninfo, "SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in applied] == PROJECT_VERSIONS
    columns = query(
        conninfo,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'tasks'",
    )
    assert "priority" not in {name for (name,) in columns}


def test_concurrent_deploys_apply_once(conninfo: str) -> None:
    together = threading.Barrier(2)

    def deploy() -> list[str]:
        together.wait(timeout=10)
        return migrations.apply_migrations(conninfo)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(deploy) for _ in range(2)]
        results = [future.result(timeout=60) for future in futures]

    assert sorted(results) == [[], PROJECT_VERSIONS]
