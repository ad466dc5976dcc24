"""SQL only through parameters: no statement in the app or its tools is built by putting values
into its text (f-strings, %, .format, +). Values go as parameters (psycopg's %s, sqlite's ?),
identifiers and literals through psycopg.sql, psql's through its variables (:'name').

What may be put into SQL text is a constant fragment, allowed here by name, one by one, with
why it is safe."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = [REPO / "app.py", *sorted((REPO / "chalicelib").rglob("*.py"))]
SCANNED += sorted((REPO / "infra").rglob("*.py"))

# Text that reads as SQL (the project writes SQL keywords in capitals).
LOOKS_LIKE_SQL = re.compile(
    r"\bSELECT\b.*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\S+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(CREATE|ALTER|DROP)\s+(TABLE|ROLE|USER|DATABASE|INDEX|SCHEMA)\b|\bGRANT\s|\bREVOKE\s"
    r"|\bWHERE\b",
    re.DOTALL,
)

# (file, expression put into SQL text) -> why that is safe.
ALLOWED_FRAGMENTS = {
    ("chalicelib/postgres_store.py", "TASK_COLUMNS"): "a constant column list",
    ("chalicelib/postgres_store.py", "UNFINISHED"): "a constant condition on status",
    ("infra/burst/cloud.py", "ROW_COLUMNS"): "a constant column list",
    # LocalStack's CloudWatch store (sqlite): the extension composes its queries from
    # constants and LocalStack's table names; every value goes as a ? parameter.
    ("infra/localstack-extension/localcloud_ext/cloudwatch_queries.py", "BUCKET"): (
        "a constant expression"
    ),
    ("infra/localstack-extension/localcloud_ext/cloudwatch_queries.py", "single"): (
        "LocalStack's table name constant"
    ),
    ("infra/localstack-extension/localcloud_ext/cloudwatch_queries.py", "aggregated"): (
        "LocalStack's table name constant"
    ),
    ("infra/localstack-extension/localcloud_ext/cloudwatch_queries.py", "where"): (
        "metric_where(): constant conditions with ? parameters"
    ),
    ("infra/localstack-extension/localcloud_ext/cloudwatch_queries.py", "PERCENTILE_SETS"): (
        "a constant condition"
    ),
    ("infra/localstack-extension/localcloud_ext/cloudwatch_queries.py", "aggregate"): (
        "from the constant AGGREGATES table"
    ),
    ("infra/localstack-extension/localcloud_ext/cloudwatch_queries.py", "column"): (
        "from the constant AGGREGATES table"
    ),
    ("infra/localstack-extension/localcloud_ext/metric_statistics.py", "rows"): (
        "a query composed by statistic_sql() as above"
    ),
    ("infra/localstack-extension/localcloud_ext/service_metrics.py", "name"): (
        "an index name from the constant TIME_INDEXES"
    ),
    ("infra/localstack-extension/localcloud_ext/service_metrics.py", "table"): (
        "LocalStack's table name constant, checked at start-up"
    ),
    # The local cloud's own role and schema names (constants of database_proxy.py), in the
    # proxy's lookup function and auth_query; the only value, a verifier, is a psql variable.
    ("infra/localcloud/database_proxy.py", "AUTH_ROLE"): "a constant role and schema name",
    ("infra/localcloud/postgres.py", "AUTH_ROLE"): "a constant role and schema name",
    ("infra/localcloud/postgres.py", "MONITOR_ROLE"): "a constant role name",
    # Printed for a human to paste, never executed; the prefix is the burst's own run id.
    ("infra/burst/report.py", "report['idempotency_key_prefix']"): "a hint, never executed",
}


def sql_built_from_values(source: str, name: str) -> Iterator[str]:
    """Each place in `source` where SQL text is built with something other than a constant
    string, as 'line: the expression put in'."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            if LOOKS_LIKE_SQL.search(text):
                for value in node.values:
                    if isinstance(value, ast.FormattedValue):
                        expression = ast.unparse(value.value)
                        if (name, expression) not in ALLOWED_FRAGMENTS:
                            yield f"{node.lineno}: {{{expression}}} in f{text[:60]!r}"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            sides = (node.left, node.right)
            texts = [
                s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)
            ]
            if len(texts) < 2 and any(LOOKS_LIKE_SQL.search(t) for t in texts):
                yield f"{node.lineno}: {ast.unparse(node)[:80]}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)
            and LOOKS_LIKE_SQL.search(node.func.value.value)
        ):
            yield f"{node.lineno}: {ast.unparse(node)[:80]}"


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(REPO)))
def test_no_sql_is_built_from_values(path: Path) -> None:
    name = path.relative_to(REPO).as_posix()

    built = list(sql_built_from_values(path.read_text(), name))

    assert built == [], (
        f"{name} builds SQL text from values: pass them as parameters (%s), or compose "
        f"with psycopg.sql: {built}"
    )


def test_every_allowed_fragment_is_still_there() -> None:
    """An allowance whose code is gone must go too, or it would cover new code unseen."""
    stale = [
        (name, expression)
        for name, expression in ALLOWED_FRAGMENTS
        if f"{{{expression}" not in (REPO / name).read_text()
    ]

    assert stale == []


@pytest.mark.parametrize(
    "source",
    [
        "conn.execute(f\"SELECT * FROM tasks WHERE id = '{task_id}'\")",
        "conn.execute(\"DELETE FROM tasks WHERE id = '%s'\" % task_id)",
        'conn.execute("UPDATE tasks SET status = \'" + status + "\'")',
        'conn.execute("GRANT SELECT ON tasks TO {}".format(role))',
        "psql(f\"ALTER ROLE app PASSWORD '{password}'\")",
    ],
)
def test_the_scan_finds_sql_built_from_values(source: str) -> None:
    assert list(sql_built_from_values(source, "example.py"))


@pytest.mark.parametrize(
    "source",
    [
        'conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,))',
        'conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(table, role))',
        'raise MigrationError(f"reading schema_migrations failed: {e}")',
        '"SELECT a " "FROM b"',
    ],
)
def test_the_scan_lets_parameters_and_composition_through(source: str) -> None:
    assert list(sql_built_from_values(source, "example.py")) == []
