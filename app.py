"""serverless-scaling's API and its SQS worker. Routes only: parse, call chalicelib, map the
app's errors to HTTP statuses. Logic, adapters and settings live in chalicelib/."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from chalice import (
    BadRequestError,
    Chalice,
    ChaliceViewError,
    ConflictError,
    CORSConfig,
    NotFoundError,
    Response,
)
from chalice.app import CloudWatchEvent, Rate, Request, SQSEvent

from chalicelib import openapi, runtime_info, snapstart, validation
from chalicelib.dashboard import MetricsWindow
from chalicelib.errors import (
    DependencyUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    RequestNotFinished,
    RequestTooLarge,
    TaskNotFound,
)
from chalicelib.runtime_info import InvocationDeadline
from chalicelib.service import Submission
from chalicelib.settings import DashboardAccess, WorkerTrigger
from chalicelib.wiring import Dependencies

# Logs are Powertools' structured JSON. Chalice's own handler would sit on the same logger
# (named after the app, as is the service) and print every line a second time, unstructured.
app = Chalice(app_name="serverless-scaling", configure_logs=False)
log = Logger()  # service name from POWERTOOLS_SERVICE_NAME
copy_config_to_registered_loggers(source_logger=log, include={"chalicelib"})
deps = Dependencies(log)
# SnapStart (the worker's published versions): connections closed before the snapshot, randomness
# reseeded after each restore. Registered at import, as the hooks must be.
snapstart.register_hooks(deps)
trigger = WorkerTrigger.from_env()  # at import: `chalice deploy` reads the trigger from it
# The dashboard's site may read the API from a browser; no other origin may.
dashboard_cors = CORSConfig(allow_origin=DashboardAccess.from_env().origin, max_age=600)

P = ParamSpec("P")
E = TypeVar("E")
R = TypeVar("R")


class PayloadTooLargeError(ChaliceViewError):
    STATUS_CODE = 413


class ServiceUnavailableError(ChaliceViewError):
    STATUS_CODE = 503


def http_errors(view: Callable[P, R]) -> Callable[P, R]:
    """Map the app's errors to statuses; a client's mistake is never a 500."""

    @functools.wraps(view)
    def mapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return view(*args, **kwargs)
        except InvalidRequest as e:
            raise BadRequestError(str(e)) from e
        except RequestTooLarge as e:
            raise PayloadTooLargeError(str(e)) from e
        except TaskNotFound as e:
            raise NotFoundError(str(e)) from e
        except IdempotencyConflict as e:
            raise ConflictError(str(e)) from e
        except DependencyUnavailable as e:
            log.warning("dependency unavailable: %s", e)
            raise ServiceUnavailableError(f"{e}; nothing was changed, retry later") from e
        except RequestNotFinished as e:
            log.warning("request not finished: %s", e)
            raise ServiceUnavailableError(
                f"{e}: retry with the same idempotency keys, each task is then taken once"
            ) from e

    return mapped


@app.middleware("all")
def count_cold_start(event: E, get_response: Callable[[E], R]) -> R:
    """Every invocation, API or worker: the first one of an environment is its cold start."""
    deps.cold_start.invocation_started()
    try:
        return get_response(event)
    finally:
        deps.metrics.flush()  # at most one publish a second; never raises


def _request() -> Request:
    request = app.current_request
    assert request is not None, "only called while Chalice serves a request"
    return request


def _deadline() -> InvocationDeadline | None:
    """The invocation's time left: a request that cannot finish answers 503, not Lambda's 502."""
    context = app.lambda_context
    return InvocationDeadline(context) if context is not None else None


def _correlation_id() -> str:
    """API Gateway's request id: it travels with the task into the worker's logs and the row."""
    request_id = str(_request().context.get("requestId") or uuid.uuid4())
    log.set_correlation_id(request_id)
    return request_id


def _submission_json(submission: Submission) -> dict[str, Any]:
    task = submission.task
    return {
        "id": str(task.id),
        "outcome": submission.outcome,
        "status": task.status,
        # Relative to the API's root URL: the request cannot tell which of API Gateway's URL
        # forms the client used (LocalStack's /_aws/execute-api/ID/STAGE/ looks like /STAGE/).
        "status_path": f"tasks/{task.id}",
    }


# Writes need the stage's API key (x-api-key; the deploy makes it and its usage plan): API
# Gateway answers 403 without it and 429 over the plan's rate, before this code runs.
@app.route("/tasks", methods=["POST"], api_key_required=True)
@http_errors
def submit_task() -> Response:
    request = validation.parse_task(_request().raw_body)
    submission = deps.service.submit_one(request, _correlation_id(), _deadline())
    body = _submission_json(submission)
    # A relative reference, resolved against this request's URL (.../tasks) to .../tasks/ID.
    return Response(body=body, status_code=202, headers={"Location": body["status_path"]})


@app.route("/tasks/batch", methods=["POST"], api_key_required=True)
@http_errors
def submit_batch() -> Response:
    requests = validation.parse_batch(_request().raw_body)
    submissions = deps.service.submit(requests, _correlation_id(), _deadline())
    results = [_submission_json(s) for s in submissions]
    return Response(
        body={"accepted": sum(s.accepted for s in submissions), "results": results},
        status_code=202,
    )


@app.route("/tasks/{task_id}")
@http_errors
def get_task(task_id: str) -> dict[str, Any]:
    try:
        parsed = uuid.UUID(task_id)
    except ValueError:
        raise InvalidRequest("task_id", f"{task_id!r} is not a task id (a UUID)") from None
    return deps.service.get(parsed).to_json()


@app.route("/status")
@http_errors
def status() -> dict[str, Any]:
    return deps.service.status()


@app.route("/metrics", cors=dashboard_cors)
@http_errors
def metrics() -> dict[str, Any]:
    """The dashboard's data: every series, the queues, the trigger's settings, the state and
    recommendations (chalicelib/dashboard.py)."""
    return deps.dashboard.metrics(MetricsWindow.parse(_request().query_params))


@app.route("/health")
def health() -> Response:
    checks = deps.service.health()
    healthy = all(state == "ok" for state in checks.values())
    return Response(
        body={"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


@app.route("/whoami")
def whoami() -> dict[str, str]:
    """Which execution environment answered: the no-op route benchmarks compare against."""
    return runtime_info.describe_environment()


@app.route("/openapi.json")
def openapi_document() -> dict[str, Any]:
    """The API described as OpenAPI 3.1, from the task-type registry (chalicelib/openapi.py)."""
    return openapi.document()


@app.lambda_function(name="whoami")
def whoami_function(event: dict[str, object], context: object) -> dict[str, str]:
    """The same answer as GET /whoami, for a direct `lambda invoke`."""
    return runtime_info.describe_environment()


@app.schedule(Rate(1, unit=Rate.MINUTES), name="reconciler")
def reconciler(event: CloudWatchEvent) -> dict[str, int]:
    """Puts back the tasks the queue lost (chalicelib/reconciler.py); the deploy runs it once
    too, right after it deployed."""
    return deps.reconciler.run().to_json()


@app.on_sqs_message(
    queue=trigger.queue_name,
    batch_size=trigger.batch_size,
    maximum_batching_window_in_seconds=trigger.batching_window_seconds,
    maximum_concurrency=trigger.max_concurrency,
    name="worker",
)
def worker(event: SQSEvent) -> dict[str, Any]:
    return deps.worker.handle(event.to_dict(), event.context)
