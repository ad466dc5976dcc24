"""In-process stand-ins for the boto3 clients a scaling SQS mapping talks through.

The stock poller talks to SQS and Lambda through LocalStack's internal boto3 clients; during a
drain their round trips (botocore, the in-memory HTTP, the handler chain, both ways) were most
of LocalStack's CPU. `DirectSqs` and `DirectLambdaInvoker` take the same calls and answer them
from LocalStack's SQS provider and LambdaService in-process (the provider still does the SQS
work, counts its metrics and moves messages to dead-letter queues); the boto3 clients remain
the fallback. `DirectSqs` is also the mapping's `QueueWaiter`: it waits on the queue's own
arrival condition, as LocalStack's long poll does, but can be woken when the mapping stops.
What these rely on in LocalStack is checked by `localcloud_ext.seams.check_seams()`.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any

from localcloud_ext.batch_threads import WAIT_OVERRIDE_PARAM

LOG = logging.getLogger(__name__)

# Where the queue cannot be waited on (deleted, or LocalStack shutting it down), a waiter
# sleeps on the stop signal this long instead, so that its thread polls again, not spins.
UNWAITABLE_QUEUE_PAUSE_SECONDS = 0.5


class DirectLambdaInvoker:
    """Stands in for the boto3 Lambda client the stock sender invokes through: the same
    `invoke(FunctionName=ARN, Payload=..., InvocationType=...)` and response shape, answered by
    LocalStack's LambdaService in-process. The client's trip (botocore serialising, LocalStack's
    in-memory HTTP, handler chain and parser, and back) was a quarter of LocalStack's CPU while
    a mapping drained a backlog."""

    def __init__(self, lambda_service: Any) -> None:
        self._service = lambda_service

    def invoke(
        self, *, FunctionName: str, Payload: str, InvocationType: str, **extra: Any
    ) -> dict[str, Any]:
        from localstack.services.lambda_.api_utils import function_locators_from_arn
        from localstack.utils.strings import long_uid, to_bytes

        name, qualifier, account_id, region = function_locators_from_arn(FunctionName)
        request_id = long_uid()
        result = self._service.invoke(
            function_name=name,
            qualifier=extra.get("Qualifier", qualifier),
            region=region,
            account_id=account_id,
            invocation_type=InvocationType,
            client_context=None,
            request_id=request_id,
            payload=to_bytes(Payload),
            trace_context={},
            user_agent=None,
        )
        response: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": io.BytesIO(to_bytes(result.payload or b"")),
            "ExecutedVersion": result.executed_version,
            "ResponseMetadata": {"RequestId": request_id},
        }
        if result.is_error:
            response["FunctionError"] = "Unhandled"
        return response


class DirectSqs:
    """Stands in for the boto3 SQS client of a mapping's poller for the calls a batch makes
    (receive, delete, change visibility), answered by LocalStack's SQS provider in-process with
    the same parameters and response shapes; anything else goes to the client. Receive and
    delete through the client (botocore, LocalStack's in-memory HTTP, handler chain) were half
    of LocalStack's CPU while a mapping drained a backlog."""

    def __init__(self, provider: Any, client: Any, account_id: str, region: str) -> None:
        from localstack.aws.spec import load_service

        self._provider = provider
        self._client = client
        self._account_id = account_id
        self._region = region
        self._service_model = load_service("sqs")  # the provider reads its protocol
        self._wakes = 0  # wake_waiters() calls so far, counted under the queue's lock

    def receive_message(
        self,
        *,
        QueueUrl: str,
        MaxNumberOfMessages: int,
        WaitTimeSeconds: int,
        MessageAttributeNames: list[str],
        MessageSystemAttributeNames: list[str],
        sqs_override_max_message_count: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        result = self._provider.receive_message(
            self._context(
                count=sqs_override_max_message_count, wait=extra.get(WAIT_OVERRIDE_PARAM)
            ),
            queue_url=QueueUrl,
            message_attribute_names=MessageAttributeNames,
            message_system_attribute_names=MessageSystemAttributeNames,
            max_number_of_messages=MaxNumberOfMessages,
            wait_time_seconds=WaitTimeSeconds,
        )
        return {"Messages": result.get("Messages") or []}

    def delete_message_batch(
        self,
        *,
        QueueUrl: str,
        Entries: list[dict[str, Any]],
        sqs_override_max_message_count: int | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._provider.delete_message_batch(
            self._context(count=sqs_override_max_message_count), queue_url=QueueUrl, entries=Entries
        )
        return result

    def change_message_visibility_batch(
        self, *, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._provider.change_message_visibility_batch(
            self._context(), queue_url=QueueUrl, entries=Entries
        )
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    # --- the long poll's wait, interruptible (QueueWaiter) -------------------------------------

    def wait_for_messages(self, queue_url: str, timeout: float, stopped: threading.Event) -> None:
        """Wait as LocalStack's long poll does, on the queue's `visible` priority queue and its
        `not_empty` condition (notified by every message made visible: sent, delay over,
        visibility timeout over), without taking anything: a stop can end it at any moment and
        no message was received, so none goes back to the queue or towards maxReceiveCount."""
        visible = self._visible(queue_url)
        if visible is None or visible.is_shutdown:
            stopped.wait(UNWAITABLE_QUEUE_PAUSE_SECONDS)
            return
        arrived = visible.not_empty
        deadline = time.monotonic() + timeout
        with arrived:
            woken = self._wakes
            # len(visible.queue), not qsize(): qsize takes the lock `arrived` already holds
            while (
                not visible.queue
                and not visible.is_shutdown
                and not stopped.is_set()
                and self._wakes == woken
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                arrived.wait(remaining)
            if stopped.is_set() and visible.queue:
                # A sending thread's notify() wakes ONE waiter: this one will not receive, so
                # the wake-up goes on to another consumer's long poll.
                arrived.notify()

    def wake_waiters(self, queue_url: str) -> None:
        visible = self._visible(queue_url)
        if visible is not None:
            with visible.not_empty:
                self._wakes += 1  # ends this mapping's waits; other long polls wait on
                visible.not_empty.notify_all()

    def _visible(self, queue_url: str) -> Any:
        """The queue's visible messages (LocalStack's InterruptiblePriorityQueue), or None when
        the queue is gone or is not a standard queue."""
        try:
            queue = self._provider._resolve_queue(self._context(), queue_url=queue_url)
        except Exception:  # QueueDoesNotExist: the receive says so, this just does not wait
            return None
        return getattr(queue, "visible", None)

    def _context(self, count: int | None = None, wait: Any = None) -> Any:
        """What the provider reads of a request: account, region, protocol, and the headers of
        LocalStack's own overrides (more than 10 messages a receive, waiting for a full batch)."""
        from localstack.aws.api import RequestContext
        from localstack.http import Request
        from localstack.services.sqs.constants import (
            HEADER_LOCALSTACK_SQS_OVERRIDE_MESSAGE_COUNT,
            HEADER_LOCALSTACK_SQS_OVERRIDE_WAIT_TIME_SECONDS,
        )

        headers = {}
        if count and count > 10:
            headers[HEADER_LOCALSTACK_SQS_OVERRIDE_MESSAGE_COUNT] = str(count)
        if wait:
            headers[HEADER_LOCALSTACK_SQS_OVERRIDE_WAIT_TIME_SECONDS] = str(wait)
        context = RequestContext(Request("POST", "/", headers=headers))
        context.account_id = self._account_id
        context.region = self._region
        context.service = self._service_model
        return context


class PausingWaiter:
    """The waiter where the queue itself cannot be waited on (no SQS provider in-process):
    a pause on the stop signal, so an idle thread polls twice a second and stops at once."""

    def wait_for_messages(self, queue_url: str, timeout: float, stopped: threading.Event) -> None:
        stopped.wait(min(timeout, UNWAITABLE_QUEUE_PAUSE_SECONDS))

    def wake_waiters(self, queue_url: str) -> None:
        """The stop signal itself ends the pause."""
