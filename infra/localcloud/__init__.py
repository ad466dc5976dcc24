"""The local cloud: LocalStack (a host process in its own Python 3.13 venv) + PostgreSQL (RDS).

`scripts/setup` builds the venvs (``localcloud.install``); `scripts/localcloud up|down|status|logs`
runs them (``localcloud.cli``). This package must stay importable with the stdlib alone.

Its contract with the LocalStack extension (variable names, defaults, ranges, metric names) is
``localcloud_ext.contract``, a stdlib module of the extension's package: the extension is what
gets installed into LocalStack's venv, so the contract travels with it, and this package, which
only ever runs from the checkout, finds it in the folder beside its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

_EXTENSION_DIR = str(Path(__file__).resolve().parents[1] / "localstack-extension")
if _EXTENSION_DIR not in sys.path:  # appended: an installed localcloud_ext still comes first
    sys.path.append(_EXTENSION_DIR)
