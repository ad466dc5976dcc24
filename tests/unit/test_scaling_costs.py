"""The AWS bill of a burst: the pricing table, SQS's 64 KB chunks, the line items, and the cost
a burst report carries for the run it measured."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from burst.report import summary_lines
from scaling_model import costs
from scaling_model.costs import FunctionShape, Usage

DATA = Path(__file__).resolve().parents[1] / "data"
USAGE = Usage(
    api_requests=1_000_000,
    api_function_seconds=100_000.0,
    api_memory_mb=256,
    worker_invocations=1_000_000,
    worker_function_seconds=4_000_000.0,
    worker_memory_mb=1024,
    tasks=10_000_000,
    receive_calls=1_000_000,
    delete_calls=1_000_000,
    send_calls=1_000_000,
    visibility_calls=0,
    new_environments=1000,
    seconds=3600.0,
)


def items(bill: costs.Bill) -> dict[str, float]:
    return {item.name: item.usd for item in bill.items}


def test_every_price_has_its_unit_and_source_and_the_table_its_date_and_region() -> None:
    table = costs.load_prices()
    assert table["region"] == "us-east-1"
    assert table["date"] and "check before relying" in table["note"]
    for name, entry in table["prices"].items():
        assert entry["usd"] > 0 and entry["unit"], name
        assert entry["source"].startswith("https://aws.amazon.com/"), name


def test_sqs_counts_a_request_per_started_64_kb_of_each_call() -> None:
    assert costs.sqs_requests(1, 10) == 1  # ten small messages: one chunk
    assert costs.sqs_requests(1, 10, message_bytes=10_000) == 2  # 100,000 bytes: two chunks
    assert costs.sqs_requests(0, 0) == 0


def test_the_bill_prices_each_line_from_the_table() -> None:
    bill = costs.bill(USAGE)
    lines = items(bill)
    assert lines["Lambda requests (API)"] == pytest.approx(0.20)  # $0.20 per million
    assert lines["API Gateway REST requests"] == pytest.approx(3.50)
    # 4,000,000 s at 1 GB x $0.0000166667
    assert lines["Lambda duration (worker)"] == pytest.approx(66.6668)
    assert lines["SnapStart restores (worker)"] == pytest.approx(1000 * 0.0001397998)
    # 1 M sends + 1 M receives (one chunk each) + 1 M deletes, $0.40 per million
    assert lines["SQS requests (64 KB chunks)"] == pytest.approx(1.20)
    assert lines["RDS db.t4g.micro"] == pytest.approx(0.016)  # one hour
    assert lines["RDS Proxy"] == pytest.approx(2 * 0.015)  # two vCPUs, the minimum
    assert bill.total_usd == pytest.approx(sum(lines.values()))


def test_arm64_is_cheaper_and_without_snapstart_there_is_no_snapstart_charge() -> None:
    x86, arm = costs.bill(USAGE), costs.bill(replace(USAGE, architecture="arm64"))
    assert arm.total_usd < x86.total_usd
    plain = items(costs.bill(replace(USAGE, snapstart=False)))
    assert not any(name.startswith("SnapStart") for name in plain)


def test_aurora_serverless_bills_acu_hours_and_its_proxy_at_least_8() -> None:
    lines = items(costs.bill(replace(USAGE, database="aurora-serverless-v2", aurora_acus=2)))
    assert lines["Aurora Serverless v2"] == pytest.approx(2 * 0.12)
    assert lines["RDS Proxy"] == pytest.approx(8 * 0.015)


def test_a_burst_report_carries_the_cost_of_the_run_it_measured() -> None:
    report: dict[str, Any] = json.loads((DATA / "burst-report-small.json").read_text())
    shape = FunctionShape(memory_mb=256, snapstart=True)

    cost = costs.report_cost(report, worker=shape, api=shape)

    lines = {item["name"]: item for item in cost["items"]}
    assert lines["Lambda requests (worker)"]["quantity"] == report["batches"]["count"]
    assert lines["Lambda requests (API)"]["quantity"] == report["sending"]["sent_requests"]
    # the worker's seconds: the timeline's whole invocations (198 batch-seconds) at 0.25 GB
    assert lines["Lambda duration (worker)"]["quantity"] == pytest.approx(198 * 0.25)
    assert cost["total_usd"] == pytest.approx(sum(i["usd"] for i in cost["items"]), abs=1e-5)
    assert cost["region"] == "us-east-1"
    summary = "\n".join(summary_lines({**report, "cost": cost}))
    assert f"${cost['total_usd']:,.4f} for this run on AWS" in summary


def test_the_function_shape_is_read_from_lambdas_configuration() -> None:
    snapstart = {"ApplyOn": "PublishedVersions"}
    shape = FunctionShape.from_configuration(
        {"MemorySize": 512, "Architectures": ["arm64"], "SnapStart": snapstart}
    )
    assert shape == FunctionShape(512, "arm64", True)
    assert FunctionShape.from_configuration({"MemorySize": 128}) == FunctionShape(128)
