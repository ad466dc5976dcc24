"""GetMetricData and GetMetricStatistics on the running local cloud (localcloud_ext.
cloudwatch_queries): basic statistics as LocalStack computes them, percentiles as AWS does, from
a known set of values published with Values/Counts and StatisticValues at 1-second resolution."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

METRIC = "Latency"
UNIT = "Milliseconds"
STATS = ["Sum", "Average", "Minimum", "Maximum", "SampleCount", "p50", "p90", "p99"]

# Per second of the data below: Sum, Average, Minimum, Maximum, SampleCount, p50, p90, p99.
# Second 1's percentiles rank 5, 5, 10, 10, 10, 20 (the set with Min == Max counts twice);
# second 2 is one statistic set of 4 differing samples, which no percentile may use.
PER_SECOND: dict[int, dict[str, float]] = {
    0: dict(zip(STATS, [55, 5.5, 1, 10, 10, 5, 9, 10], strict=True)),
    1: dict(zip(STATS, [60, 10, 5, 20, 6, 10, 20, 20], strict=True)),
    2: dict(zip(STATS[:5], [20, 5, 2, 8, 4], strict=True)),
    3: dict(zip(STATS, [7, 7, 7, 7, 1, 7, 7, 7], strict=True)),
}
# The whole minute: 17 values for percentiles, 1 2 3 4 5 5 5 6 7 7 8 9 10 10 10 10 20.
PER_MINUTE = dict(zip(STATS, [142, 142 / 21, 1, 20, 21, 7, 10, 20], strict=True))


@pytest.fixture(scope="module")
def cloudwatch(aws: Callable[[str], Any]) -> Any:
    return aws("cloudwatch")


@pytest.fixture(scope="module")
def published(cloudwatch: Any) -> tuple[str, datetime]:
    """A unique namespace holding the known values, and the minute they start at."""
    namespace = f"LocalCloudTest/queries-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minute = now - timedelta(minutes=3)

    def datum(second: int, series: str = "a", **fields: Any) -> dict[str, Any]:
        return {
            "MetricName": METRIC,
            "Dimensions": [{"Name": "Series", "Value": series}],
            "Timestamp": minute + timedelta(seconds=second),
            "Unit": UNIT,
            "StorageResolution": 1,
            **fields,
        }

    def stats(count: float, total: float, low: float, high: float) -> dict[str, float]:
        return {"SampleCount": count, "Sum": total, "Minimum": low, "Maximum": high}

    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            datum(0, Values=[float(v) for v in range(1, 11)]),
            datum(1, Values=[10.0, 20.0], Counts=[3.0, 1.0]),
            datum(1, StatisticValues=stats(2, 10, 5, 5)),
            datum(2, StatisticValues=stats(4, 20, 2, 8)),
            datum(3, StatisticValues=stats(1, 7, 7, 7)),
            # a series whose name starts like ours: never read with ours
            datum(0, series="ab", Values=[1000.0]),
        ],
    )
    return namespace, minute


def read(
    cloudwatch: Any,
    published: tuple[str, datetime],
    period: int,
    scan_by: str,
    seconds: int = 60,
) -> dict[str, list[tuple[datetime, float]]]:
    """Every statistic of series "a", in one GetMetricData: stat -> [(timestamp, value)]."""
    namespace, minute = published
    metric = {
        "Namespace": namespace,
        "MetricName": METRIC,
        "Dimensions": [{"Name": "Series", "Value": "a"}],
    }
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": f"q{n}", "MetricStat": {"Metric": metric, "Period": period, "Stat": stat}}
            for n, stat in enumerate(STATS)
        ],
        StartTime=minute,
        EndTime=minute + timedelta(seconds=seconds),
        ScanBy=scan_by,
    )
    results = {result["Id"]: result for result in answer["MetricDataResults"]}
    return {
        stat: list(zip(results[f"q{n}"]["Timestamps"], results[f"q{n}"]["Values"], strict=True))
        for n, stat in enumerate(STATS)
    }


@pytest.mark.parametrize("scan_by", ["TimestampAscending", "TimestampDescending"])
def test_period_1_answers_every_statistic_per_second(
    cloudwatch: Any, published: tuple[str, datetime], scan_by: str
) -> None:
    minute = published[1]
    answered = read(cloudwatch, published, period=1, scan_by=scan_by)

    for stat, points in answered.items():
        expected = [
            (minute + timedelta(seconds=second), values[stat])
            for second, values in sorted(PER_SECOND.items())
            if stat in values
        ]
        if scan_by == "TimestampDescending":
            expected.reverse()
        assert points == expected, stat


@pytest.mark.parametrize("scan_by", ["TimestampAscending", "TimestampDescending"])
def test_period_60_answers_every_statistic_of_the_minute(
    cloudwatch: Any, published: tuple[str, datetime], scan_by: str
) -> None:
    minute = published[1]
    # two minutes asked, one holds data: periods without data are left out
    answered = read(cloudwatch, published, period=60, scan_by=scan_by, seconds=120)

    assert answered == {stat: [(minute, value)] for stat, value in PER_MINUTE.items()}


def test_an_unknown_statistic_is_a_client_error(
    cloudwatch: Any, published: tuple[str, datetime]
) -> None:
    namespace, minute = published
    metric = {"Namespace": namespace, "MetricName": METRIC}
    with pytest.raises(ClientError) as raised:
        cloudwatch.get_metric_data(
            MetricDataQueries=[
                {"Id": "q", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "tm99"}}
            ],
            StartTime=minute,
            EndTime=minute + timedelta(seconds=60),
        )

    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_get_metric_statistics_answers_extended_statistics(
    cloudwatch: Any, published: tuple[str, datetime]
) -> None:
    namespace, minute = published
    answer = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=METRIC,
        Dimensions=[{"Name": "Series", "Value": "a"}],
        StartTime=minute,
        EndTime=minute + timedelta(seconds=60),
        Period=60,
        ExtendedStatistics=["p50", "p99"],
    )

    assert answer["Datapoints"] == [
        {"Timestamp": minute, "Unit": UNIT, "ExtendedStatistics": {"p50": 7.0, "p99": 20.0}}
    ]
