"""SnapStart's runtime hooks: registered with AWS's library, they close the environment's
connections before the snapshot and reseed randomness after a restore."""

from __future__ import annotations

import random
from typing import Any

import pytest
import snapshot_restore_py

from chalicelib import snapstart


class Connections:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def prime(self) -> None:
        self.calls.append("prime")

    def close_connections(self) -> None:
        self.calls.append("close")


def test_the_hooks_are_registered_with_aws_s_library() -> None:
    connections = Connections()
    before: list[Any] = snapshot_restore_py._before_snapshot_registry
    after: list[Any] = snapshot_restore_py._after_restore_registry
    counts = (len(before), len(after))

    assert snapstart.register_hooks(connections)

    assert before[counts[0] :] == [(snapstart.before_snapshot, (connections,), {})]
    assert after[counts[1] :] == [(snapstart.after_restore, (connections,), {})]
    del before[counts[0] :], after[counts[1] :]


def test_before_the_snapshot_it_primes_then_closes_the_connections() -> None:
    connections = Connections()

    snapstart.before_snapshot(connections)

    assert connections.calls == ["prime", "close"]


def test_after_a_restore_each_environment_draws_its_own_random_numbers() -> None:
    random.seed(42)
    snapshot_state = random.getstate()
    restored = []
    for _ in range(2):  # two environments restored from the same snapshot
        random.setstate(snapshot_state)
        snapstart.after_restore(Connections())
        restored.append(random.random())

    assert restored[0] != restored[1]


def test_without_the_library_nothing_is_registered() -> None:
    assert not snapstart.register_hooks(Connections(), register=None)


def test_the_app_s_dependencies_close_their_connections() -> None:
    from aws_lambda_powertools import Logger

    from chalicelib.wiring import Dependencies
    from tests.fakes import InMemoryTaskStore

    class Closing(InMemoryTaskStore):
        closed = False

        def close(self) -> None:
            self.closed = True

    dependencies = Dependencies(Logger(service="test"))
    store = Closing()
    dependencies.store = store
    dependencies.close_connections()
    dependencies.close_connections()  # nothing built yet but the store: still fine

    assert store.closed


def test_priming_builds_the_worker_and_its_clients_without_a_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aws_lambda_powertools import Logger

    from chalicelib.wiring import Dependencies
    from tests.unit.test_app_settings import SETTINGS

    # As in a function's environment: its region and (the role's) credentials.
    runtime = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for name, value in {**SETTINGS, **runtime}.items():
        monkeypatch.setenv(name, value)
    dependencies = Dependencies(Logger(service="test"))

    dependencies.prime()  # unit tests open no socket: a call would fail here

    built = dependencies.__dict__
    assert {"worker", "store", "sqs", "cloudwatch", "metrics"} <= set(built)
