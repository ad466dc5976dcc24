"""The functions' database role against the local cloud's PostgreSQL, made by the deploy's own
code (deployment.database): it reads and writes the tasks, and can change nothing else."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chalicelib.postgres_store import STATEMENT_TIMEOUT_MS, conninfo_from_secret
from deployment import database


@pytest.fixture
def as_app(app_role: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(conninfo_from_secret(app_role), autocommit=True) as connection:
        yield connection


def refused(connection: psycopg.Connection[Any], statement: str) -> bool:
    try:
        connection.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_the_app_role_reads_and_writes_tasks(as_app: psycopg.Connection[Any]) -> None:
    task_id = uuid.uuid4()

    as_app.execute(
        "INSERT INTO tasks (id, type, payload, status, accepted_at) "
        "VALUES (%s, 'echo', '{}', 'queued', now())",
        (task_id,),
    )
    as_app.execute("UPDATE tasks SET status = 'done' WHERE id = %s", (task_id,))
    row = as_app.execute("SELECT status FROM tasks WHERE id = %s", (task_id,)).fetchone()
    as_app.execute("DELETE FROM tasks WHERE id = %s", (task_id,))

    assert row == ("done",)
    assert as_app.execute("SELECT 1 FROM tasks WHERE id = %s", (task_id,)).fetchone() is None


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (id int)",
        "CREATE TEMPORARY TABLE intruder (id int)",
        "CREATE SCHEMA intruder",
        "DROP TABLE tasks",
        "ALTER TABLE tasks ADD COLUMN intruder int",
        "TRUNCATE tasks",
        "CREATE INDEX intruder ON tasks (type)",
        "SELECT * FROM schema_migrations",
        "DELETE FROM schema_migrations",
        "CREATE ROLE intruder",
        "CREATE DATABASE intruder",
    ],
)
def test_the_app_role_cannot_change_the_schema(
    as_app: psycopg.Connection[Any], statement: str
) -> None:
    assert refused(as_app, statement), f"the app role could run: {statement}"


def test_a_table_a_later_migration_creates_is_granted_too(
    owner: str, as_app: psycopg.Connection[Any]
) -> None:
    table = f"later_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(owner, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE TABLE {} (n serial, v text)").format(sql.Identifier(table))
        )
    try:
        as_app.execute(sql.SQL("INSERT INTO {} (v) VALUES ('x')").format(sql.Identifier(table)))
        rows = as_app.execute(sql.SQL("SELECT n, v FROM {}").format(sql.Identifier(table)))
        assert rows.fetchall() == [(1, "x")]
        assert refused(as_app, f"DROP TABLE {table}")
    finally:
        with psycopg.connect(owner, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def test_a_redeploy_with_a_new_password_replaces_the_old(
    owner: str, app_role: dict[str, Any]
) -> None:
    rotated = {**app_role, "password": secrets.token_urlsafe(24)}

    database.ensure_app_role(owner, rotated)

    try:
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(conninfo_from_secret(app_role)).close()
        with psycopg.connect(conninfo_from_secret(rotated)) as connection:
            assert connection.execute("SELECT count(*) >= 0 FROM tasks").fetchone() == (True,)
    finally:
        database.ensure_app_role(owner, app_role)


def test_the_role_is_gone_after_drop(owner: str) -> None:
    secret = {
        **conninfo_to_dict(owner),
        "username": database.app_role_name(f"gone-{uuid.uuid4().hex[:6]}"),
        "password": secrets.token_urlsafe(24),
    }
    database.ensure_app_role(owner, secret)

    database.drop_app_role(owner, secret["username"])
    database.drop_app_role(owner, secret["username"])  # idempotent

    exists: Callable[[psycopg.Connection[Any]], Any] = lambda c: c.execute(  # noqa: E731
        "SELECT 1 FROM pg_roles WHERE rolname = %s", (secret["username"],)
    ).fetchone()
    with psycopg.connect(make_conninfo(owner), autocommit=True) as connection:
        assert exists(connection) is None


def test_the_role_carries_the_statement_timeout(as_app: psycopg.Connection[Any]) -> None:
    # Set on the role, not at connect: a transaction-pooling proxy refuses startup options.
    timeout = as_app.execute("SHOW statement_timeout").fetchone()

    assert timeout == (f"{STATEMENT_TIMEOUT_MS // 1000}s",)
