"""The app's own exceptions. Adapters translate botocore/psycopg errors into these
(`raise ... from e`); routes map them to HTTP statuses. Nothing matches on message strings."""

from __future__ import annotations


class TaskError(Exception):
    """Base of the app's errors."""


class InvalidRequest(TaskError):
    """A client's mistake in the request; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class RequestTooLarge(TaskError):
    """The body or one task exceeds what the API accepts (a 413)."""


class TaskNotFound(TaskError):
    """No task has this id."""


class IdempotencyConflict(TaskError):
    """An idempotency key reused for a different task."""


class DependencyUnavailable(TaskError):
    """SQS or PostgreSQL did not answer; the request changed nothing and may be retried."""


class RequestNotFinished(TaskError):
    """The API could not take all of a request's tasks (SQS refused one, or its time ran out):
    it withdrew all of them; a retry with the same idempotency keys starts afresh (a 503)."""


class MalformedMessage(TaskError):
    """An SQS message that is not a task message: retrying cannot fix it, the DLQ keeps it."""


class TaskFailed(TaskError):
    """The task itself failed (a `fail` task, an unlucky `flaky` one); SQS retries it."""


class SettingMissing(TaskError):
    """A required environment variable is missing or invalid; the deploy sets it."""


class TaskDeferred(TaskFailed):
    """Too little of the invocation's time is left to run the task: SQS retries it."""


class TaskNotCommitted(TaskError):
    """The task's API request has stored it but not yet committed it: try again shortly."""


class PermanentTaskFailure(TaskFailed):
    """The message can never succeed, however often it is retried: an unknown task type, a
    payload its type refuses. The worker fails it at once, with this reason, and retries
    nothing (no crash loop, no retry storm)."""
