"""The local cloud's EMF extraction (`localcloud_ext.emf`, CloudWatch Logs' rule for Lambda log
groups): the lines the app's Powertools adapter prints become the metrics it recorded; lines
that are not valid EMF become none; the shipper hands each cycle's events on after its puts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.emf_metrics import EmfMetrics
from localcloud_ext import emf
from localcloud_ext.log_shipper import LogEvent, LogShipper, LogStream
from localcloud_ext.metrics_aggregation import Destination

ACCOUNT, REGION = "000000000000", "us-east-1"
DIMENSIONS = {"service": "serverless-scaling", "stage": "fullscale"}
AT = datetime(2026, 12, 3, 7, 0, 0, tzinfo=UTC)


def line(**root: Any) -> str:
    return json.dumps(root)


def emf_line(metrics: list[dict[str, Any]], dimensions: list[list[str]], **members: Any) -> str:
    return line(
        _aws={
            "Timestamp": int(AT.timestamp() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": "App", "Dimensions": dimensions, "Metrics": metrics}
            ],
        },
        **members,
    )


def test_what_the_app_s_powertools_adapter_prints_becomes_the_metrics_it_recorded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = EmfMetrics("ServerlessScaling", DIMENSIONS)
    metrics.add("TasksProcessed", 3, "Count", at=AT)
    metrics.add("TasksProcessed", 2, "Count", at=AT)
    metrics.add("TaskDuration", 120.4, "Milliseconds", at=AT)
    metrics.flush()
    printed = capsys.readouterr().out.splitlines()

    [call] = emf.metric_calls(printed, ACCOUNT, REGION)

    assert call.destination == Destination(ACCOUNT, REGION, "ServerlessScaling")
    got = sorted(
        (d["MetricName"], d["Unit"], d["Value"], d["Timestamp"], d["StorageResolution"])
        for d in call.datums
    )
    assert got == [
        ("TaskDuration", "Milliseconds", 120.0, AT, 1),
        ("TasksProcessed", "Count", 2.0, AT, 1),
        ("TasksProcessed", "Count", 3.0, AT, 1),
    ]
    for datum in call.datums:
        assert {d["Name"]: d["Value"] for d in datum["Dimensions"]} == DIMENSIONS


def test_each_dimension_set_gets_every_value_and_the_defaults_apply() -> None:
    message = emf_line(
        [{"Name": "Latency"}],
        [["service"], ["service", "route"]],
        service="api",
        route="/tasks",
        Latency=[5, 7],
    )

    [(namespace, first), *rest] = emf.line_datums(message)

    assert namespace == "App" and len(rest) == 3  # 2 values x 2 dimension sets
    assert (first["Unit"], first["StorageResolution"]) == ("None", 60)
    shapes = sorted(
        (d["Value"], tuple(x["Name"] for x in d["Dimensions"])) for _, d in emf.line_datums(message)
    )
    assert shapes == [
        (5.0, ("service",)),
        (5.0, ("service", "route")),
        (7.0, ("service",)),
        (7.0, ("service", "route")),
    ]


@pytest.mark.parametrize(
    "message",
    [
        "START RequestId: 1 Version: $LATEST",
        '{"_aws": "not an object"}',
        "{not json",
        emf_line([{"Name": "Missing"}], [[]]),  # no member holds the metric
        emf_line([{"Name": "N"}], [["service"]], N=1),  # the dimension's member is missing
        emf_line([{"Name": "N"}], [["service"]], N=1, service=5),  # not a string
        emf_line([{"Name": "N"}], [[]], N="12"),  # a string, not a number
        emf_line([{"Name": "N"}], [[]], N=True),
        emf_line([{"Name": "N"}], [[]], N=list(range(101))),  # over 100 values
        line(_aws={"CloudWatchMetrics": []}, N=1),  # no timestamp
    ],
)
def test_a_line_that_is_not_valid_emf_carries_no_metrics(message: str) -> None:
    assert emf.metric_calls([message], ACCOUNT, REGION) == []


def test_the_shipper_hands_on_what_each_cycle_shipped_after_putting_it() -> None:
    order: list[str] = []
    handed: list[list[tuple[LogStream, list[LogEvent]]]] = []
    now = [100.0]
    shipper = LogShipper(
        lambda stream, events: order.append("put"),
        interval=1.0,
        clock=lambda: now[0],
        shipped=lambda taken: (order.append("shipped"), handed.append(taken)),
    )
    stream = LogStream("/aws/lambda/fn", "s", REGION, f"arn:aws:iam::{ACCOUNT}:role/r")
    shipper.write(stream, LogEvent(1, "a line"))

    shipper.ship_due()
    assert handed == []  # nothing due, nothing handed on
    now[0] = 101.0
    shipper.ship_due()

    assert order == ["put", "shipped"]
    assert handed == [[(stream, [LogEvent(1, "a line")])]]
