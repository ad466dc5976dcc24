"""boto3 clients for the local cloud, and the RDS-style credentials secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from localcloud.postgres import Credentials
from localcloud.settings import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, SECRET_NAME, Settings

logger = logging.getLogger(__name__)


def client(cfg: Settings, service: str) -> Any:
    """A boto3 client bound to our LocalStack (never to real AWS)."""
    return boto3.client(
        service,
        endpoint_url=cfg.localstack_url,
        region_name=cfg.region,
        aws_access_key_id=AWS_ACCESS_KEY_ID,
        aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
    )


def client_for_running(
    running: Mapping[str, Any], service: str, config: Config | None = None
) -> Any:
    """A boto3 client for the local cloud described by a parsed endpoints.json."""
    return boto3.client(
        service,
        endpoint_url=running["localstack"]["url"],
        region_name=running["region"],
        aws_access_key_id=AWS_ACCESS_KEY_ID,
        aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
        config=config,
    )


def rds_secret_document(cfg: Settings, creds: Credentials) -> dict[str, Any]:
    """The JSON shape of an RDS-managed secret."""
    return {
        "username": creds.username,
        "password": creds.password,
        "engine": "postgres",
        "host": cfg.host,
        "port": cfg.pg_port,
        "dbname": creds.dbname,
    }


def ensure_rds_secret(cfg: Settings, creds: Credentials, name: str = SECRET_NAME) -> str:
    """Create the secret, or put a new value when it exists; return its ARN."""
    sm = client(cfg, "secretsmanager")
    value = json.dumps(rds_secret_document(cfg, creds))
    try:
        arn: str = sm.create_secret(
            Name=name, SecretString=value, Description="localcloud: PostgreSQL (RDS stand-in)"
        )["ARN"]
        logger.info("created secret %s", name)
    except sm.exceptions.ResourceExistsException:
        arn = sm.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        logger.info("updated secret %s", name)
    return arn


def s3_website_url(running: Mapping[str, Any], bucket: str) -> str:
    """The bucket's website as a browser and curl reach it on a machine with no DNS.

    LocalStack serves S3 websites for any Host of the form BUCKET.s3-website.DOMAIN.
    `*.localhost` names loopback without a resolver (RFC 6761: Chromium and curl resolve it
    themselves), where the stack's AWS-shaped http://BUCKET.s3-website.127.0.0.1:4566 and
    LocalStack's *.localhost.localstack.cloud resolve nowhere offline."""
    port = urlsplit(running["localstack"]["url"]).port
    return f"http://{bucket}.s3-website.localhost:{port}/"
