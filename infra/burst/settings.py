"""What a burst sends, and the bounds that keep it a burst on one laptop. Every option is checked
before anything is sent; the problems are reported together, each with what to fix."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from burst.errors import BurstError
from chalicelib.task_types import TASK_TYPES, BurstOption, PayloadField
from chalicelib.validation import MAX_BATCH_TASKS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT_DIR = PROJECT_ROOT / ".localcloud" / "reports"  # git-ignored with .localcloud/

PROFILES = ("spike", "ramp", "steady")
MIX = "mix"
TASK_TYPE_CHOICES = (*TASK_TYPES, MIX)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# The full-scale spike (scripts/demo --full-scale) needs about 30,000 tasks to keep a backlog
# through the ramp to 1,000 batches; more would only lengthen the drain.
MAX_COUNT = 30_000
MAX_RATE = 2_000.0  # tasks per second; far above what this machine's API accepts
MAX_DURATION = 300.0
MAX_THREADS = 64
MAX_SECONDS = 600.0
MAX_DRAIN_SECONDS = 600.0

# Every task type's payload options (--ms, --rounds, ...), by setting name, with the payload
# field whose bounds they take: the registry says what they are.
PAYLOAD_OPTIONS: dict[str, tuple[BurstOption, PayloadField]] = {
    option.name: (option, next(f for f in task_type.fields if f.name == option.field))
    for task_type in TASK_TYPES.values()
    for option in task_type.burst_options
}


def default_payload_options() -> dict[str, float]:
    return {name: option.default for name, (option, _) in PAYLOAD_OPTIONS.items()}


@dataclass(frozen=True)
class BurstSettings:
    """One burst. `rate` is tasks per second (with `batch` > 1, requests go `batch` tasks at a
    time, so rate / batch requests per second)."""

    profile: str = "steady"
    count: int = 500
    rate: float = 50.0
    duration: float = 10.0
    task_type: str = "echo"
    # The task types' payload options by setting name ({"sleep_ms": 300}); those not given
    # take their registry default.
    payload_options: Mapping[str, float] = field(default_factory=default_payload_options)
    batch: int = 1
    threads: int = 16
    max_seconds: float = 120.0
    drain_seconds: float = 120.0
    out_dir: Path = DEFAULT_OUT_DIR
    seed: int = 7
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.payload_options) - set(PAYLOAD_OPTIONS))
        if unknown:
            raise ValueError(f"unknown payload options {unknown}: use {sorted(PAYLOAD_OPTIONS)}")
        merged = {**default_payload_options(), **self.payload_options}
        object.__setattr__(self, "payload_options", merged)  # frozen: set once, here

    def to_json(self) -> dict[str, Any]:
        """Flat, as a report holds it: each payload option beside the other settings."""
        values = asdict(self)
        values.update(values.pop("payload_options"))
        values["out_dir"] = str(self.out_dir)
        return values


def problems(settings: BurstSettings) -> list[str]:
    """Every setting out of bounds, each as `--option: what is wrong; what to use`."""
    found: list[str] = []

    def bounded(option: str, value: float, low: float, high: float, what: str = "") -> None:
        if not low <= value <= high:
            found.append(f"{option} {value:g} is out of range: use {low:g} to {high:g}{what}")

    if settings.profile not in PROFILES:
        found.append(f"--profile {settings.profile!r}: use one of {', '.join(PROFILES)}")
    if settings.task_type not in TASK_TYPE_CHOICES:
        found.append(f"--type {settings.task_type!r}: use one of {', '.join(TASK_TYPE_CHOICES)}")
    bounded("--count", settings.count, 1, MAX_COUNT)
    bounded("--rate", settings.rate, 0.1, MAX_RATE, " tasks per second")
    bounded("--duration", settings.duration, 0.1, MAX_DURATION, " seconds")
    for name, (option, payload_field) in PAYLOAD_OPTIONS.items():
        value = settings.payload_options[name]
        if not payload_field.accepts(value):
            found.append(f"{option.flag} {value:g}: {payload_field.rule} ({option.help})")
    bounded("--batch", settings.batch, 1, MAX_BATCH_TASKS, " tasks per request (1: POST /tasks)")
    bounded("--threads", settings.threads, 1, MAX_THREADS, " sender threads")
    bounded("--max-seconds", settings.max_seconds, 1, MAX_SECONDS)
    bounded("--drain-seconds", settings.drain_seconds, 0, MAX_DRAIN_SECONDS)
    if found:
        return found  # the checks below need sane values
    if settings.profile != "spike" and settings.duration > settings.max_seconds:
        found.append(
            f"--duration {settings.duration:g} s is longer than --max-seconds "
            f"{settings.max_seconds:g} s, which would cut the schedule short: raise "
            "--max-seconds or shorten --duration"
        )
    if settings.out_dir.exists() and not settings.out_dir.is_dir():
        found.append(f"--out {settings.out_dir} is a file: give a directory")
    return found


def check(settings: BurstSettings) -> None:
    found = problems(settings)
    if found:
        raise BurstError("nothing was sent; fix these settings:\n  " + "\n  ".join(found))


def check_loopback(url: str) -> None:
    """The burst only loads this machine: a URL elsewhere is refused, whatever wrote it."""
    host = urlparse(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise BurstError(
            f"the API URL {url} is not on loopback ({host}): the burst only loads this machine's "
            f"local cloud ({', '.join(sorted(LOOPBACK_HOSTS))}); nothing was sent"
        )


# --- the command line ----------------------------------------------------------------------


def add_arguments(
    parser: argparse.ArgumentParser, defaults: Mapping[str, Any] | None = None
) -> None:
    """The burst's options; `defaults` (BurstSettings field names) overrides the defaults,
    e.g. the demo's preset."""
    start = BurstSettings()
    base = {**start.__dict__, **start.payload_options, **(defaults or {})}
    add = parser.add_argument
    add(
        "--profile",
        choices=PROFILES,
        default=base["profile"],
        help="spike: all --count tasks due at once, sent as fast as --threads allow; "
        "ramp: the rate rises linearly from 0 to --rate over --duration; "
        "steady: --rate per second for --duration (default %(default)s)",
    )
    add(
        "--count",
        type=int,
        default=base["count"],
        help=f"tasks to send, at most (1..{MAX_COUNT}; default %(default)s)",
    )
    add(
        "--rate",
        type=float,
        default=base["rate"],
        help=f"target arrival rate, tasks/s (steady; ramp's peak; <= {MAX_RATE:g}; "
        "default %(default)s)",
    )
    add(
        "--duration",
        type=float,
        default=base["duration"],
        help=f"seconds of ramp or steady arrivals (<= {MAX_DURATION:g}; default %(default)s)",
    )
    add(
        "--type",
        dest="task_type",
        choices=TASK_TYPE_CHOICES,
        default=base["task_type"],
        help=f"task type; mix: {mix_in_words()} (default %(default)s)",
    )
    for name, (option, payload_field) in PAYLOAD_OPTIONS.items():
        add(
            option.flag,
            dest=name,
            type=int if payload_field.kind == "integer" else float,
            default=base[name],
            help=f"{option.help} ({payload_field.minimum}..{payload_field.maximum}; "
            "default %(default)s)",
        )
    add(
        "--batch",
        type=int,
        default=base["batch"],
        help=f"tasks per request: 1 sends POST /tasks, 2..{MAX_BATCH_TASKS} POST /tasks/batch "
        "(single POSTs go at ~75/s here: use --batch for big spikes; default %(default)s)",
    )
    add(
        "--threads",
        type=int,
        default=base["threads"],
        help=f"sender threads, the most requests in flight (1..{MAX_THREADS}; default %(default)s)",
    )
    add(
        "--max-seconds",
        type=float,
        default=base["max_seconds"],
        help=f"stop sending after this; what is not sent by then is skipped "
        f"(<= {MAX_SECONDS:g}; default %(default)s)",
    )
    add(
        "--drain-seconds",
        type=float,
        default=base["drain_seconds"],
        help="after sending, wait this long at most for every accepted task to be done or "
        f"failed (<= {MAX_DRAIN_SECONDS:g}; default %(default)s)",
    )
    add(
        "--out",
        dest="out_dir",
        type=Path,
        default=base["out_dir"],
        help="directory for burst-<run id>.json and .png (default %(default)s)",
    )
    add(
        "--seed",
        type=int,
        default=base["seed"],
        help="seed of the mix's random choice (default %(default)s)",
    )
    add(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=base["progress"],
        help="no progress bar on stderr",
    )


def mix_in_words() -> str:
    """`60%% echo, 30%% sleep, 10%% cpu`, from the registry's mix weights (%% for argparse)."""
    weights = {t.name: t.mix_weight for t in TASK_TYPES.values() if t.mix_weight > 0}
    total = sum(weights.values())
    return ", ".join(f"{round(100 * weight / total)}%% {name}" for name, weight in weights.items())


def from_args(args: argparse.Namespace) -> BurstSettings:
    names = [name for name in BurstSettings.__dataclass_fields__ if name != "payload_options"]
    return BurstSettings(
        **{name: getattr(args, name) for name in names},
        payload_options={name: getattr(args, name) for name in PAYLOAD_OPTIONS},
    )
