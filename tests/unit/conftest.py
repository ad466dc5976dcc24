"""Fixtures of the unit tests: the in-memory adapters of the app's ports, and moto's CloudWatch
with the PutMetricData calls made to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.fakes import InMemoryMetrics, InMemoryTaskQueue, InMemoryTaskStore


@pytest.fixture
def queue() -> InMemoryTaskQueue:
    return InMemoryTaskQueue()


@pytest.fixture
def store() -> InMemoryTaskStore:
    return InMemoryTaskStore()


@pytest.fixture
def metrics() -> InMemoryMetrics:
    return InMemoryMetrics()


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


@pytest.fixture
def put_calls(cloudwatch: Any) -> list[dict[str, Any]]:
    """The parameters of every PutMetricData call the client makes (moto still serves it)."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **kwargs: Any) -> None:
        calls.append(params)

    cloudwatch.meta.events.register("provide-client-params.cloudwatch.PutMetricData", record)
    return calls
