"""The fork/restore protocol between LocalStack and a runtime template or SnapStart snapshot
(forkserver.py), on a fake channel: what a spawn returns, who hears of an exit, and what happens
when the server is gone."""

from __future__ import annotations

import queue
from typing import Any

import pytest

from localcloud_ext.forkserver import Forkserver, ForkserverGone


class FakeChannel:
    """Answers each spawn as a scripted server would; `end()` is the server going away."""

    def __init__(self, greeting: dict[str, Any]) -> None:
        self.sent: list[tuple[dict[str, Any], list[int]]] = []
        self.replies: list[list[dict[str, Any] | None]] = []  # per spawn, what the server says
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._inbox.put(greeting)
        self.closed = False

    def send(self, message: dict[str, Any], fds: list[int]) -> None:
        self.sent.append((message, fds))
        for reply in self.replies.pop(0) if self.replies else []:
            if reply is not None:
                reply = {**reply, "id": message["id"]} if "id" in reply else reply
            self._inbox.put(reply)

    def receive(self) -> dict[str, Any] | None:
        return self._inbox.get(timeout=10)

    def say(self, message: dict[str, Any] | None) -> None:
        self._inbox.put(message)

    def close(self) -> None:
        self.closed = True
        self._inbox.put(None)


class Exits:
    def __init__(self) -> None:
        self.statuses: queue.Queue[int | None] = queue.Queue()

    def __call__(self, status: int | None) -> None:
        self.statuses.put(status)

    def next(self) -> int | None:
        return self.statuses.get(timeout=10)


def server(channel: FakeChannel, killed: list[int] | None = None) -> Forkserver:
    return Forkserver(
        channel, "test server", kill_group=(killed if killed is not None else []).append
    )


def test_the_first_message_is_the_greeting() -> None:
    channel = FakeChannel({"op": "hello", "mount_namespaces": True, "reason": ""})

    greeting = server(channel).greeting(timeout=5)

    assert greeting == {"op": "hello", "mount_namespaces": True, "reason": ""}


def test_a_spawn_returns_the_pid_and_hands_over_the_request_and_descriptors() -> None:
    channel = FakeChannel({"op": "hello"})
    channel.replies.append([{"op": "spawned", "id": 0, "pid": 4242}])
    forkserver = server(channel)

    pid = forkserver.spawn({"op": "spawn", "env": {"A": "1"}}, [7], Exits())

    assert pid == 4242
    message, fds = channel.sent[0]
    assert message["env"] == {"A": "1"} and fds == [7]


def test_an_exit_right_after_the_spawn_reaches_its_callback() -> None:
    channel = FakeChannel({"op": "hello"})
    channel.replies.append(
        [{"op": "spawned", "id": 0, "pid": 11}, {"op": "exited", "pid": 11, "status": -9}]
    )
    exits = Exits()

    server(channel).spawn({"op": "spawn"}, [], exits)

    assert exits.next() == -9


def test_each_exit_reaches_only_its_own_process_callback() -> None:
    channel = FakeChannel({"op": "hello"})
    channel.replies += [
        [{"op": "spawned", "id": 0, "pid": 21}],
        [{"op": "spawned", "id": 0, "pid": 22}],
    ]
    forkserver = server(channel)
    first, second = Exits(), Exits()
    forkserver.spawn({"op": "spawn"}, [], first)
    forkserver.spawn({"op": "restore"}, [], second)

    channel.say({"op": "exited", "pid": 22, "status": 3})
    channel.say({"op": "exited", "pid": 999, "status": 0})  # not one of ours: ignored
    channel.say({"op": "exited", "pid": 21, "status": 0})

    assert second.next() == 3
    assert first.next() == 0


def test_a_failed_fork_raises_and_registers_nothing() -> None:
    channel = FakeChannel({"op": "hello"})
    channel.replies.append([{"op": "spawn_failed", "id": 0, "error": "out of memory"}])

    with pytest.raises(ForkserverGone, match="out of memory"):
        server(channel).spawn({"op": "spawn"}, [], Exits())


def test_when_the_server_is_gone_its_children_are_ended_and_reported_exited() -> None:
    channel = FakeChannel({"op": "hello"})
    channel.replies.append([{"op": "spawned", "id": 0, "pid": 31}])
    killed: list[int] = []
    forkserver = server(channel, killed)
    exits = Exits()
    forkserver.spawn({"op": "spawn"}, [], exits)

    channel.say(None)  # end of file: the template or snapshot died

    assert exits.next() is None
    assert killed == [31]
    assert not forkserver.alive
    with pytest.raises(ForkserverGone):
        forkserver.spawn({"op": "spawn"}, [], Exits())


def test_a_server_that_dies_before_its_greeting_is_not_ready() -> None:
    channel = FakeChannel({"op": "hello"})
    channel._inbox = queue.Queue()
    channel.say(None)

    with pytest.raises(ForkserverGone, match="before it was ready"):
        server(channel).greeting(timeout=5)


def test_closing_closes_the_channel() -> None:
    channel = FakeChannel({"op": "snapshot_ready"})
    forkserver = server(channel)

    forkserver.close()

    assert channel.closed and not forkserver.alive
