"""What a burst costs on AWS, line by line, from the pricing table beside this module
(aws_prices.json: its date, region and a source per price). Pure: a `Usage` in, a `Bill` out.
Both the model (scripts/simulate) and the burst tool's report (a measured run) use it.

Counted: Lambda requests and GB-seconds of the API's function and the worker, SnapStart's
restores (one per new worker environment) and its cache for the burst's duration, SQS requests
in 64 KB chunks (the API's SendMessageBatch of up to 10, the mapping's receives of up to 10 and
its DeleteMessageBatch, the app's ChangeMessageVisibilityBatch for retries), API Gateway REST
requests, and the database (db.t4g.micro or Aurora Serverless v2) and RDS Proxy for the burst's
hours. Not counted: data transfer, CloudWatch, Secrets Manager, VPC endpoints (idle costs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypedDict

PRICES_PATH = Path(__file__).with_name("aws_prices.json")
SQS_CHUNK_BYTES = 64 * 1024
SQS_ENTRIES_PER_CALL = 10  # SendMessageBatch, ReceiveMessage and DeleteMessageBatch at most
# A task's message as the API sends it: the JSON body (id, type, payload, idempotency key,
# correlation id) and its two message attributes; a few hundred bytes for every task type the
# burst sends, so ten always fit in one 64 KB chunk.
TASK_MESSAGE_BYTES = 600
Architecture = Literal["x86_64", "arm64"]
Database = Literal["db.t4g.micro", "aurora-serverless-v2"]
RDS_INSTANCE_PRICE = "rds_postgresql_db.t4g.micro"


class PriceEntry(TypedDict, total=False):
    usd: float
    per: int
    unit: str
    source: str
    vcpus: int
    minimum_vcpus: int
    minimum_acus: int


class PriceTable(TypedDict):
    date: str
    region: str
    currency: str
    note: str
    prices: dict[str, PriceEntry]


@cache
def load_prices(path: Path = PRICES_PATH) -> PriceTable:
    table: PriceTable = json.loads(path.read_text())
    return table


def sqs_requests(calls: int, messages: int, message_bytes: int = TASK_MESSAGE_BYTES) -> int:
    """Billed SQS requests for `calls` calls moving `messages` in all: each call is one request
    per started 64 KB of its payload."""
    if calls <= 0:
        return 0
    per_call = messages * message_bytes / calls
    return calls * max(1, math.ceil(per_call / SQS_CHUNK_BYTES))


@dataclass(frozen=True)
class Usage:
    """What a burst used on AWS."""

    api_requests: int
    api_function_seconds: float
    api_memory_mb: int
    worker_invocations: int
    worker_function_seconds: float
    worker_memory_mb: int
    tasks: int  # messages sent (each once) and received (each attempt)
    receive_calls: int
    delete_calls: int
    send_calls: int
    visibility_calls: int
    new_environments: int  # restores, with SnapStart
    seconds: float  # the burst, first send to the last task final
    architecture: Architecture = "x86_64"
    snapstart: bool = True
    database: Database = "db.t4g.micro"
    database_proxy: bool = True
    aurora_acus: float = 0.5  # Aurora Serverless v2's capacity during the burst


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: float
    unit: str
    usd: float


@dataclass(frozen=True)
class Bill:
    items: list[LineItem]
    date: str
    region: str
    note: str
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def total_usd(self) -> float:
        return sum(item.usd for item in self.items)

    def lines(self) -> list[str]:
        width = max((len(item.name) for item in self.items), default=0)
        rows = [
            f"  {item.name:<{width}}  {item.quantity:>16,.1f} {item.unit:<24} ${item.usd:>12,.4f}"
            for item in self.items
        ]
        return [
            f"Cost on AWS ({self.region}, list prices of {self.date}; {self.note})",
            *rows,
            f"  {'total':<{width}}  {'':>16} {'':<24} ${self.total_usd:>12,.4f}",
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "total_usd": round(self.total_usd, 6),
            "prices_date": self.date,
            "region": self.region,
            "note": self.note,
            "items": [
                {
                    "name": i.name,
                    "quantity": round(i.quantity, 3),
                    "unit": i.unit,
                    "usd": round(i.usd, 6),
                }
                for i in self.items
            ],
        }


def bill(usage: Usage, table: PriceTable | None = None) -> Bill:
    table = table or load_prices()
    prices = table["prices"]
    items: list[LineItem] = []

    def charge(name: str, key: str, quantity: float, unit: str) -> None:
        entry = prices[key]
        items.append(LineItem(name, quantity, unit, quantity * entry["usd"] / entry.get("per", 1)))

    gb = 1 / 1024
    duration = f"lambda_duration_{usage.architecture}"
    charge("Lambda requests (API)", "lambda_requests", usage.api_requests, "requests")
    charge(
        "Lambda duration (API)",
        duration,
        usage.api_function_seconds * usage.api_memory_mb * gb,
        "GB-s",
    )
    charge("Lambda requests (worker)", "lambda_requests", usage.worker_invocations, "requests")
    charge(
        "Lambda duration (worker)",
        duration,
        usage.worker_function_seconds * usage.worker_memory_mb * gb,
        "GB-s",
    )
    if usage.snapstart:
        charge(
            "SnapStart restores (worker)",
            "snapstart_python_restore",
            usage.new_environments * usage.worker_memory_mb * gb,
            "GB restored",
        )
        charge(
            "SnapStart cache (1 version)",
            "snapstart_python_cache",
            usage.seconds * usage.worker_memory_mb * gb,
            "GB-s",
        )
    sqs = (
        sqs_requests(usage.send_calls, usage.tasks)
        + sqs_requests(usage.receive_calls, usage.tasks)
        + usage.delete_calls
        + usage.visibility_calls
    )
    charge("SQS requests (64 KB chunks)", "sqs_standard_requests", sqs, "requests")
    charge("API Gateway REST requests", "api_gateway_rest_requests", usage.api_requests, "requests")
    hours = usage.seconds / 3600
    if usage.database == "db.t4g.micro":
        charge("RDS db.t4g.micro", RDS_INSTANCE_PRICE, hours, "instance-hours")
        if usage.database_proxy:
            entry = prices["rds_proxy_provisioned"]
            vcpus = max(prices[RDS_INSTANCE_PRICE].get("vcpus", 2), entry.get("minimum_vcpus", 2))
            charge("RDS Proxy", "rds_proxy_provisioned", hours * vcpus, "vCPU-hours")
    else:
        charge("Aurora Serverless v2", "aurora_serverless_v2", hours * usage.aurora_acus, "ACU-h")
        if usage.database_proxy:
            minimum = prices["rds_proxy_aurora_serverless_v2"].get("minimum_acus", 8)
            acus = max(usage.aurora_acus, minimum)
            charge("RDS Proxy", "rds_proxy_aurora_serverless_v2", hours * acus, "ACU-hours")
    return Bill(
        items=items,
        date=table["date"],
        region=table["region"],
        note="check before relying on them",
        sources={key: entry.get("source", "") for key, entry in prices.items()},
    )


# --- a measured burst ------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionShape:
    """What a deployed function's bill depends on, as Lambda's GetFunctionConfiguration says."""

    memory_mb: int
    architecture: Architecture = "x86_64"
    snapstart: bool = False

    @classmethod
    def from_configuration(cls, config: Mapping[str, Any]) -> FunctionShape:
        architectures = config.get("Architectures") or ["x86_64"]
        return cls(
            memory_mb=int(config["MemorySize"]),
            architecture="arm64" if architectures[0] == "arm64" else "x86_64",
            snapstart=config.get("SnapStart", {}).get("ApplyOn") == "PublishedVersions",
        )


def usage_from_report(
    report: Mapping[str, Any],
    *,
    worker_memory_mb: int,
    api_memory_mb: int,
    architecture: Architecture = "x86_64",
    snapstart: bool = True,
) -> Usage:
    """What the measured burst would have used on AWS: its requests (retries included), its
    batches and their seconds (the timeline's whole invocations where it has them, else the
    task spans), its environments (the peak), and its drain."""
    sending, batches = report["sending"], report["batches"]
    timeline = report["timeline"]
    series = (
        "esm_concurrent_batches"
        if any(e.get("esm_concurrent_batches") for e in timeline)
        else "concurrent_batches"
    )
    requests = int(sending["sent_requests"]) + int(sending["retries"]["extra_attempts"])
    tasks = int(sending["sent_tasks"])
    per_request = max(1, int(report["settings"]["batch"]))
    latency = report.get("api_latency_ms") or {}
    invocations = int(batches["count"])
    seconds = report["drain"]["seconds"] or report["drain"]["last_final_seconds"] or 0.0
    return Usage(
        api_requests=requests,
        api_function_seconds=requests * float(latency.get("p50", 0.0)) / 1000,
        api_memory_mb=api_memory_mb,
        worker_invocations=invocations,
        worker_function_seconds=float(sum(e.get(series) or 0 for e in timeline)),
        worker_memory_mb=worker_memory_mb,
        tasks=tasks,
        receive_calls=max(invocations, math.ceil(tasks / SQS_ENTRIES_PER_CALL)),
        delete_calls=invocations,
        send_calls=requests * math.ceil(per_request / SQS_ENTRIES_PER_CALL),
        visibility_calls=int(report["failed"]),
        new_environments=int(batches["peak_concurrent"]),
        seconds=float(seconds),
        architecture=architecture,
        snapstart=snapstart,
    )


def report_cost(
    report: Mapping[str, Any], worker: FunctionShape, api: FunctionShape
) -> dict[str, Any]:
    """The `cost` section of a burst report: what the measured run would cost on AWS."""
    usage = usage_from_report(
        report,
        worker_memory_mb=worker.memory_mb,
        api_memory_mb=api.memory_mb,
        architecture=worker.architecture,
        snapstart=worker.snapstart,
    )
    return bill(usage).to_json()
