"""The app database's connection string, for the scripts and tests beside the app: the same
RDS-shaped secret the functions read (chalicelib.postgres_store), fetched from the local cloud."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.postgres_store import conninfo_from_secret, read_secret
from localcloud.aws import client_for_running


def conninfo(running: Mapping[str, Any], secret_id: str | None = None) -> str:
    """From the secret `secret_id`, by default the local cloud's own (endpoints.json)."""
    secretsmanager = client_for_running(running, "secretsmanager")
    secret = read_secret(secretsmanager, secret_id or running["postgres"]["secret_name"])
    return conninfo_from_secret(secret)
