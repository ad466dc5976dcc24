"""What integration tests share: clients on the running local cloud, and queues and functions
created for one test and deleted after it."""

from __future__ import annotations

import secrets
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.config import Config
from psycopg.conninfo import conninfo_to_dict

from deployment import database, migrations
from localcloud.aws import client_for_running
from tests.lambda_zip import zip_of

ROLE = "arn:aws:iam::000000000000:role/lambda-role"


@pytest.fixture(scope="module")
def aws(local_cloud: dict[str, Any]) -> Callable[[str], Any]:
    # no retries: a throttled invoke must reach the test as the TooManyRequestsException it is
    config = Config(max_pool_connections=16, read_timeout=120, retries={"max_attempts": 0})
    return lambda service: client_for_running(local_cloud, service, config)


@pytest.fixture
def create_queue(aws: Callable[[str], Any]) -> Iterator[Callable[..., str]]:
    sqs = aws("sqs")
    urls: list[str] = []

    def create(name: str, **attributes: str) -> str:
        url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        urls.append(url)
        return url

    yield create
    for url in urls:
        sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def create_function(aws: Callable[[str], Any]) -> Iterator[Callable[..., str]]:
    """create_function(source, prefix=...) -> the name of an Active function running
    `handler.handler` from `source`, on this interpreter's Python runtime."""
    client = aws("lambda")
    names: list[str] = []

    def create(source: str, prefix: str = "fn", timeout: int = 30) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        client.create_function(
            FunctionName=name,
            Runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
            Role=ROLE,
            Handler="handler.handler",
            Code={"ZipFile": zip_of(source)},
            Timeout=timeout,
        )
        client.get_waiter("function_active_v2").wait(FunctionName=name)
        names.append(name)
        return name

    yield create
    for name in names:
        client.delete_function(FunctionName=name)


@pytest.fixture(scope="module")
def owner(database_conninfo: str) -> str:
    """The database owner's conninfo, the tasks table made, as after a deploy."""
    migrations.apply_migrations(database_conninfo)
    return database_conninfo


@pytest.fixture(scope="module")
def app_role(owner: str) -> Iterator[dict[str, Any]]:
    """A stage's role, made for the module, with a password as Secrets Manager would generate
    it: its secret (host, port, dbname, username, password). Made after the local cloud started,
    so the proxy must look it up on login."""
    params = conninfo_to_dict(owner)
    secret = {
        "host": params["host"],
        "port": params["port"],
        "dbname": params["dbname"],
        "username": database.app_role_name(f"it-{uuid.uuid4().hex[:8]}"),
        "password": secrets.token_urlsafe(24),
    }
    database.ensure_app_role(owner, secret)
    try:
        yield secret
    finally:
        database.drop_app_role(owner, secret["username"])
