"""A redeploy of a stage whose worker is on SnapStart: the one SQS mapping takes the new
settings in place. (Chalice recognises its mapping only while it invokes the unqualified
function; before the deploy handed it back, a redeploy subscribed the queue a second time and
both mappings ran, 110 batches at once for a MaximumConcurrency of 100.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deployment import pipeline, snapstart
from localcloud.settings import Settings
from tests.e2e.conftest import deployed_stage

WORKER_TIMEOUT_SECONDS = 3


def _mappings_of_the_queue(lambda_client: Any, queue_arn: str) -> list[dict[str, Any]]:
    mappings: list[dict[str, Any]] = lambda_client.list_event_source_mappings(
        EventSourceArn=queue_arn
    )["EventSourceMappings"]
    return mappings


def test_a_redeploy_with_a_new_maximum_concurrency_updates_the_one_mapping(
    local_cloud: dict[str, Any], localcloud_settings: Settings, tmp_path: Path
) -> None:
    with deployed_stage(
        local_cloud,
        localcloud_settings,
        tmp_path,
        worker_timeout_seconds=WORKER_TIMEOUT_SECONDS,
        visibility_timeout_seconds=WORKER_TIMEOUT_SECONDS,
        environment={"WORKER_MAX_CONCURRENCY": "10"},
        name_prefix="redeploy",
    ) as stage:
        lambda_client = stage.client("lambda")
        first = lambda_client.get_event_source_mapping(UUID=stage.mapping_uuid)
        config_path = tmp_path / ".chalice" / "config.json"
        config = json.loads(config_path.read_text())
        config["stages"][stage.name]["environment_variables"]["WORKER_MAX_CONCURRENCY"] = "20"
        config_path.write_text(json.dumps(config, indent=2))

        again = pipeline.deploy(
            localcloud_settings, tmp_path, stage.name, visibility_timeout_seconds=3, record=False
        )

        [mapping] = _mappings_of_the_queue(lambda_client, first["EventSourceArn"])
        assert mapping["UUID"] == first["UUID"] == again.deployed.event_source_mappings["worker"]
        assert mapping["ScalingConfig"]["MaximumConcurrency"] == 20
        if first["FunctionArn"].endswith(f":{snapstart.ALIAS}"):  # the worker is on SnapStart
            assert mapping["FunctionArn"] == first["FunctionArn"]
