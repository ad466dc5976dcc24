"""Builds the app's objects once per execution environment, from the settings, on first use:
clients and the database connection are then reused by every later invocation in the same
environment. Tests assign their own objects to the attributes (they are cached properties)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from chalicelib.ports import TaskQueue, TaskStore
from chalicelib.postgres_store import PostgresTaskStore, conninfo_from_secret, read_secret
from chalicelib.service import TaskService
from chalicelib.settings import Settings
from chalicelib.sqs_queue import SqsTaskQueue
from chalicelib.task_types import TaskRunner
from chalicelib.worker import Worker


class Dependencies:
    def __init__(self, log: Logger) -> None:
        self.log = log

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env()

    @cached_property
    def boto3_session(self) -> boto3.session.Session:
        # Clients read the endpoint from the standard AWS_ENDPOINT_URL when it is set.
        return boto3.session.Session()

    def _client(self, service: str) -> Any:
        return self.boto3_session.client(service)

    @cached_property
    def queue(self) -> TaskQueue:
        s = self.settings
        return SqsTaskQueue(self._client("sqs"), s.task_queue_url, s.dead_letter_queue_url)

    @cached_property
    def store(self) -> TaskStore:
        secretsmanager = self._client("secretsmanager")

        def conninfo() -> str:
            return conninfo_from_secret(
                read_secret(secretsmanager, self.settings.database_secret_id)
            )

        return PostgresTaskStore(conninfo)

    @cached_property
    def service(self) -> TaskService:
        return TaskService(self.queue, self.store)

    @cached_property
    def worker(self) -> Worker:
        return Worker(self.store, TaskRunner(), self.settings.max_receives, self.log)
