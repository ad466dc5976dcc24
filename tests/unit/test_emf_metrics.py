"""The EMF metrics adapter (Powertools, one JSON line per second on stdout): what it prints, that
each flush prints what was recorded, and that it describes the same metrics as the PutMetricData
adapter does on moto's CloudWatch, so the dashboard's queries read either."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from chalicelib.cloudwatch_metrics import CloudWatchMetrics
from chalicelib.emf_metrics import EmfMetrics
from chalicelib.ports import Metrics
from chalicelib.settings import MetricsSink
from chalicelib.task_types import TaskRunner
from chalicelib.wiring import METRICS_SINKS, Dependencies
from tests.fakes import InMemoryTaskStore
from tests.unit.test_app_settings import SETTINGS
from tests.unit.test_worker import FakeContext, accept_tasks_of, event, new_worker

NAMESPACE = "ServerlessScaling"
DIMENSIONS = {"service": "serverless-scaling", "stage": "aws"}
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def emf_lines(printed: str) -> list[dict[str, Any]]:
    """The EMF documents among the printed lines (Powertools' Logger may print others)."""
    documents = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


def samples(lines: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[float]]:
    """(metric, unit, second) -> its values, as CloudWatch would extract them; each line's
    dimension set must be exactly (service, stage) with their values."""
    found: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for line in lines:
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert [sorted(d) for d in directive["Dimensions"]] == [sorted(DIMENSIONS)]
        assert {name: line[name] for name in DIMENSIONS} == DIMENSIONS
        second = line["_aws"]["Timestamp"] // 1000
        for metric in directive["Metrics"]:
            assert metric["StorageResolution"] == 1
            value = line[metric["Name"]]
            found[(metric["Name"], metric["Unit"], second)] += (
                value if isinstance(value, list) else [value]
            )
    return dict(found)


def emf(**options: Any) -> EmfMetrics:
    return EmfMetrics(NAMESPACE, DIMENSIONS, **options)


def test_samples_are_printed_per_second_with_their_unit_dimensions_and_event_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = emf()
    for _ in range(3):
        metrics.add("TasksAccepted", 1, "Count", at=T0 + timedelta(milliseconds=400))
    for latency_ms in (100.0, 200.0, 300.4):
        metrics.add("EndToEndLatency", latency_ms, "Milliseconds", at=T0 + timedelta(seconds=2))

    metrics.flush()

    lines = emf_lines(capsys.readouterr().out)
    assert len(lines) == 2  # one per second
    second = int(T0.timestamp())
    assert samples(lines) == {
        ("TasksAccepted", "Count", second): [1.0, 1.0, 1.0],
        ("EndToEndLatency", "Milliseconds", second + 2): [100.0, 200.0, 300.0],  # whole ms
    }


def test_a_sample_without_a_time_is_stamped_when_it_is_added(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = emf(wall_clock=lambda: T0 + timedelta(seconds=7, milliseconds=900))

    metrics.add("TasksFailed", 1, "Count")
    metrics.flush()

    [line] = emf_lines(capsys.readouterr().out)
    assert line["_aws"]["Timestamp"] == int(T0.timestamp() + 7) * 1000


def test_every_flush_prints_what_was_recorded_since_the_last_and_nothing_twice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = emf()
    metrics.add("TasksProcessed", 1, "Count", at=T0)
    metrics.flush()
    first = emf_lines(capsys.readouterr().out)

    metrics.add("TasksProcessed", 1, "Count", at=T0)  # the same second, a later invocation
    metrics.flush()
    second = emf_lines(capsys.readouterr().out)
    metrics.flush()  # nothing recorded: nothing printed (no empty-metrics warning line either)

    assert len(first) == len(second) == 1
    assert capsys.readouterr().out == ""


def test_more_than_100_values_of_a_metric_in_a_second_are_all_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = emf()
    for latency_ms in range(250):
        metrics.add("EndToEndLatency", latency_ms, "Milliseconds", at=T0)

    metrics.flush()

    lines = emf_lines(capsys.readouterr().out)
    assert len(lines) == 3  # EMF takes at most 100 values per metric and line
    [values] = samples(lines).values()
    assert sorted(values) == [float(v) for v in range(250)]


def test_a_sample_powertools_refuses_is_dropped_without_raising(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    metrics = emf()
    metrics.add("", 1, "Count", at=T0)  # no name: Powertools' MetricNameError

    metrics.flush()

    assert emf_lines(capsys.readouterr().out) == []
    assert "EMF metrics of second" in caplog.text


# --- the same metrics as PutMetricData ------------------------------------------------------


def sent_samples(calls: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[float]]:
    """What the PutMetricData adapter sent, in samples()' shape: Values expanded by Counts."""
    found: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for call in calls:
        assert call["Namespace"] == NAMESPACE
        for datum in call["MetricData"]:
            assert {d["Name"]: d["Value"] for d in datum["Dimensions"]} == DIMENSIONS
            assert datum["StorageResolution"] == 1
            key = (datum["MetricName"], datum["Unit"], int(datum["Timestamp"].timestamp()))
            for value, count in zip(datum["Values"], datum["Counts"], strict=True):
                found[key] += [value] * int(count)
    return dict(found)


def per_metric(found: dict[tuple[str, str, int], list[float]]) -> dict[tuple[str, str], Any]:
    """(metric, unit) -> its values, sorted; latencies (which differ run to run) by count."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (name, unit, _), some in found.items():
        values[(name, unit)] += some
    return {key: len(v) if key[0] == "EndToEndLatency" else sorted(v) for key, v in values.items()}


def run_a_worker_batch(metrics: Metrics) -> None:
    store = InMemoryTaskStore()
    accept_tasks_of(store, "sqs_partial_failure")
    new_worker(store, metrics, runner=TaskRunner()).handle(
        event("sqs_partial_failure"), FakeContext()
    )


def test_a_worker_batch_gives_the_same_metrics_as_with_put_metric_data(
    cloudwatch: Any, put_calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    run_a_worker_batch(CloudWatchMetrics(cloudwatch, NAMESPACE, DIMENSIONS))
    run_a_worker_batch(emf())

    printed = per_metric(samples(emf_lines(capsys.readouterr().out)))
    assert printed == per_metric(sent_samples(put_calls))
    assert {name for name, _ in printed} == {
        "BatchSize",
        "EndToEndLatency",
        "TasksProcessed",
        "TasksRetried",
    }
    assert printed[("BatchSize", "Count")] == [3.0]


# --- the choice -----------------------------------------------------------------------------


def test_every_metrics_sink_a_stage_may_name_has_an_adapter() -> None:
    assert set(METRICS_SINKS) == set(MetricsSink)


@pytest.mark.parametrize(
    ("sink", "adapter"),
    [("put_metric_data", CloudWatchMetrics), ("emf", EmfMetrics)],
)
def test_the_stages_metrics_sink_chooses_the_adapter(
    sink: str, adapter: type[Metrics], cloudwatch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = {**SETTINGS, "METRICS_SINK": sink, "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    deps = Dependencies(Logger(service="test"))

    assert type(deps.metrics) is adapter
    assert ("cloudwatch" in deps.__dict__) is (adapter is CloudWatchMetrics)  # EMF: no client


def test_the_local_stage_keeps_put_metric_data_and_aws_and_fullscale_use_emf() -> None:
    # fullscale: 1,000 environments' PutMetricData calls exceed LocalStack's ~140 a second; the
    # local cloud extracts EMF as CloudWatch Logs does (localcloud_ext/emf.py).
    config = json.loads((Path(__file__).resolve().parents[2] / ".chalice/config.json").read_text())
    sinks = {
        stage: section["environment_variables"]["METRICS_SINK"]
        for stage, section in config["stages"].items()
    }

    assert sinks == {"local": "put_metric_data", "fullscale": "emf", "aws": "emf"}
