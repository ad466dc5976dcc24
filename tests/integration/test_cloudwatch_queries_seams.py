"""The LocalStack internals localcloud_ext.cloudwatch_queries replaces are still what it was
written against, and the replacement answers exactly what LocalStack's own query answers for the
basic statistics. Runs in LocalStack's own interpreter; fails loudly when an upgrade moves them."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.localstack_python import run_seam_checks

CHECKS = textwrap.dedent(
    """
    import inspect, random
    from datetime import UTC, datetime
    from localstack.services.cloudwatch.cloudwatch_database_helper import CloudwatchDatabase
    from localstack.services.cloudwatch.provider_v2 import CloudwatchProvider
    from localstack.utils.patch import Patch

    from localcloud_ext import cloudwatch_queries, service_metrics

    # both CloudWatch reads go through the database method we replace, and GetMetricStatistics
    # answers nothing for an empty Statistics list (we add the percentiles to that)
    for read in (CloudwatchProvider.get_metric_data, CloudwatchProvider.get_metric_statistics):
        assert "self.cloudwatch_database.get_metric_data_stat(" in inspect.getsource(read)
    assert "for stat in statistics:" in inspect.getsource(CloudwatchProvider.get_metric_statistics)

    service_metrics.match_metric_dimensions_exactly()
    stock = CloudwatchDatabase.get_metric_data_stat
    cloudwatch_queries.query_metric_data_once_per_metric()
    cloudwatch_queries.answer_extended_statistics()
    cloudwatch_queries.store_metric_data_in_one_transaction()
    patched = {p.name for p in Patch.applied_patches}
    expected = {"get_metric_data_stat", "get_metric_data", "get_metric_statistics",
                "add_metric_data"}
    assert expected <= patched, patched

    # random values and statistic sets, two series: the replacement answers as the stock does
    database = CloudwatchDatabase()
    rng = random.Random(7)
    base = 1_700_000_000
    data = []
    for second in range(200):
        for series in ("a", "ab"):
            datum = {"MetricName": "m", "Dimensions": [{"Name": "S", "Value": series}],
                     "Timestamp": datetime.fromtimestamp(base + second, UTC),
                     "StorageResolution": 1, "Unit": rng.choice(["Count", None])}
            if rng.random() < 0.7:
                values = [rng.choice([0.5, 1, 3, 8]) for _ in range(rng.randint(1, 3))]
                counts = [rng.randint(1, 3) for _ in values]
                data.append({**datum, "Values": values, "Counts": counts})
            if rng.random() < 0.3:
                data.append({**datum, "Value": rng.choice([2, 5])})
            if rng.random() < 0.4:
                data.append({**datum, "StatisticValues": {
                    "SampleCount": 3, "Sum": 9.5, "Minimum": 0.5, "Maximum": 6}})
    database.add_metric_data("000000000000", "us-east-1", "ns", data)
    compared = 0
    for period in (1, 7, 60):
        for start, end in ((base, base + 200), (base + 3, base + 150), (base - 10, base + 61)):
            for stat in ("Sum", "Average", "Minimum", "Maximum", "SampleCount"):
                for scan_by in (None, "TimestampAscending", "TimestampDescending"):
                    for unit in (None, "Count", "NULL_VALUE"):
                        metric = {"Namespace": "ns", "MetricName": "m",
                                  "Dimensions": [{"Name": "S", "Value": "a"}]}
                        query = {"MetricStat": {"Metric": metric, "Period": period, "Stat": stat}}
                        if unit:
                            query["MetricStat"]["Unit"] = unit
                        args = ("000000000000", "us-east-1", query,
                                datetime.fromtimestamp(start, UTC),
                                datetime.fromtimestamp(end, UTC), scan_by)
                        expected = stock(database, *args)
                        answered = database.get_metric_data_stat(*args)
                        assert answered == expected, (period, start, end, stat, scan_by, unit)
                        compared += bool(expected["values"])
    assert compared > 300, compared

    # the same data stored as LocalStack stores it (a row per counted sample) answers the same,
    # percentiles included
    stock_add = next(p for p in Patch.applied_patches if p.name == "add_metric_data").old
    stock_add(database, "000000000000", "us-east-1", "ns-stock", data)
    for stat in ("Sum", "Average", "Minimum", "Maximum", "SampleCount", "p50", "p90", "p99"):
        for period in (1, 60):
            answers = []
            for namespace in ("ns", "ns-stock"):
                metric = {"Namespace": namespace, "MetricName": "m",
                          "Dimensions": [{"Name": "S", "Value": "a"}]}
                query = {"MetricStat": {"Metric": metric, "Period": period, "Stat": stat}}
                answers.append(database.get_metric_data_stat(
                    "000000000000", "us-east-1", query, datetime.fromtimestamp(base, UTC),
                    datetime.fromtimestamp(base + 200, UTC), "TimestampAscending"))
            assert answers[0] == answers[1] and answers[0]["values"], (stat, period, answers)
    print("seams ok")
    """
)


def test_cloudwatch_query_seams_are_where_the_extension_expects_them(tmp_path: Path) -> None:
    run_seam_checks(CHECKS, tmp_path)
