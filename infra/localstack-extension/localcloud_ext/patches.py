"""Fixes to LocalStack's own behaviour, applied when its infrastructure starts.

Each patch replaces one function through LocalStack's own `localstack.utils.patch`, and checks
first that the seam it patches still looks as expected, so that moving internals fail loudly at
start-up rather than silently later. LocalStack is pinned (infra/localstack-constraints.txt).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from localstack.runtime import hooks

LOG = logging.getLogger(__name__)


class SeamMoved(RuntimeError):
    """A LocalStack internal this extension patches is not what it was written against."""


def require_parameters(function: Any, expected: list[str]) -> None:
    actual = list(inspect.signature(function).parameters)
    if actual != expected:
        raise SeamMoved(
            f"{function.__qualname__} takes {actual}, this extension expects {expected}"
        )


@hooks.on_infra_start()
def tolerate_deleting_failed_functions() -> None:
    """On AWS a function whose creation failed can be deleted. LocalStack drops the failed
    version's manager and then refuses the delete ("Unable to find version manager")."""
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.utils.patch import patch

    require_parameters(LambdaService.stop_version, ["self", "qualified_arn"])

    @patch(LambdaService.stop_version)
    def stop_version(stop_version: Any, self: LambdaService, qualified_arn: str) -> None:
        if (
            qualified_arn in self.lambda_running_versions
            or qualified_arn in self.lambda_starting_versions
        ):
            stop_version(self, qualified_arn)
            return
        LOG.debug(
            "version %s has no running manager (its creation failed): nothing to stop",
            qualified_arn,
        )
