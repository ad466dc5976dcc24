"""The local cloud: LocalStack (a host process in its own Python 3.13 venv) + PostgreSQL (RDS).

`scripts/setup` builds the venvs (``localcloud.install``); `scripts/localcloud up|down|status|logs`
runs them (``localcloud.cli``). This package must stay importable with the stdlib alone.
"""
