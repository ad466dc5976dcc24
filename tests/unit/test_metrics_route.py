"""GET /metrics' logic on fakes: one GetMetricData call for every series, answers aligned per
period, settings read once per TTL, bad parameters named, CloudWatch trouble a 503's cause."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from chalicelib.dashboard import DashboardService, MetricsWindow
from chalicelib.dashboard_series import (
    CHARTS,
    SERIES,
    Source,
    Sources,
    aligned_series,
    charts_json,
    metric_data_queries,
)
from chalicelib.errors import DependencyUnavailable, InvalidRequest
from chalicelib.settings import Settings
from tests.fakes import InMemoryTaskQueue
from tests.unit.test_app_settings import SETTINGS

NOW = 1_764_626_460.4  # a moment 0.4 s into a second


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class FakeCloudWatch:
    def __init__(self, points: dict[str, list[tuple[int, float]]] | None = None) -> None:
        self.points = points or {}  # series key -> (epoch, value)
        self.calls: list[dict[str, Any]] = []
        self.down = False

    def get_metric_data(self, **request: Any) -> dict[str, Any]:
        if self.down:
            raise EndpointConnectionError(endpoint_url="http://cloudwatch")
        self.calls.append(request)
        results = []
        for query in request["MetricDataQueries"]:
            key = SERIES[int(query["Id"][1:])].key
            points = self.points.get(key, [])
            results.append(
                {
                    "Id": query["Id"],
                    "Timestamps": [at(t) for t, _ in points],
                    "Values": [v for _, v in points],
                }
            )
        return {"MetricDataResults": results}


class FakeLambda:
    def __init__(self) -> None:
        self.reads = 0

    def list_event_source_mappings(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803
        self.reads += 1
        return {
            "EventSourceMappings": [
                {"UUID": "other", "EventSourceArn": "arn:aws:sqs:us-east-1:0:tasks-dlq"},
                {
                    "UUID": "uuid-1",
                    "EventSourceArn": "arn:aws:sqs:us-east-1:0:tasks",
                    "State": "Disabled",  # as LocalStack's list answers
                    "BatchSize": 10,
                    "MaximumBatchingWindowInSeconds": 0,
                    "ScalingConfig": {"MaximumConcurrency": 10},
                },
            ]
        }

    def get_event_source_mapping(self, UUID: str) -> dict[str, Any]:  # noqa: N803
        [mapping] = [
            m
            for m in self.list_event_source_mappings("")["EventSourceMappings"]
            if m["UUID"] == UUID
        ]
        self.reads -= 1  # the list above is not a read of its own
        return {**mapping, "State": "Enabled"}

    def get_function_concurrency(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803
        return {"ReservedConcurrentExecutions": 20}


class FakeSqs:
    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:  # noqa: N803
        return {
            "Attributes": {
                "VisibilityTimeout": "180",
                "RedrivePolicy": '{"deadLetterTargetArn": "arn", "maxReceiveCount": 5}',
            }
        }


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env(
        {
            **SETTINGS,
            "EVENT_SOURCE_MAPPING_METRICS_NAMESPACE": "LocalCloud/EventSourceMapping",
            "API_FUNCTION_NAME": "app-local",
            "DATABASE_INSTANCE_IDENTIFIER": "localcloud-postgres",
            "DATABASE_PROXY_NAME": "localcloud-proxy",
        }
    )


def service(
    cloudwatch: FakeCloudWatch, settings: Settings, clock: list[float] | None = None
) -> tuple[DashboardService, FakeLambda]:
    now = clock or [NOW]
    lambda_client = FakeLambda()
    return (
        DashboardService(
            cloudwatch,
            lambda_client,
            FakeSqs(),
            InMemoryTaskQueue(),
            settings,
            clock=lambda: now[0],
        ),
        lambda_client,
    )


def test_one_call_reads_every_series_of_the_window_and_aligns_them(settings: Settings) -> None:
    end = int(NOW)
    cloudwatch = FakeCloudWatch(
        {
            "queue_visible": [(end - 60, 5), (end - 1, 7)],
            "accepted_per_s": [(end - 2, 120)],
            "latency_p99": [(end - 2, 812.3456)],
        }
    )
    dashboard, _ = service(cloudwatch, settings)

    answer = dashboard.metrics(MetricsWindow(minutes=1, period=1))

    [call] = cloudwatch.calls
    assert len(call["MetricDataQueries"]) == len(SERIES)
    assert call["StartTime"] == at(end - 60) and call["EndTime"] == at(end)
    assert answer["t"] == list(range(end - 60, end))
    assert answer["series"]["queue_visible"][0] == 5
    assert answer["series"]["queue_visible"][-1] == 7
    assert answer["series"]["queue_visible"][1:-1] == [None] * 58
    assert answer["series"]["accepted_per_s"][-2] == 120
    assert answer["series"]["latency_p99"][-2] == 812.346
    assert answer["settings"]["maximum_concurrency"] == 10
    assert answer["settings"]["event_source_mapping"] == "uuid-1"
    assert answer["settings"]["mapping_state"] == "Enabled"
    assert answer["settings"]["reserved_concurrency"] == 20
    assert answer["settings"]["visibility_timeout_seconds"] == 180
    assert answer["settings"]["max_receive_count"] == 5
    assert answer["state"]["name"] == "idle"
    assert answer["charts"] == charts_json()


def test_counts_over_a_longer_period_are_answered_per_second(settings: Settings) -> None:
    end = int(NOW) // 10 * 10
    cloudwatch = FakeCloudWatch({"completed_per_s": [(end - 10, 250)]})
    dashboard, _ = service(cloudwatch, settings)

    answer = dashboard.metrics(MetricsWindow(minutes=1, period=10))

    assert answer["t"] == list(range(end - 60, end, 10))
    assert answer["series"]["completed_per_s"][-1] == 25


def test_the_queries_name_each_series_metric_with_its_dimensions(settings: Settings) -> None:
    dashboard, _ = service(FakeCloudWatch(), settings)
    dashboard.metrics(MetricsWindow(1, 1))
    queries = {
        SERIES[int(q["Id"][1:])].key: q["MetricStat"]
        for q in dashboard._cloudwatch.calls[0]["MetricDataQueries"]
    }

    assert queries["concurrent_executions"]["Metric"] == {
        "Namespace": "AWS/Lambda",
        "MetricName": "ConcurrentExecutions",
        "Dimensions": [{"Name": "FunctionName", "Value": "app-local-worker"}],
    }
    assert queries["concurrent_batches"]["Metric"]["Dimensions"] == [
        {"Name": "EventSourceMappingUUID", "Value": "uuid-1"}
    ]
    assert queries["api_throttles_per_s"]["Metric"] == {
        "Namespace": "AWS/Lambda",
        "MetricName": "Throttles",
        "Dimensions": [{"Name": "FunctionName", "Value": "app-local"}],
    }
    assert queries["database_connections"]["Metric"] == {
        "Namespace": "AWS/RDS",
        "MetricName": "DatabaseConnections",
        "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "localcloud-postgres"}],
    }
    assert queries["proxy_client_connections"]["Metric"]["Dimensions"] == [
        {"Name": "ProxyName", "Value": "localcloud-proxy"}
    ]
    assert queries["latency_p95"]["Stat"] == "p95"
    assert queries["accepted_per_s"]["Metric"]["Dimensions"] == [
        {"Name": "service", "Value": "serverless-scaling"},
        {"Name": "stage", "Value": "local"},
    ]
    assert queries["dlq_visible"]["Metric"]["Dimensions"] == [
        {"Name": "QueueName", "Value": "tasks-dlq"}
    ]


def test_sources_this_platform_lacks_are_nulls_and_not_queried() -> None:
    """No mapping namespace, and no API function, database or proxy named: none of their
    series is asked for, and each answers nulls."""
    sources = Sources.of(
        worker_function="w",
        task_queue="q",
        dead_letter_queue="d",
        app_namespace="A",
        app_dimensions={"service": "s"},
        mapping_namespace="",
        mapping_uuid="uuid-1",
    )
    queries = metric_data_queries(sources, 1)
    lacking = {Source.MAPPING, Source.API, Source.DATABASE, Source.DATABASE_PROXY}
    lacking_series = {s.key for s in SERIES if s.source in lacking}

    assert len(lacking_series) == 7
    assert len(queries) == len(SERIES) - len(lacking_series)
    _, values = aligned_series([], 0, 3, 1)
    assert all(values[key] == [None] * 3 for key in lacking_series)


def test_settings_are_read_once_per_ttl(settings: Settings) -> None:
    clock = [NOW]
    dashboard, lambda_client = service(FakeCloudWatch(), settings, clock)

    dashboard.metrics(MetricsWindow(1, 1))
    clock[0] += 5
    dashboard.metrics(MetricsWindow(1, 1))
    assert lambda_client.reads == 1
    clock[0] += 6
    dashboard.metrics(MetricsWindow(1, 1))
    assert lambda_client.reads == 2


def test_cloudwatch_not_answering_is_a_dependency_problem(settings: Settings) -> None:
    cloudwatch = FakeCloudWatch()
    cloudwatch.down = True
    dashboard, _ = service(cloudwatch, settings)

    with pytest.raises(DependencyUnavailable, match="GetMetricData"):
        dashboard.metrics(MetricsWindow(1, 1))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"minutes": "0"}, "minutes"),
        ({"minutes": "181"}, "minutes"),
        ({"minutes": "ten"}, "minutes"),
        ({"minutes": "-1"}, "minutes"),
        ({"period": "7"}, "period"),
        ({"period": "1.5"}, "period"),
        ({"minutes": "90", "period": "1"}, "minutes"),  # 5,400 points
        ({"since": "1"}, "since"),
        # found while fuzzing: '²' is a digit to str.isdigit() and a 500 to int()
        ({"minutes": "\N{SUPERSCRIPT TWO}"}, "minutes"),
        ({"period": "\N{ARABIC-INDIC DIGIT ONE}"}, "period"),
    ],
)
def test_a_bad_window_names_the_parameter(query: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        MetricsWindow.parse(query)
    assert raised.value.field == field


def test_the_window_defaults_to_15_minutes_at_1_second() -> None:
    assert MetricsWindow.parse(None) == MetricsWindow(15, 1)
    assert MetricsWindow.parse({"minutes": "180", "period": "5"}) == MetricsWindow(180, 5)


def test_every_series_belongs_to_a_chart_and_keys_are_unique() -> None:
    chart_ids = {c.id for c in CHARTS}
    assert {s.chart for s in SERIES} <= chart_ids
    assert len({s.key for s in SERIES}) == len(SERIES)
    assert all(entry["series"] for entry in charts_json())


def test_a_poll_reads_only_the_seconds_that_may_have_changed(settings: Settings) -> None:
    clock = [NOW]
    end = int(NOW)
    cloudwatch = FakeCloudWatch({"queue_visible": [(end - 30, 4), (end - 5, 9)]})
    dashboard, _ = service(cloudwatch, settings, clock)
    first = dashboard.metrics(MetricsWindow(1, 1))

    clock[0] += 2  # the next poll: two seconds on, one late datapoint, one new
    cloudwatch.points["queue_visible"] += [(end - 3, 7), (end + 1, 8)]
    second = dashboard.metrics(MetricsWindow(1, 1))

    assert cloudwatch.calls[1]["StartTime"] == at(end - 10)  # the last read's end - 10 s
    assert cloudwatch.calls[1]["EndTime"] == at(end + 2)
    assert second["t"] == list(range(end - 58, end + 2))
    assert second["series"]["queue_visible"] == first["series"]["queue_visible"][2:-3] + [
        7, None, None, None, 8
    ]  # fmt: skip
    assert second["series"]["queue_visible"].count(4) == 1  # kept from the first read


def test_a_wider_window_or_new_sources_read_everything_again(settings: Settings) -> None:
    clock = [NOW]
    cloudwatch = FakeCloudWatch()
    dashboard, _ = service(cloudwatch, settings, clock)
    end = int(NOW)
    dashboard.metrics(MetricsWindow(1, 1))
    dashboard.metrics(MetricsWindow(5, 1))
    assert cloudwatch.calls[1]["StartTime"] == at(end - 300)
    dashboard.metrics(MetricsWindow(5, 5))  # another period: other datapoints
    assert cloudwatch.calls[2]["StartTime"] == at(end // 5 * 5 - 300)
