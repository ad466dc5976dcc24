"""GetMetricData and GetMetricStatistics read LocalStack's CloudWatch database with one SQL query
per metric, and answer percentiles.

Seams, each checked before it is patched (tests/integration/test_service_metrics_seams.py; the
other CloudWatch seams, dimension match and time index, are in `service_metrics`):
- `CloudwatchDatabase.get_metric_data_stat`: LocalStack runs one SQL subquery per period (a
  15-minute window at Period=1 is a UNION ALL of 900 subqueries, each over both tables), and
  `Stat="p99"` raises KeyError (a 500). Here one query groups the rows by period; percentiles
  are nearest-rank over the raw values (`metric_statistics`), as AWS computes them.
- `CloudwatchProvider.get_metric_statistics`: LocalStack ignores `ExtendedStatistics` (and fails
  without `Statistics`); percentile datapoints are added to what it answers.
- `CloudwatchDatabase.add_metric_data`: LocalStack stores a datum's Values/Counts as one row
  per counted sample (a counter of 500 a second: 500 rows a second, which every read of it
  scans again). Each distinct value is stored instead as a statistic set of its count with
  Minimum = Maximum = the value: the same Sum, Average, Minimum, Maximum and SampleCount, and
  the same percentiles (AWS computes them from sets whose Minimum equals Maximum). And it
  commits once per datum; here a call's rows go in in one transaction (`metrics_database`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from localstack.runtime import hooks

from localcloud_ext import metrics_database
from localcloud_ext.metric_statistics import (
    Statistic,
    UnsupportedStatistic,
    in_scan_order,
    parse_statistic,
    percentile_rows_query,
    percentiles_by_bucket,
    value_counts,
    window_end,
)
from localcloud_ext.seams import SeamMoved, require_parameters

# stat -> (aggregate over the rows' `value` (raw value or the statistic set's column) and `count`
# (1 or the set's sample count), that column), as LocalStack's STAT_TO_SQLITE_AGGREGATION_FUNC
# and STAT_TO_SQLITE_COL_NAME_HELPER
AGGREGATES = {
    "Sum": ("SUM(value)", "sum"),
    "Average": ("SUM(value)", "sum"),  # divided by the sample count below
    "Minimum": ("MIN(value)", "min"),
    "Maximum": ("MAX(value)", "max"),
    "SampleCount": ("SUM(count)", "sample_count"),
}
BUCKET = "(? + CAST((timestamp - ?) / ? AS INTEGER) * ?)"
# statistic sets that percentiles may use, as on AWS: one sample, or all samples equal
PERCENTILE_SETS = "AND (sample_count = 1 OR min = max)"


def metric_filter(
    database: Any, account_id: str, region: str, query: Any
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (without time) LocalStack applies to a MetricDataQuery, and its values."""
    metric_stat = query["MetricStat"]
    metric = metric_stat["Metric"]
    dimensions = metric.get("Dimensions", [])
    unit = metric_stat.get("Unit")
    sql = "account_id = ? AND region = ? AND namespace = ? AND metric_name = ?"
    values: tuple[Any, ...] = (account_id, region, metric.get("Namespace"), metric["MetricName"])
    if dimensions:
        sql += " AND dimensions LIKE ?"
        values += (database._get_ordered_dimensions_with_separator(dimensions, for_search=True),)
    else:
        sql += " AND dimensions IS NULL"
    if unit == "NULL_VALUE":
        sql += " AND unit IS NULL"
    elif unit:
        sql += " AND unit = ?"
        values += (unit,)
    return sql, values


def statistic_sql(database: Any, statistic: Statistic, where: str) -> str:
    """One query over both tables: (bucket, aggregate, sample count) per period, or for a
    percentile (bucket, value, count) rows sorted by bucket and value."""
    single, aggregated = database.TABLE_SINGLE_METRICS, database.TABLE_AGGREGATED_METRICS
    if statistic.percentile is not None:
        return percentile_rows_query(
            f"SELECT {BUCKET} AS bucket, value, 1 AS count FROM {single} WHERE {where}"
            f" UNION ALL SELECT {BUCKET} AS bucket, min, sample_count FROM {aggregated}"
            f" WHERE {where} {PERCENTILE_SETS}"
        )
    aggregate, column = AGGREGATES[statistic.name]
    return (
        f"SELECT bucket, {aggregate}, SUM(count) FROM ("
        f"SELECT {BUCKET} AS bucket, value, 1 AS count FROM {single} WHERE {where}"
        f" UNION ALL SELECT {BUCKET} AS bucket, {column} AS value, sample_count AS count"
        f" FROM {aggregated} WHERE {where}"
        ") GROUP BY bucket HAVING SUM(count) ORDER BY bucket"
    )


def metric_data_stat(
    database: Any,
    account_id: str,
    region: str,
    query: Any,
    start_time: datetime,
    end_time: datetime,
    scan_by: str | None,
) -> dict[str, Any]:
    """What LocalStack's `get_metric_data_stat` returns ({"timestamps", "values"}, periods
    without data left out), from one SQL query instead of one per period. Like LocalStack's,
    it reads whole periods: the last one may reach past `end_time` (`window_end`)."""
    from localstack.aws.api.cloudwatch import InvalidParameterValueException, ScanBy

    metric_stat = query["MetricStat"]
    try:
        statistic = parse_statistic(metric_stat.get("Stat"))
    except UnsupportedStatistic as error:
        raise InvalidParameterValueException(str(error)) from None
    period = metric_stat.get("Period")
    if not isinstance(period, int) or period < 1:
        raise InvalidParameterValueException(f"The value {period} for Period is not supported.")
    start = database._convert_timestamp_to_unix(start_time)
    end = window_end(start, database._convert_timestamp_to_unix(end_time), period)
    where, values = metric_filter(database, account_id, region, query)
    where += " AND timestamp >= ? AND timestamp < ?"
    branch = (start, start, period, period, *values, start, end)
    sql, parameters = statistic_sql(database, statistic, where), branch * 2
    if statistic.percentile is not None:
        rows = _percentile_rows(database, sql, parameters)
        points = percentiles_by_bucket(rows, statistic.percentile)
    else:
        rows = metrics_database.read_rows(database, sql, parameters)
        if statistic.name == "Average":
            points = [(bucket, total / count) for bucket, total, count in rows]
        else:
            points = [(bucket, value) for bucket, value, _ in rows]
    descending = scan_by is None or scan_by == ScanBy.TimestampDescending
    return in_scan_order(points, descending)


# The rows percentiles are ranked from, per query, shared by the percentiles of one request:
# a dashboard asks p50, p95 and p99 of one latency, three reads of the same rows otherwise
# (53 ms each for a minute of 500 samples a second; the ranking itself takes ~2 ms).
_PERCENTILE_ROWS: ContextVar[dict[tuple[Any, ...], list[Any]] | None] = ContextVar(
    "localcloud_percentile_rows", default=None
)


@contextmanager
def shared_percentile_rows() -> Iterator[None]:
    """Within this block, percentiles of the same metric, window and period read their rows
    once. For one request only: the store may change between requests."""
    token = _PERCENTILE_ROWS.set({})
    try:
        yield
    finally:
        _PERCENTILE_ROWS.reset(token)


def _percentile_rows(database: Any, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
    shared = _PERCENTILE_ROWS.get()
    if shared is None:
        return metrics_database.read_rows(database, sql, parameters)
    key = (sql, parameters)
    if key not in shared:
        shared[key] = metrics_database.read_rows(database, sql, parameters)
    return shared[key]


@hooks.on_infra_start()  # type: ignore[untyped-decorator]  # LocalStack is untyped here
def query_metric_data_once_per_metric() -> None:
    from localstack.services.cloudwatch import cloudwatch_database_helper as helper
    from localstack.services.cloudwatch.provider_v2 import CloudwatchProvider
    from localstack.utils.patch import patch

    database = helper.CloudwatchDatabase
    require_parameters(
        database.get_metric_data_stat,
        ["self", "account_id", "region", "query", "start_time", "end_time", "scan_by"],
    )
    require_parameters(database._convert_timestamp_to_unix, ["self", "timestamp"])
    stock_statistics = {
        (stat, function.upper(), helper.STAT_TO_SQLITE_COL_NAME_HELPER.get(stat))
        for stat, function in helper.STAT_TO_SQLITE_AGGREGATION_FUNC.items()
    }
    ours = {(stat, sql.upper(), column) for stat, (sql, column) in AGGREGATES.items()}
    if stock_statistics != ours:
        raise SeamMoved(f"LocalStack's CloudWatch statistics are now {stock_statistics}")

    @patch(database.get_metric_data_stat)  # type: ignore[untyped-decorator]
    def get_metric_data_stat(
        _stock: Any,
        self: Any,
        account_id: str,
        region: str,
        query: Any,
        start_time: datetime,
        end_time: datetime,
        scan_by: str | None,
    ) -> dict[str, Any]:
        return metric_data_stat(self, account_id, region, query, start_time, end_time, scan_by)

    require_parameters(
        CloudwatchProvider.get_metric_data,
        [
            "self",
            "context",
            "metric_data_queries",
            "start_time",
            "end_time",
            "next_token",
            "scan_by",
            "max_datapoints",
            "label_options",
            "kwargs",
        ],
    )

    @patch(CloudwatchProvider.get_metric_data)  # type: ignore[untyped-decorator]
    def get_metric_data(stock: Any, self: Any, *args: Any, **kwargs: Any) -> Any:
        with shared_percentile_rows():
            return stock(self, *args, **kwargs)


def extended_datapoints(
    provider: Any, context: Any, request: dict[str, Any], extended: list[str]
) -> dict[tuple[str, Any], dict[str, Any]]:
    """Percentile datapoints of a GetMetricStatistics request, keyed by (unit, timestamp), one
    query per percentile and unit as LocalStack does for its statistics."""
    from localstack.aws.api.cloudwatch import InvalidParameterValueException

    for stat in extended:
        if parse_statistic(stat).percentile is None:
            raise InvalidParameterValueException(
                f"The value {stat} for parameter ExtendedStatistics is not supported."
            )
    database = provider.cloudwatch_database
    units = (
        [request["unit"]]
        if request.get("unit")
        else database.get_units_for_metric_data_stat(
            account_id=context.account_id,
            region=context.region,
            start_time=request["start_time"],
            end_time=request["end_time"],
            metric_name=request["metric_name"],
            namespace=request["namespace"],
        )
    )
    points: dict[tuple[str, Any], dict[str, Any]] = {}
    with shared_percentile_rows():  # each percentile of a unit reads the same rows
        for stat, unit in itertools.product(extended, units):
            metric = {
                "MetricName": request["metric_name"],
                "Namespace": request["namespace"],
                "Dimensions": request.get("dimensions") or [],
            }
            query = {"MetricStat": {"Metric": metric, "Period": request["period"], "Stat": stat}}
            query["MetricStat"]["Unit"] = unit
            result = database.get_metric_data_stat(
                account_id=context.account_id,
                region=context.region,
                query=query,
                start_time=request["start_time"],
                end_time=request["end_time"],
                scan_by="TimestampDescending",
            )
            label = "None" if unit == "NULL_VALUE" else unit
            for timestamp, value in zip(result["timestamps"], result["values"], strict=True):
                point = points.setdefault((label, timestamp), {"Timestamp": timestamp})
                point["Unit"] = label
                point.setdefault("ExtendedStatistics", {})[stat] = float(value)
    return points


@hooks.on_infra_start()  # type: ignore[untyped-decorator]
def answer_extended_statistics() -> None:
    from localstack.aws.api.cloudwatch import InvalidParameterCombinationException
    from localstack.services.cloudwatch.provider_v2 import CloudwatchProvider
    from localstack.utils.patch import patch

    parameters = ["self", "context", "namespace", "metric_name", "start_time", "end_time"]
    parameters += ["period", "dimensions", "statistics", "extended_statistics", "unit", "kwargs"]
    require_parameters(CloudwatchProvider.get_metric_statistics, parameters)

    @patch(CloudwatchProvider.get_metric_statistics)  # type: ignore[untyped-decorator]
    def get_metric_statistics(
        stock: Any, self: Any, context: Any, *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        request = dict(zip(parameters[2:-1], args, strict=False)) | kwargs
        extended = request.pop("extended_statistics", None) or []
        if not extended and not request.get("statistics"):
            raise InvalidParameterCombinationException(
                "Must specify either Statistics or ExtendedStatistics"
            )
        output: dict[str, Any] = stock(
            self, context, **{**request, "statistics": request.get("statistics") or []}
        )
        if not extended:
            return output
        points = {(p.get("Unit"), p["Timestamp"]): p for p in output.get("Datapoints", [])}
        for key, point in extended_datapoints(self, context, request, extended).items():
            points.setdefault(key, {}).update(point)
        output["Datapoints"] = list(points.values())
        return output


@hooks.on_infra_start()  # type: ignore[untyped-decorator]
def store_metric_data_in_one_transaction() -> None:
    from localstack.services.cloudwatch.cloudwatch_database_helper import CloudwatchDatabase
    from localstack.utils.patch import patch

    require_parameters(
        CloudwatchDatabase.add_metric_data,
        ["self", "account_id", "region", "namespace", "metric_data"],
    )
    for helper in ("_convert_timestamp_to_unix", "_get_ordered_dimensions_with_separator"):
        if not callable(getattr(CloudwatchDatabase, helper, None)):
            raise SeamMoved(f"CloudwatchDatabase.{helper} is gone")

    @patch(CloudwatchDatabase.add_metric_data)  # type: ignore[untyped-decorator]
    def add_metric_data(
        _stock: Any, self: Any, account_id: str, region: str, namespace: str, metric_data: Any
    ) -> None:
        single, aggregated = [], []
        for datum in metric_data:
            row = datum_row(self, account_id, region, namespace, datum)
            if datum.get("Value") is not None:
                single.append((*row, datum["Value"]))
            elif datum.get("Values"):
                aggregated += statistic_set_rows(row, datum)
            if stats := datum.get("StatisticValues"):
                aggregated.append(
                    (*row, stats["SampleCount"], stats["Sum"], stats["Minimum"], stats["Maximum"])
                )
        metrics_database.insert_rows(self, single, aggregated)


def datum_row(
    database: Any, account_id: str, region: str, namespace: str, datum: Any
) -> tuple[Any, ...]:
    """The columns every row of a datum shares. Timestamp and dimensions as LocalStack's own
    add_metric_data stores them (now when there is none)."""
    timestamp = datum.get("Timestamp")
    moment = database._convert_timestamp_to_unix(timestamp) if timestamp else int(time.time())
    return (
        account_id,
        region,
        datum.get("MetricName"),
        namespace,
        moment,
        database._get_ordered_dimensions_with_separator(datum.get("Dimensions")),
        datum.get("Unit"),
        datum.get("StorageResolution"),
    )


def statistic_set_rows(row: tuple[Any, ...], datum: Any) -> list[tuple[Any, ...]]:
    """AGGREGATED_METRICS rows for a datum's Values/Counts: one per distinct value."""
    return [
        (*row, count, value * count, value, value)
        for value, count in value_counts(datum["Values"], datum.get("Counts"))
    ]
