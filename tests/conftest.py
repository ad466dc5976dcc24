"""Shared test setup: markers by folder, and no sockets in unit tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "e2e": pytest.mark.e2e,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test is marked after its folder, so `-m unit` / `-m "not integration"` just work."""
    for item in items:
        try:
            folder = item.path.relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])


class SocketUsedInUnitTest(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_sockets_in_unit_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Unit tests must not touch the network: any new socket fails the test."""
    if request.node.get_closest_marker("unit") is not None:

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise SocketUsedInUnitTest(
                "unit tests must not open sockets: use a fake, or move it to tests/integration"
            )

        monkeypatch.setattr(socket, "socket", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)
    yield
