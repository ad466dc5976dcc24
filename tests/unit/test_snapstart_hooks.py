"""SnapStart's runtime hooks: registered with AWS's library, they close the environment's
connections before the snapshot and reseed randomness after a restore."""

from __future__ import annotations

import random
from typing import Any

import snapshot_restore_py

from chalicelib import snapstart


class Connections:
    def __init__(self) -> None:
        self.closed = 0

    def close_connections(self) -> None:
        self.closed += 1


def test_the_hooks_are_registered_with_aws_s_library() -> None:
    connections = Connections()
    before: list[Any] = snapshot_restore_py._before_snapshot_registry
    after: list[Any] = snapshot_restore_py._after_restore_registry
    counts = (len(before), len(after))

    assert snapstart.register_hooks(connections)

    assert before[counts[0] :] == [(snapstart.before_snapshot, (connections,), {})]
    assert after[counts[1] :] == [(snapstart.after_restore, (connections,), {})]
    del before[counts[0] :], after[counts[1] :]


def test_before_the_snapshot_the_connections_are_closed() -> None:
    connections = Connections()

    snapstart.before_snapshot(connections)

    assert connections.closed == 1


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
