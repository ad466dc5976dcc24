"""The database's credentials come from an RDS-shaped Secrets Manager secret."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from chalicelib.errors import DependencyUnavailable, SettingMissing
from chalicelib.postgres_store import conninfo_from_secret, read_secret
from chalicelib.settings import DatabaseEndpoint

SECRET = {
    "username": "app",
    "password": "p@ss word'\\",
    "engine": "postgres",
    "host": "127.0.0.1",
    "port": 15432,
    "dbname": "app",
}


def test_conninfo_comes_from_the_rds_shaped_secret() -> None:
    conninfo = conninfo_from_secret(SECRET)

    assert conninfo_to_dict(conninfo) == {
        "host": "127.0.0.1",
        "port": "15432",
        "dbname": "app",
        "user": "app",
        "password": "p@ss word'\\",
        "connect_timeout": "5",
        "application_name": "serverless-scaling",
    }


def test_through_a_proxy_only_host_and_port_change() -> None:
    conninfo = conninfo_to_dict(conninfo_from_secret(SECRET, DatabaseEndpoint("proxy", 16432)))

    assert (conninfo["host"], conninfo["port"]) == ("proxy", "16432")
    assert (conninfo["user"], conninfo["password"]) == ("app", SECRET["password"])


def test_no_session_setting_is_sent_at_connect() -> None:
    # PgBouncer refuses a startup `options` parameter; the role carries the statement timeout.
    assert "options" not in conninfo_to_dict(conninfo_from_secret(SECRET))


def test_a_secret_without_the_rds_keys_is_refused() -> None:
    with pytest.raises(SettingMissing, match="lacks dbname, password"):
        conninfo_from_secret({"host": "h", "port": 5432, "username": "u"})


def test_read_secret_parses_the_secret_string() -> None:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="rds/credentials", SecretString=json.dumps(SECRET))

        assert read_secret(client, "rds/credentials") == SECRET


def test_a_missing_secret_is_unavailable() -> None:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")

        with pytest.raises(DependencyUnavailable, match="reading secret nope failed") as raised:
            read_secret(client, "nope")

    assert isinstance(raised.value.__cause__, ClientError)
