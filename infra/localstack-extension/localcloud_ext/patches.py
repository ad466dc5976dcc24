"""Fixes to LocalStack's own behaviour, applied when its infrastructure starts.

Each patch replaces one function through LocalStack's own `localstack.utils.patch`, and checks
first that the seam it patches still looks as expected, so that moving internals fail loudly at
start-up rather than silently later. LocalStack is pinned (infra/localstack-constraints.txt).
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Future
from typing import Any

from localstack.runtime import hooks

from localcloud_ext.seams import SeamMoved, require_parameters

LOG = logging.getLogger(__name__)


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


@hooks.on_infra_start()
def wake_the_server_loop_on_shutdown() -> None:
    """LocalStack's hypercorn server stops its asyncio loop with `loop.stop()` from the shutdown
    thread. That call is not thread-safe: it only sets a flag, so a loop idle in epoll sleeps on
    and SIGTERM leaves LocalStack running (seen in 1 of 2 stops right after start). Schedule the
    stop on the loop itself as well, which wakes it."""
    from localstack.runtime.server.hypercorn import HypercornRuntimeServer
    from localstack.utils.patch import patch

    require_parameters(HypercornRuntimeServer.shutdown, ["self"])

    @patch(HypercornRuntimeServer.shutdown)
    def shutdown(shutdown: Any, self: HypercornRuntimeServer) -> None:
        shutdown(self)
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing to wake
            self.loop.call_soon_threadsafe(self.loop.stop)


# Long enough for our executor to unpack a large package; the update goes on regardless.
UPDATE_WAIT_SECONDS = 30.0


@hooks.on_infra_start()
def answer_function_updates_once_done() -> None:
    """UpdateFunctionCode/UpdateFunctionConfiguration answer LastUpdateStatus=InProgress and
    finish in the background. Deploy tools then poll with botocore's `function_updated` waiter,
    which sleeps 5 s between polls: with our process executor the update takes ~0.1 s, yet every
    function costs a 5 s sleep (`chalice deploy` of 3 functions: 16 s). Waiting for the update
    before answering lets the first poll see Successful, as a quick AWS update would."""
    from localstack.services.lambda_.invocation.lambda_models import FunctionVersion
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.utils.patch import patch

    require_parameters(LambdaService.update_version, ["self", "new_version"])

    @patch(LambdaService.update_version)
    def update_version(
        update_version: Any, self: LambdaService, new_version: FunctionVersion
    ) -> Future[None]:
        done: Future[None] = update_version(self, new_version)
        try:
            done.result(timeout=UPDATE_WAIT_SECONDS)
        except Exception:  # a failed update is reported through LastUpdateStatus, as before
            LOG.debug("update of %s did not finish cleanly", new_version.qualified_arn)
        return done


@hooks.on_infra_start()
def stop_per_invoke_lambda_metrics() -> None:
    """After every invoke LocalStack starts a thread that publishes one `Invocations` or `Errors`
    datapoint through a boto3 client into its CloudWatch store: 16% of LocalStack's CPU under
    API load (py-spy), for metrics nothing here reads. The local cloud publishes AWS/Lambda
    metrics itself, aggregated per second (the scaling issue), so these would count twice."""
    from localstack.services.lambda_.invocation import version_manager

    for name in ("record_cw_metric_invocation", "record_cw_metric_error"):
        current = getattr(version_manager, name, None)
        if current is None:
            raise SeamMoved(f"localstack...version_manager.{name} is gone")
        require_parameters(current, ["function_name", "account_id", "region_name"])
        setattr(version_manager, name, _publish_nothing)


def _publish_nothing(function_name: str, account_id: str, region_name: str) -> None:
    """Stands in for LocalStack's per-invoke metric publication."""


@hooks.on_infra_start()
def throttle_usage_plans() -> None:
    """After LocalStack's own API key check (the request then carries the key's id), apply the
    usage plans' throttles of the stage the request is for."""
    from localstack.services.apigateway.next_gen.execute_api.gateway_response import (
        ThrottledError,
    )
    from localstack.services.apigateway.next_gen.execute_api.handlers.api_key_validation import (
        ApiKeyValidationHandler,
    )
    from localstack.services.apigateway.next_gen.execute_api.moto_helpers import (
        get_usage_plan_keys,
        get_usage_plans,
    )
    from localstack.utils.patch import patch

    from localcloud_ext.usage_plans import THROTTLE, THROTTLED_MESSAGE, applicable_limits

    require_parameters(ApiKeyValidationHandler.__call__, ["self", "chain", "context", "response"])

    @patch(ApiKeyValidationHandler.__call__)
    def validate_then_throttle(
        validate: Any, self: ApiKeyValidationHandler, chain: Any, context: Any, response: Any
    ) -> None:
        validate(self, chain, context, response)  # raises 403 for a missing or wrong key
        identity = context.context_variables.get("identity") or {}
        key_id = identity.get("apiKeyId")
        if not context.resource_method.get("apiKeyRequired") or not key_id:
            return
        account, region = context.account_id, context.region

        def plan_has_key(plan_id: str) -> bool:
            keys = get_usage_plan_keys(
                usage_plan_id=plan_id, account_id=account, region_name=region
            )
            return any(k["id"] == key_id for k in keys)

        limits = applicable_limits(
            get_usage_plans(account_id=account, region_name=region),
            context.api_id,
            context.stage,
            context.resource["path"],
            context.invocation_request["http_method"],
            plan_has_key,
        )
        if not THROTTLE.admit(key_id, limits):
            LOG.debug("API key %s over its usage plan's limit on %s", key_id, context.api_id)
            raise ThrottledError(THROTTLED_MESSAGE)


@hooks.on_infra_start()
def share_execution_environment_timers() -> None:
    """LocalStack's ExecutionEnvironment arms a threading.Timer (a thread) after every invocation,
    the keepalive of an idle environment, and one while it starts: a thread per idle environment.
    One scheduler thread holds them all instead (localcloud_ext.timers)."""
    import threading

    from localstack.services.lambda_.invocation import execution_environment

    from localcloud_ext.timers import SharedTimer

    if execution_environment.Timer is not threading.Timer:
        raise SeamMoved("execution_environment.Timer is no longer threading.Timer")
    for method, names in (
        (execution_environment.ExecutionEnvironment.release, ("Timer", "keepalive_timer")),
        (execution_environment.ExecutionEnvironment.start, ("Timer", "startup_timer")),
    ):
        if not set(names) <= set(method.__code__.co_names):
            raise SeamMoved(f"{method.__qualname__} no longer arms {names[1]} with Timer")
    execution_environment.Timer = SharedTimer


@hooks.on_infra_start()
def answer_snapstart_failures_as_api_errors() -> None:
    """AWS answers an Invoke whose SnapStart restore failed with an API error (400
    SnapStartException, 408 SnapStartTimeoutException, 409 SnapStartNotReadyException), not a
    function error. The executor raises them from the environment's start; LocalStack's
    assignment service wraps every such exception in its own AssignmentException, which the
    caller would get as a 500. This lets Lambda's own API errors through."""
    from localstack.aws.api import ServiceException
    from localstack.services.lambda_.invocation.assignment import (
        AssignmentException,
        AssignmentService,
    )
    from localstack.utils.patch import patch

    require_parameters(
        AssignmentService.start_environment, ["self", "version_manager_id", "function_version"]
    )

    @patch(AssignmentService.start_environment)
    def start_environment(
        start_environment: Any, self: Any, version_manager_id: str, function_version: Any
    ) -> Any:
        try:
            return start_environment(self, version_manager_id, function_version)
        except AssignmentException as wrapped:
            if isinstance(wrapped.__cause__, ServiceException):
                raise wrapped.__cause__ from None
            raise
