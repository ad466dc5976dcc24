"""CloudWatch's Embedded Metric Format, read out of Lambda log lines as CloudWatch Logs does.

On AWS a function that prints an EMF object (a JSON line whose `_aws.CloudWatchMetrics` names
metrics among its own members) gets those metrics in CloudWatch, with no PutMetricData call:
CloudWatch Logs extracts them from the function's log group. LocalStack's open edition does
not. The local cloud does it for every function it runs, as its log events are shipped
(`lambda_logs`): the metrics go straight into CloudWatch's store in one transaction per
namespace and shipping cycle, where a thousand environments calling PutMetricData would be a
thousand requests a second through LocalStack's gateway (its measured ceiling: ~140).

Pure logic, no LocalStack: lines in, PutMetricData-shaped calls out. The rules are the EMF
specification's: a metric's value is a number or an array of up to 100 numbers; each dimension
set names root members holding strings; `Unit` defaults to None and `StorageResolution` to 60;
`_aws.Timestamp` is milliseconds since the epoch. A line that breaks them yields no metrics (on
AWS it stays a log line, as here).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from localcloud_ext.metrics_aggregation import (
    Destination,
    Dimension,
    MetricDatum,
    PutMetricDataCall,
)

MAX_VALUES_PER_METRIC = 100
MAX_DIMENSIONS_PER_SET = 30
DEFAULT_UNIT = "None"
DEFAULT_STORAGE_RESOLUTION = 60
# Cheap test before parsing: every EMF object has this member name.
MARKER = '"_aws"'


def metric_calls(messages: Iterable[str], account_id: str, region: str) -> list[PutMetricDataCall]:
    """The metrics the EMF lines among `messages` carry, one call per namespace."""
    datums: dict[Destination, list[MetricDatum]] = {}
    for message in messages:
        if MARKER not in message:
            continue
        for namespace, datum in line_datums(message):
            datums.setdefault(Destination(account_id, region, namespace), []).append(datum)
    return [PutMetricDataCall(destination, found) for destination, found in datums.items()]


def line_datums(message: str) -> list[tuple[str, MetricDatum]]:
    """(namespace, datum) for every value of every metric one EMF line declares; [] when the
    line is not valid EMF."""
    try:
        root = json.loads(message)
        metadata = root["_aws"]
        timestamp = datetime.fromtimestamp(int(metadata["Timestamp"]) / 1000, UTC)
        directives = metadata["CloudWatchMetrics"]
        if not isinstance(directives, list):
            return []
        found: list[tuple[str, MetricDatum]] = []
        for directive in directives:
            found += _directive_datums(root, directive, timestamp)
        return found
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, OSError):
        return []


def _directive_datums(
    root: dict[str, Any], directive: dict[str, Any], timestamp: datetime
) -> list[tuple[str, MetricDatum]]:
    namespace = directive["Namespace"]
    if not isinstance(namespace, str) or not namespace:
        raise ValueError("no namespace")
    dimension_sets = [_dimensions(root, keys) for keys in directive.get("Dimensions", [[]])]
    found: list[tuple[str, MetricDatum]] = []
    for metric in directive["Metrics"]:
        name = metric["Name"]
        unit = metric.get("Unit", DEFAULT_UNIT)
        resolution = int(metric.get("StorageResolution", DEFAULT_STORAGE_RESOLUTION))
        for value in _values(root[name]):
            for dimensions in dimension_sets:
                found.append(
                    (
                        namespace,
                        MetricDatum(
                            MetricName=name,
                            Dimensions=dimensions,
                            Timestamp=timestamp,
                            Unit=unit,
                            StorageResolution=resolution,
                            Value=value,
                        ),
                    )
                )
    return found


def _dimensions(root: dict[str, Any], keys: list[str]) -> list[Dimension]:
    if not isinstance(keys, list) or len(keys) > MAX_DIMENSIONS_PER_SET:
        raise ValueError("a dimension set must be a list of at most 30 names")
    dimensions = []
    for key in keys:
        value = root[key]
        if not isinstance(value, str):
            raise ValueError(f"dimension {key} is not a string")
        dimensions.append(Dimension(Name=key, Value=value))
    return dimensions


def _values(member: Any) -> list[float]:
    values = member if isinstance(member, list) else [member]
    if len(values) > MAX_VALUES_PER_METRIC:
        raise ValueError("more than 100 values")
    numbers = []
    for value in values:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value):
            raise ValueError("a metric value must be a finite number")
        numbers.append(float(value))
    return numbers
