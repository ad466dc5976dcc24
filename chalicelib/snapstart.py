"""Lambda SnapStart's runtime hooks (AWS's Snapshot Restore for Python, `snapshot_restore_py`).

With SnapStart (the deploy turns it on for the worker's published versions), Lambda runs the
init once per version, snapshots the process, and starts each execution environment as a
restore of that snapshot: whatever the init left open is shared by every restored copy. So
before the snapshot the environment's connections are closed (the database's, the AWS clients'
HTTP pools: they reopen on first use, in each environment for itself), and after a restore the
random number generator is reseeded, which would otherwise give every environment the same
sequence. `uuid.uuid4` and `secrets` read the OS's entropy and need nothing.

AWS's managed Python runtimes ship `snapshot_restore_py`; it is not in requirements.txt (the
functions do not vendor it) and a runtime without it (no SnapStart there) just registers no
hooks."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Register = Callable[..., Any]
try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # not a SnapStart runtime: no hooks would run anyway
    _REGISTER: tuple[Register, Register] | None = None
else:
    _REGISTER = (register_before_snapshot, register_after_restore)


class Connections(Protocol):
    def prime(self) -> None: ...

    def close_connections(self) -> None: ...


def before_snapshot(connections: Connections) -> None:
    # Priming, as AWS advises for SnapStart: what every invocation builds anyway (the AWS
    # clients and their service models, the worker) is built once, in the snapshot, and shared
    # by every restored environment instead of being rebuilt, some 20 MB each, in each of them.
    connections.prime()
    connections.close_connections()
    logger.info("before the snapshot: primed, connections closed; they reopen on first use")


def after_restore(connections: Connections) -> None:
    random.seed()  # each restored environment its own sequence
    connections.close_connections()  # none should be open; one copied from the snapshot is dead
    logger.info("after the restore: randomness reseeded")


def register_hooks(
    connections: Connections, register: tuple[Register, Register] | None = _REGISTER
) -> bool:
    """Register the hooks with SnapStart's library, where the runtime has it; True if so."""
    if register is None:
        return False
    register_before, register_after = register
    register_before(before_snapshot, connections)
    register_after(after_restore, connections)
    return True
