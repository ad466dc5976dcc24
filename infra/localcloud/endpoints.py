"""``<state>/endpoints.json``: where the running local cloud is, for scripts and tests.

It exists only while the local cloud runs (``down`` deletes it). Shape (``version`` 1)::

    {"version": 1, "region": "us-east-1",
     "localstack": {"url": "http://127.0.0.1:4566", "pid": 123, "log": "..."},
     "postgres": {"host": "127.0.0.1", "port": 15432, "dbname": "app",
                  "secret_name": "localcloud/rds/credentials", "secret_arn": "arn:...",
                  "pid": 456, "log": "...", "db_instance_identifier": "localcloud-postgres",
                  "instance_class": "db.t4g.micro", "max_connections": 112},
     "database_proxy": {"host": "127.0.0.1", "port": 16432, "name": "localcloud-proxy",
                        "dbname": "app", "max_server_connections": 100, "pid": 789,
                        "log": "..."}}

Other tools add their own top-level sections with :func:`update` (e.g. the deploy script an
``"api"`` section). ``up`` replaces only the sections it owns and keeps the others, except when it
has just started a fresh LocalStack: LocalStack keeps no state across restarts, so sections written
against the previous instance are dropped then.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VERSION = 1


def load(path: Path) -> dict[str, Any]:
    """The parsed file; {} when it does not exist."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return data


def update(path: Path, sections: Mapping[str, Any], fresh: bool = False) -> dict[str, Any]:
    """Replace the top-level ``sections`` (keeping the others unless ``fresh``), atomically."""
    data = {} if fresh else load(path)
    data.update(sections)
    data["version"] = VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return data


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def discard(path: Path, *sections: str) -> None:
    """Drop top-level sections (e.g. what a deploy recorded, once it is destroyed)."""
    data = load(path)
    if data and any(name in data for name in sections):
        update(path, {k: v for k, v in data.items() if k not in sections}, fresh=True)
