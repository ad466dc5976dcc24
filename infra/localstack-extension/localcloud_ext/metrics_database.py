"""Writes to LocalStack's CloudWatch metrics database (SQLite) that a thousand execution
environments publishing their metrics can keep up with.

LocalStack's PutMetricData opens a connection and commits once per datum, in SQLite's default
rollback-journal mode, under the database's one lock. Every commit is an fsync: 12 ms on this
machine's disk, so the lock let through about 80 datums a second. In the full-scale run (about
870 environments, each publishing every few seconds) PutMetricData calls queued behind it, their
clients timed out and retried, the gateway's 1,000 worker threads filled up, and LocalStack
answered nothing, not even its health check, for minutes.

Here the database keeps a write-ahead log with `synchronous=NORMAL`: a commit appends to the log
without an fsync (0.3 ms measured with one), and what is committed survives LocalStack being
killed; only an OS crash can lose the last commits, of an emulator's metrics. All the rows of one
PutMetricData go in in one transaction, on one connection kept per database, used under the
database's lock. Our queries read without that lock: in WAL mode a reader sees the last commit
and neither waits for the writer nor holds it up. (Under the lock, one alarm evaluation reading
a 30,000-task run's metrics held 940 PutMetricData calls waiting behind it.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

SINGLE_INSERT = (
    "INSERT INTO {table} (account_id, region, metric_name, namespace, timestamp, dimensions,"
    " unit, storage_resolution, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
AGGREGATED_INSERT = (
    "INSERT INTO {table} (account_id, region, metric_name, namespace, timestamp, dimensions,"
    " unit, storage_resolution, sample_count, sum, min, max)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The writer connection, kept on the CloudwatchDatabase instance (a state reset makes a new one).
WRITER_ATTRIBUTE = "_localcloud_writer"


def use_write_ahead_log(database: Any) -> None:
    """Switch the database file to WAL (SQLite keeps the mode in the file)."""
    with database.DATABASE_LOCK:
        _writer(database).execute("PRAGMA journal_mode=WAL")


def insert_rows(
    database: Any, single: Sequence[tuple[Any, ...]], aggregated: Sequence[tuple[Any, ...]]
) -> None:
    """One transaction: `single` rows (value) into SINGLE_METRICS and `aggregated` rows
    (sample_count, sum, min, max) into AGGREGATED_METRICS, both in LocalStack's column order."""
    if not single and not aggregated:
        return
    with database.DATABASE_LOCK:
        connection = _writer(database)
        with connection:  # commits, or rolls back on an error
            if single:
                table = database.TABLE_SINGLE_METRICS
                connection.executemany(SINGLE_INSERT.format(table=table), single)
            if aggregated:
                table = database.TABLE_AGGREGATED_METRICS
                connection.executemany(AGGREGATED_INSERT.format(table=table), aggregated)


def _writer(database: Any) -> sqlite3.Connection:
    connection: sqlite3.Connection | None = database.__dict__.get(WRITER_ATTRIBUTE)
    if connection is None:
        # Used only under DATABASE_LOCK, from whichever request thread holds it.
        connection = sqlite3.connect(database.METRICS_DB, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        setattr(database, WRITER_ATTRIBUTE, connection)
    return connection


def read_rows(database: Any, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
    """The rows of one query, on a read-only connection of its own, without the lock."""
    with sqlite3.connect(database.METRICS_DB_READ_ONLY, uri=True) as connection:
        rows = connection.execute(sql, parameters).fetchall()
    connection.close()
    return rows
