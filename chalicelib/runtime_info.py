"""Which Lambda execution environment is running this code, from Lambda's standard variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from chalicelib.ports import Deadline


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


class InvocationDeadline(Deadline):
    """The time left in this invocation, from Lambda's context object."""

    def __init__(self, context: RemainingTime) -> None:
        self._context = context

    def remaining_ms(self) -> int:
        return int(self._context.get_remaining_time_in_millis())


class RemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> float: ...
