"""CloudWatch statistics as AWS defines them, without LocalStack: which `Stat` strings exist,
which period a timestamp falls in, and nearest-rank percentiles over weighted values.

`cloudwatch_queries` feeds these with rows from LocalStack's metrics database; keeping them
free of LocalStack lets the unit tests check the arithmetic in milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

# The statistics LocalStack's SQL computes itself (stock semantics).
BASIC_STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
# `p99`, `p99.9`, `p50.125`: AWS's percentile syntax (0 < N <= 100).
PERCENTILE = re.compile(r"p(\d{1,3}(?:\.\d+)?)")


class UnsupportedStatistic(ValueError):
    """A `Stat` that is neither a basic statistic nor a percentile AWS would accept."""


@dataclass(frozen=True)
class Statistic:
    """A parsed `Stat`: `name` is the basic statistic, or `percentile` is set (name "pNN")."""

    name: str
    percentile: Fraction | None = None


def parse_statistic(stat: str | None) -> Statistic:
    """`Stat` -> Statistic. Percentiles are kept as exact fractions, so that p90 of 10 values
    is rank 9 and not 9.000000000000002 rounded up to 10."""
    if stat in BASIC_STATISTICS:
        return Statistic(stat)
    match = PERCENTILE.fullmatch(stat or "")
    if match is not None:
        percentile = Fraction(match.group(1))
        if 0 < percentile <= 100:
            return Statistic(stat or "", percentile)
    raise UnsupportedStatistic(f"The value {stat} for parameter MetricStat.Stat is not supported.")


def window_end(start: int, end: int, period: int) -> int:
    """End of the last period that starts before `end`. LocalStack queries whole periods
    (start, start + period, ... while < end), so the last one may reach past `end`."""
    if end <= start:
        return start
    return start + math.ceil((end - start) / period) * period


def bucket_of(timestamp: int, start: int, period: int) -> int:
    """Start of the period `timestamp` (>= start) falls in."""
    return start + (timestamp - start) // period * period


def nearest_rank(values: Iterable[tuple[float, float]], percentile: Fraction) -> float | None:
    """Nearest-rank percentile of (value, count) pairs sorted by value: the smallest value whose
    cumulative count reaches percentile% of the total count. None when the total is zero."""
    pairs = [(value, count) for value, count in values if count > 0]
    total = sum(Fraction(count) for _, count in pairs)
    if total == 0:
        return None
    rank = percentile * total / 100
    cumulative = Fraction(0)
    for value, count in pairs:
        cumulative += Fraction(count)
        if cumulative >= rank:
            return value
    return pairs[-1][0]


def percentiles_by_bucket(
    rows: Iterable[tuple[int, float, float]], percentile: Fraction
) -> Iterator[tuple[int, float]]:
    """(bucket, value, count) rows sorted by bucket then value -> (bucket, percentile) per
    bucket, ascending; buckets whose counts add up to zero are left out."""
    current: int | None = None
    pairs: list[tuple[float, float]] = []
    for bucket, value, count in rows:
        if bucket != current:
            if current is not None and (result := nearest_rank(pairs, percentile)) is not None:
                yield current, result
            current, pairs = bucket, []
        pairs.append((value, count))
    if current is not None and (result := nearest_rank(pairs, percentile)) is not None:
        yield current, result


def in_scan_order(
    ascending: list[tuple[int, float]], descending: bool
) -> dict[str, list[int] | list[float]]:
    """LocalStack's result shape, {"timestamps": [...], "values": [...]}, in the order asked."""
    points = ascending[::-1] if descending else ascending
    return {"timestamps": [t for t, _ in points], "values": [v for _, v in points]}
