"""The TaskStore contract (tests/contract.py), against the in-memory store the other unit
tests rely on."""

from __future__ import annotations

import pytest

from tests.contract import TaskStoreContract
from tests.fakes import InMemoryTaskStore


class TestInMemoryTaskStore(TaskStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryTaskStore:
        return InMemoryTaskStore()
