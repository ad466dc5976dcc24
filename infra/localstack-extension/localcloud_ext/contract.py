"""The contract between the local cloud's launcher (`infra/localcloud`) and this extension.

`infra/localcloud` validates these settings and hands them to LocalStack's process as
environment variables; the extension reads them there. Both import this one module, so a name,
a default or a range is written once. It lives in the extension's package because that is the
only part of the project installed into LocalStack's virtual environment; `infra/localcloud`
runs from the checkout and finds it beside itself (`localcloud/__init__.py`).

Standard library only: `infra/localcloud/install.py` imports it (through `settings.py`) with
the system Python before any virtual environment exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NumberSetting:
    """One environment variable holding a number, with its default and its allowed range."""

    variable: str
    default: float
    minimum: float
    maximum: float
    unit: str  # what the number counts, for messages: "batches a minute"
    integer: bool = False

    def parse(self, raw: str | None) -> float:
        """The value of `raw` (the variable's text), the default when unset or blank; a
        ValueError that names the variable, the range and the default otherwise."""
        if raw is None or raw.strip() == "":
            return self.default
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        whole = value.is_integer() if math.isfinite(value) else False
        if not (self.minimum <= value <= self.maximum) or (self.integer and not whole):
            kind = "a whole number" if self.integer else "a number"
            raise ValueError(
                f"{self.variable}={raw!r} must be {kind} of {self.unit} from "
                f"{self.minimum:g} to {self.maximum:g} (unset it for the default {self.default:g})"
            )
        return value

    def render(self, value: float) -> str:
        """As the variable's text, which `parse` reads back as `value`."""
        return str(int(value)) if self.integer else f"{value:g}"


# AWS: a mapping adds up to 300 concurrent batches a minute while its backlog lasts. A faster
# rate shows the same shape sooner (demos, tests); the maximum keeps a tick's step sane.
ESM_SCALE_UP_PER_MINUTE = NumberSetting(
    variable="LOCALCLOUD_ESM_SCALE_UP_PER_MINUTE",
    default=300.0,
    minimum=1.0,
    maximum=60_000.0,
    unit="batches a minute",
)

# AWS: 1,000 concurrent executions per account and Region, shared by every function (new
# accounts get less; 10 is the lowest AWS hands out). Lowering it shows throttling at a small
# scale. LocalStack enforces it as LAMBDA_LIMITS_CONCURRENT_EXECUTIONS.
ACCOUNT_CONCURRENCY = NumberSetting(
    variable="LOCALCLOUD_ACCOUNT_CONCURRENCY",
    default=1000,
    minimum=10,
    maximum=100_000,
    unit="concurrent executions",
    integer=True,
)

# AWS keeps 100 of its 1,000 unreserved: reserved concurrency may take the rest. A lower account
# limit keeps the same tenth (at least one), so that reserving still works at, say, 20.
AWS_MINIMUM_UNRESERVED_CONCURRENCY = 100


def minimum_unreserved_concurrency(account_concurrency: int) -> int:
    """What no function's reserved concurrency may take from the account's limit."""
    return max(1, min(AWS_MINIMUM_UNRESERVED_CONCURRENCY, account_concurrency // 10))


# Where the executor finds the managed runtimes, and where it writes its environments' pids.
RUNTIMES_DIR_VARIABLE = "LOCALCLOUD_RUNTIMES_DIR"
PIDS_DIR_VARIABLE = "LOCALCLOUD_PIDS_DIR"
# The cgroup v1 parents (memory, pids) under which each execution environment gets its own.
MEMORY_CGROUP_VARIABLE = "LOCALCLOUD_MEMORY_CGROUP"
PIDS_CGROUP_VARIABLE = "LOCALCLOUD_PIDS_CGROUP"
# The RDS stand-in's connection metrics: where the extension reads them (libpq connection
# strings; their password is in a password file, never here) and the names AWS/RDS gives them.
DB_METRICS_POSTGRES_VARIABLE = "LOCALCLOUD_DB_METRICS_POSTGRES"
DB_METRICS_PROXY_VARIABLE = "LOCALCLOUD_DB_METRICS_PROXY"
DB_INSTANCE_IDENTIFIER_VARIABLE = "LOCALCLOUD_DB_INSTANCE_IDENTIFIER"
DB_PROXY_NAME_VARIABLE = "LOCALCLOUD_DB_PROXY_NAME"

# AWS publishes no per-mapping concurrency: the scaling poller's gauges go to a namespace of the
# local cloud's own, by EventSourceMappingUUID, for the dashboard and the burst's report.
EVENT_SOURCE_MAPPING_NAMESPACE = "LocalCloud/EventSourceMapping"
EVENT_SOURCE_MAPPING_DIMENSION = "EventSourceMappingUUID"
CONCURRENT_BATCHES_METRIC = "ConcurrentBatches"  # the most batches in flight in each second
SCALING_TARGET_METRIC = "ScalingTarget"  # how many the policy allows at that moment
