"""The worker on Lambda SnapStart: `SnapStart: {ApplyOn: PublishedVersions}`, a version published
by each deploy, the alias `live` pointed at it, and the SQS mapping invoking the alias.

SnapStart applies to published versions only, never to $LATEST, so the mapping must invoke a
version or an alias. Chalice creates the mapping on the unqualified function and, on a
redeploy, updates only its batching and scaling settings (its `update_lambda_event_source`
leaves FunctionName alone): so the alias this step sets survives a redeploy, and the step
itself is idempotent (a version is published only when the code or configuration changed:
PublishVersion answers the latest version otherwise).

AWS offers SnapStart for Python 3.12 and later. Chalice deploys the functions on the Python it
runs on (the tools venv's); on an older one this step leaves the mapping on $LATEST and says so.
"""

from __future__ import annotations

import logging
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
