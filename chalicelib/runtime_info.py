"""Which Lambda execution environment is running this code, from Lambda's standard variables."""

from __future__ import annotations

import os
from collections.abc import Mapping


def describe_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Function name, version, memory and log stream: the log stream names one execution
    environment, so distinct streams across requests mean distinct concurrent environments."""
    env = os.environ if environ is None else environ
    return {
        "function_name": env.get("AWS_LAMBDA_FUNCTION_NAME", "local"),
        "function_version": env.get("AWS_LAMBDA_FUNCTION_VERSION", "local"),
        "memory_size_mb": env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "unknown"),
        "log_stream": env.get("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        "region": env.get("AWS_REGION", "unknown"),
    }
