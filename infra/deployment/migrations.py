"""Versioned SQL migrations for the app's PostgreSQL database (infra/migrations/NNNN_*.sql).

Each file runs once, in version order, in one transaction together with its row in
``schema_migrations``; an advisory lock makes concurrent deploys take turns. A file already
applied must never change (its sha256 is recorded): a change goes into a new file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = PROJECT_ROOT / "infra" / "migrations"
FILE_NAME = re.compile(r"(?P<version>\d{4})_[a-z0-9_]+\.sql")
# Arbitrary, but fixed: every deploy of this app must take the same session-level lock.
ADVISORY_LOCK_KEY = 5_381_004_001

CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """Migrations could not be applied; the message names the file or setting, and the fix."""


@dataclass(frozen=True)
class Migration:
    version: str  # the NNNN of NNNN_description.sql
    path: Path
    checksum: str  # sha256 of the file's bytes
    sql: str = field(repr=False)


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory`` (its *.sql files), in version order."""
    migrations: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(
                f"{path} is not named NNNN_description.sql (four digits, then lowercase letters, "
                "digits or underscores): rename it, e.g. 0002_add_tasks_priority.sql"
            )
        version = match["version"]
        if version in migrations:
            raise MigrationError(
                f"{migrations[version].path.name} and {path.name} share version {version}: "
                "give the one not yet applied anywhere the next free number"
            )
        data = path.read_bytes()  # read once: what runs is what the checksum describes
        migrations[version] = Migration(version, path, checksum(data), data.decode())
    return sorted(migrations.values(), key=lambda m: m.version)


def apply_migrations(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet applied; return their versions (empty when up to date)."""
    migrations = discover_migrations(directory)
    try:
        connection = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as e:
        raise MigrationError(
            f"cannot connect to PostgreSQL: {e}; check the secret's host, port and credentials "
            "and that the database is up"
        ) from e
    # Closing the connection releases the session-level advisory lock, also on errors.
    with connection:
        try:
            # Blocks while another deploy migrates; it then finds that work recorded.
            connection.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            connection.execute(CREATE_SCHEMA_MIGRATIONS)
            rows = connection.execute("SELECT version, checksum FROM schema_migrations")
            applied: dict[str, str] = dict(rows.fetchall())
        except psycopg.Error as e:
            raise MigrationError(
                f"reading schema_migrations failed: {e}; the role needs CREATE on its schema"
            ) from e
        for migration in migrations:
            recorded = applied.get(migration.version)
            if recorded is not None and recorded != migration.checksum:
                raise MigrationError(
                    f"{migration.path} was changed after it was applied (sha256 {recorded} "
                    f"then, {migration.checksum} now): restore it and add a new migration "
                    "instead of editing an applied one"
                )
        pending = [m for m in migrations if m.version not in applied]
        for migration in pending:
            _apply(connection, migration)
    return [m.version for m in pending]


def _apply(connection: psycopg.Connection[Any], migration: Migration) -> None:
    logger.info("applying migration %s", migration.path.name)
    try:
        with connection.transaction():
            connection.execute(migration.sql)
            connection.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                (migration.version, migration.checksum),
            )
    except psycopg.Error as e:
        raise MigrationError(
            f"{migration.path} failed and was rolled back entirely: {e}; fix it (it was never "
            "applied, so editing it is fine) and deploy again"
        ) from e
