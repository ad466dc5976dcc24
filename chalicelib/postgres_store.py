"""The task store on PostgreSQL (RDS on AWS), through psycopg 3.

One connection per execution environment, opened on first use and reused across invocations;
a connection that broke (database restart, idle timeout) is replaced once per call.

The connection may go through a database proxy (RDS Proxy; PgBouncer in the local cloud) that
pools in transaction mode: consecutive transactions of one connection may run on different
server connections. So nothing here depends on session state: no prepared statements
(`prepare_threshold=None`: psycopg otherwise prepares a query on its 5th execution, and the
next transaction's server connection would not know it), and no settings sent at connect
(a startup `options` parameter is refused by PgBouncer, and would hold for one server session
only): the statement timeout is the role's own (`ALTER ROLE ... SET statement_timeout`, made by
the deploy), which PostgreSQL applies to every session of the role, pooled or not."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chalicelib.errors import DependencyUnavailable, SettingMissing
from chalicelib.model import FINAL_STATUSES, Admission, Attempt, NewTask, Task, TaskMessage
from chalicelib.ports import TaskStore
from chalicelib.settings import DatabaseEndpoint

logger = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[dict[str, Any]]
CONNECT_TIMEOUT_SECONDS = 5
# No statement may outlast a request's deadline: a stalled database is an error in seconds
# (DependencyUnavailable), not a function timeout. The functions' role carries it (the deploy's
# deployment.database sets it): see the module's docstring.
STATEMENT_TIMEOUT_MS = 5000

TASK_COLUMNS = (
    "id, type, payload, status, attempts, idempotency_key, correlation_id, accepted_at, "
    "started_at, finished_at, worker_request_id, result, error"
)
UNFINISHED = "status IN ('queued', 'running', 'retrying')"  # committed and not final


SECRET_KEYS = ("host", "port", "dbname", "username", "password")


def conninfo_from_secret(secret: Mapping[str, Any], through: DatabaseEndpoint | None = None) -> str:
    """A psycopg conninfo from an RDS-shaped secret (host, port, dbname, username, password);
    `through` a proxy's endpoint instead of the secret's host and port, with its credentials."""
    missing = [key for key in SECRET_KEYS if key not in secret]
    if missing:
        raise SettingMissing(
            f"the database secret lacks {', '.join(missing)}: it must have the RDS shape "
            f"({', '.join(SECRET_KEYS)})"
        )
    host, port = (
        (secret["host"], secret["port"]) if through is None else (through.host, through.port)
    )
    return make_conninfo(
        host=host,
        port=str(port),
        dbname=secret["dbname"],
        user=secret["username"],
        password=secret["password"],
        connect_timeout=str(CONNECT_TIMEOUT_SECONDS),
        application_name="serverless-scaling",
    )


def read_secret(secretsmanager: Any, secret_id: str) -> dict[str, Any]:
    """The JSON document stored in Secrets Manager secret `secret_id`."""
    try:
        text = secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]
    except (BotoCoreError, ClientError) as e:
        raise DependencyUnavailable(f"reading secret {secret_id} failed: {e}") from e
    try:
        secret: dict[str, Any] = json.loads(text)
    except ValueError as e:
        raise SettingMissing(f"secret {secret_id} is not a JSON document: {e}") from e
    return secret


def _task(row: Mapping[str, Any]) -> Task:
    return Task(**row)


class PostgresTaskStore(TaskStore):
    def __init__(self, conninfo: Callable[[], str], stage: str) -> None:
        """`conninfo` is called when a connection is (re)opened, so the secret is read lazily.
        `stage`: the stage this store's tasks belong to (stages share the table)."""
        self._conninfo = conninfo
        self._stage = stage
        self._connection: Connection | None = None

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                # no prepared statements: they would not survive transaction pooling
                self._conninfo(),
                autocommit=True,
                row_factory=dict_row,
                prepare_threshold=None,
            )
        return self._connection

    def _run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on the connection; a broken connection is replaced and `work` retried
        once (each `work` is one statement or one transaction, so a retry cannot half-apply)."""
        for attempt in (1, 2):
            try:
                return work(self._connect())
            except psycopg.OperationalError as e:
                broken = self._connection is not None and self._connection.broken
                if self._connection is not None:
                    self._connection.close()
                self._connection = None
                if attempt == 2 or not broken:
                    raise DependencyUnavailable(f"PostgreSQL: {e}") from e
                logger.warning("PostgreSQL connection broke (%s); reconnecting", e)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- the API's side
    def admit(self, tasks: Sequence[NewTask]) -> list[Admission]:
        def work(conn: Connection) -> list[Admission]:
            with conn.transaction():
                created = {
                    row["id"]
                    for row in conn.execute(
                        """
                        INSERT INTO tasks (id, type, payload, status, attempts, idempotency_key,
                                           correlation_id, accepted_at, stage)
                        SELECT id, type, payload, 'pending', 0, key, correlation_id, accepted_at,
                               %s
                        FROM unnest(%s::uuid[], %s::text[], %s::text[]::jsonb[], %s::text[],
                                    %s::text[], %s::timestamptz[])
                             AS t(id, type, payload, key, correlation_id, accepted_at)
                        ON CONFLICT (idempotency_key) DO NOTHING
                        RETURNING id
                        """,
                        (
                            self._stage,
                            [t.id for t in tasks],
                            [t.type for t in tasks],
                            [json.dumps(t.payload) for t in tasks],
                            [t.idempotency_key for t in tasks],
                            [t.correlation_id for t in tasks],
                            [t.accepted_at for t in tasks],
                        ),
                    ).fetchall()
                }
                earlier_keys = [
                    t.idempotency_key
                    for t in tasks
                    if t.id not in created and t.idempotency_key is not None
                ]
                earlier = (
                    {
                        row["idempotency_key"]: _task(row)
                        for row in conn.execute(
                            f"SELECT {TASK_COLUMNS} FROM tasks WHERE idempotency_key = ANY(%s)",
                            (earlier_keys,),
                        ).fetchall()
                    }
                    if earlier_keys  # the usual case: every task was new, no second query
                    else {}
                )
            admissions = []
            for t in tasks:
                if t.id in created:
                    admissions.append(Admission(t.pending(), created=True))
                else:
                    assert t.idempotency_key is not None  # only a key can conflict
                    admissions.append(Admission(earlier[t.idempotency_key], created=False))
            return admissions

        return self._run(work)

    def commit(self, task_ids: Sequence[uuid.UUID]) -> int:
        return self._run(
            lambda conn: (
                conn.execute(
                    "UPDATE tasks SET status = 'queued' WHERE id = ANY(%s) AND status = 'pending'",
                    (list(task_ids),),
                ).rowcount
            )
        )

    def withdraw(self, task_ids: Sequence[uuid.UUID]) -> None:
        self._run(
            lambda conn: conn.execute(
                "DELETE FROM tasks WHERE id = ANY(%s) AND status = 'pending'", (list(task_ids),)
            )
        )

    def get(self, task_id: uuid.UUID) -> Task | None:
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s", (task_id,)
            ).fetchone()
        )
        return None if row is None else _task(row)

    def count_by_status(self) -> dict[str, int]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT status, count(*) AS n FROM tasks GROUP BY status"
            ).fetchall()
        )
        return {row["status"]: row["n"] for row in rows}

    def finished_since(self, seconds: float) -> int:
        row = self._run(
            lambda conn: conn.execute(
                "SELECT count(*) AS n FROM tasks "
                "WHERE finished_at > clock_timestamp() - make_interval(secs => %s)",
                (seconds,),
            ).fetchone()
        )
        assert row is not None
        return int(row["n"])

    def check(self) -> None:
        self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    # --- the worker's side
    def start_attempt(self, message: TaskMessage, worker_request_id: str) -> Attempt:
        def work(conn: Connection) -> Attempt:
            # Twice at most: the API may commit the task between the update and the select.
            for _ in range(2):
                started = conn.execute(
                    "UPDATE tasks SET status = 'running', attempts = attempts + 1, "
                    "started_at = clock_timestamp(), worker_request_id = %s "
                    f"WHERE id = %s AND {UNFINISHED} RETURNING id",
                    (worker_request_id, message.task_id),
                ).fetchone()
                if started is not None:
                    return Attempt.STARTED
                # The rare path: a redelivery, a request still running, or a withdrawn task.
                found = conn.execute(
                    "SELECT status FROM tasks WHERE id = %s", (message.task_id,)
                ).fetchone()
                if found is None:
                    return Attempt.NOT_ACCEPTED
                if found["status"] == "pending":
                    return Attempt.UNCOMMITTED
                if found["status"] in FINAL_STATUSES:
                    return Attempt.FINISHED
            return Attempt.UNCOMMITTED  # committed meanwhile, twice: come back shortly

        return self._run(work)

    def finish(self, task_id: uuid.UUID, result: dict[str, Any]) -> datetime | None:
        row = self._run(
            lambda conn: conn.execute(
                "UPDATE tasks SET status = 'done', finished_at = clock_timestamp(), "
                "result = %s, error = NULL WHERE id = %s AND status = 'running' "
                "RETURNING finished_at",
                (Jsonb(result), task_id),
            ).fetchone()
        )
        return None if row is None else row["finished_at"]

    def record_failure(self, task_id: uuid.UUID, error: str, final: bool) -> bool:
        updated = self._run(
            lambda conn: (
                conn.execute(
                    "UPDATE tasks SET status = %s, error = %s, "
                    "finished_at = CASE WHEN %s THEN clock_timestamp() END "
                    "WHERE id = %s AND status = 'running'",
                    ("failed" if final else "retrying", error, final, task_id),
                ).rowcount
            )
        )
        return updated == 1

    # --- the reconciler's side
    def unfinished_count(self) -> int:
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT count(*) AS n FROM tasks WHERE stage = %s AND {UNFINISHED}",
                (self._stage,),
            ).fetchone()
        )
        assert row is not None
        return int(row["n"])

    def idle_tasks(self, touched_before: datetime, limit: int) -> list[Task]:
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE stage = %s AND {UNFINISHED} "
                "AND greatest(accepted_at, started_at, requeued_at) < %s "
                "ORDER BY accepted_at LIMIT %s",
                (self._stage, touched_before, limit),
            ).fetchall()
        )
        return [_task(row) for row in rows]

    def mark_requeued(self, task_ids: Sequence[uuid.UUID]) -> None:
        self._run(
            lambda conn: conn.execute(
                "UPDATE tasks SET requeued_at = clock_timestamp() "
                f"WHERE id = ANY(%s) AND {UNFINISHED}",
                (list(task_ids),),
            )
        )

    def fail_unfinished(self, task_ids: Sequence[uuid.UUID], error: str) -> int:
        return self._run(
            lambda conn: (
                conn.execute(
                    "UPDATE tasks SET status = 'failed', error = %s, "
                    f"finished_at = clock_timestamp() WHERE id = ANY(%s) AND {UNFINISHED}",
                    (error, list(task_ids)),
                ).rowcount
            )
        )

    def withdraw_abandoned(self, older_than_seconds: float) -> int:
        return self._run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM tasks WHERE stage = %s AND status = 'pending' "
                    "AND accepted_at < clock_timestamp() - make_interval(secs => %s)",
                    (self._stage, older_than_seconds),
                ).rowcount
            )
        )
