"""The worker on Lambda SnapStart: `SnapStart: {ApplyOn: PublishedVersions}`, a version published
by each deploy, the alias `live` pointed at it, and the SQS mapping invoking the alias.

SnapStart applies to published versions only, never to $LATEST, so the mapping must invoke a
version or an alias. Chalice creates the mapping on the unqualified function, and on a redeploy
takes a mapping for its own only while it invokes exactly that ARN (`verify_event_source_current`
compares FunctionArn): one on the alias it takes for gone, and it subscribes the queue again.
Both mappings would then poll the queue, each up to its own MaximumConcurrency (a redeploy from
10 to 100 ran 110 batches at once). So before `chalice deploy` the recorded mapping is handed
back to the unqualified function (Chalice then updates it in place), after it any other mapping
from the queue to the function is deleted, and this step points the mapping at the alias again.
The step itself is idempotent (a version is published only when the code or configuration
changed: PublishVersion answers the latest version otherwise).

AWS offers SnapStart for Python 3.12 and later. Chalice deploys the functions on the Python it
runs on (the tools venv's); on an older one this step leaves the mapping on $LATEST and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

ALIAS = "live"
# AWS Lambda's Python runtimes with SnapStart (Lambda developer guide, snapstart-runtimes).
RUNTIMES = ("python3.12", "python3.13", "python3.14")
APPLY_ON = {"ApplyOn": "PublishedVersions"}


def supported(runtime: str) -> bool:
    return runtime in RUNTIMES


def apply(lambda_client: Any, function_name: str, mapping_uuid: str) -> str | None:
    """Put the worker on SnapStart and its mapping on the alias; returns the alias's ARN, or
    None when the runtime has no SnapStart (the mapping then invokes the function itself)."""
    config = lambda_client.get_function_configuration(FunctionName=function_name)
    if not supported(config["Runtime"]):
        logger.info(
            "SnapStart: not offered for %s (AWS: Python 3.12 and later); the worker starts "
            "each environment with its own init",
            config["Runtime"],
        )
        _invoke_from_mapping(lambda_client, mapping_uuid, config["FunctionArn"])
        return None
    if (config.get("SnapStart") or {}).get("ApplyOn") != APPLY_ON["ApplyOn"]:
        lambda_client.update_function_configuration(FunctionName=function_name, SnapStart=APPLY_ON)
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function_name)
    version = lambda_client.publish_version(FunctionName=function_name)["Version"]
    lambda_client.get_waiter("published_version_active").wait(
        FunctionName=function_name, Qualifier=version
    )
    alias_arn = _point_alias(lambda_client, function_name, version)
    _invoke_from_mapping(lambda_client, mapping_uuid, alias_arn)
    logger.info("SnapStart: %s version %s, alias %s, invoked by the mapping", function_name,
                version, ALIAS)  # fmt: skip
    return alias_arn


def _point_alias(lambda_client: Any, function_name: str, version: str) -> str:
    try:
        alias = lambda_client.update_alias(
            FunctionName=function_name, Name=ALIAS, FunctionVersion=version
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        alias = lambda_client.create_alias(
            FunctionName=function_name, Name=ALIAS, FunctionVersion=version
        )
    arn: str = alias["AliasArn"]
    return arn


def _invoke_from_mapping(lambda_client: Any, mapping_uuid: str, function_arn: str) -> None:
    mapping = lambda_client.get_event_source_mapping(UUID=mapping_uuid)
    if mapping["FunctionArn"] != function_arn:
        lambda_client.update_event_source_mapping(UUID=mapping_uuid, FunctionName=function_arn)


def hand_back_mappings(lambda_client: Any, deployed_record: Mapping[str, Any]) -> None:
    """Before `chalice deploy`: point each SQS mapping Chalice recorded back at the function it
    made it for, so Chalice recognises it and updates it instead of subscribing the queue again.
    Until `apply` runs, the mapping invokes $LATEST (an init per environment, no snapshot)."""
    for resource in deployed_record.get("resources", []):
        if resource.get("resource_type") != "sqs_event":
            continue
        try:
            _invoke_from_mapping(lambda_client, resource["event_uuid"], resource["lambda_arn"])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise  # gone: Chalice makes it anew


def remove_stray_mappings(lambda_client: Any, mapping_uuid: str) -> list[str]:
    """Delete every other mapping from this mapping's queue to its function (any version or
    alias): left by a deploy before `hand_back_mappings` existed, or by one that failed between
    the two. Returns the deleted mappings' UUIDs."""
    mapping = lambda_client.get_event_source_mapping(UUID=mapping_uuid)
    function_arn = unqualified(mapping["FunctionArn"])
    strays = [
        other["UUID"]
        for page in lambda_client.get_paginator("list_event_source_mappings").paginate(
            EventSourceArn=mapping["EventSourceArn"]
        )
        for other in page["EventSourceMappings"]
        if other["UUID"] != mapping_uuid and unqualified(other["FunctionArn"]) == function_arn
    ]
    for uuid in strays:
        lambda_client.delete_event_source_mapping(UUID=uuid)
        logger.info("deleted a second mapping of the same queue to %s: %s", function_arn, uuid)
    return strays


def unqualified(function_arn: str) -> str:
    """arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] without its qualifier."""
    return ":".join(function_arn.split(":")[:7])
