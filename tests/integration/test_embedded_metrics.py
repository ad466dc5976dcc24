"""CloudWatch Logs' EMF extraction for Lambda, in the local cloud: a function that prints an
Embedded Metric Format line gets its metrics in CloudWatch, with no PutMetricData call, as on
AWS; a line that is not EMF stays a log line."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from localcloud import procs
from tests.metrics import metric_values

EXTRACTED_WITHIN_S = 15.0  # shipped within a second, a bound for a loaded machine

HANDLER = """
import json, time

def handler(event, context):
    print(json.dumps({
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": event["namespace"],
                "Dimensions": [["service"]],
                "Metrics": [{"Name": "Widgets", "Unit": "Count", "StorageResolution": 1}],
            }],
        },
        "service": "emf-test",
        "Widgets": event["widgets"],
    }))
    print('{"_aws": "not EMF", "Widgets": 1000}')
    return {}
"""


def test_a_function_s_emf_line_becomes_cloudwatch_metrics(
    aws: Callable[[str], Any], create_function: Callable[..., str]
) -> None:
    name = create_function(HANDLER, prefix="emf")
    namespace = f"EmfTest/{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    lambda_client = aws("lambda")

    for widgets in ([2, 3], 5):
        response = lambda_client.invoke(
            FunctionName=name,
            Payload=json.dumps({"namespace": namespace, "widgets": widgets}).encode(),
        )
        assert "FunctionError" not in response, response["Payload"].read()

    def values(stat: str) -> list[float]:
        return metric_values(
            aws("cloudwatch"), since, namespace, "Widgets", ("service", "emf-test"), stat
        )

    assert procs.poll(lambda: sum(values("SampleCount")) == 3, EXTRACTED_WITHIN_S, 0.25), (
        f"samples extracted: {values('SampleCount')}"
    )
    assert sum(values("Sum")) == 10  # 2 + 3 + 5: the line that is not EMF added nothing
    assert max(values("Maximum")) == 5
    [metric] = aws("cloudwatch").list_metrics(Namespace=namespace)["Metrics"]
    assert metric["Dimensions"] == [{"Name": "service", "Value": "emf-test"}]
