"""Absolute URLs of the API's own resources, built from the request API Gateway passed in, so
they are right behind any of its URL forms (AWS's execute-api host, a custom domain, or
LocalStack's http://127.0.0.1:4566/_aws/execute-api/ID/STAGE/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def api_root(context: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """The URL the client used, up to and including the stage, with a trailing slash.
    API Gateway's `path` is what the client requested; `resourcePath` the route's template,
    and with the path parameters filled in it is the path's tail."""
    path = str(context.get("path") or "/")
    resource_path = str(context.get("resourcePath") or "")
    depth = resource_path.strip("/").count("/") + 1 if resource_path.strip("/") else 0
    parts = path.rstrip("/").split("/")
    prefix = "/".join(parts[: len(parts) - depth]) if depth else path.rstrip("/")
    host = headers.get("host") or str(context.get("domainName") or "localhost")
    scheme = headers.get("x-forwarded-proto") or ("http" if _is_loopback(host) else "https")
    return f"{scheme}://{host}{prefix}/"


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in ("localhost", "127.0.0.1", "[::1]")
