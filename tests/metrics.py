"""Reading metrics back in tests: a metric's 1-second values from CloudWatch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def metric_values(
    cloudwatch: Any,
    since: datetime,
    namespace: str,
    metric: str,
    dimension: tuple[str, str],
    stat: str,
) -> list[float]:
    """The metric's values per 1-second period since `since`, oldest first."""
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": metric,
                        "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}],
                    },
                    "Period": 1,
                    "Stat": stat,
                },
            }
        ],
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(seconds=2),
        ScanBy="TimestampAscending",
    )
    return [float(value) for value in answer["MetricDataResults"][0]["Values"]]
