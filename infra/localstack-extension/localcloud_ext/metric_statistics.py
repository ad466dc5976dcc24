"""CloudWatch statistics as AWS defines them, without LocalStack: which `Stat` strings exist,
which period a timestamp falls in, and nearest-rank percentiles over weighted values.

`cloudwatch_queries` feeds these with rows from LocalStack's metrics database; keeping them
free of LocalStack lets the unit tests check the arithmetic in milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
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


def percentile_query(rows: str) -> str:
    """SQL for the nearest-rank percentile per bucket over `rows`, a query of (bucket, value,
    count) rows: the smallest value whose cumulative count reaches percentile% of the bucket's
    total count. Computed in SQLite (a window function) rather than in Python: at a few hundred
    samples a second, a minute's latencies are tens of thousands of rows, which Python read and
    ranked in ~0.1 s per percentile. Takes percentile_parameters() after the rows' own. Rows
    with no count are left out, and so are buckets without any."""
    return (
        "SELECT bucket, MIN(value) FROM (SELECT bucket, value,"
        " SUM(count) OVER (PARTITION BY bucket ORDER BY value"
        " ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cumulative,"
        " SUM(count) OVER (PARTITION BY bucket) AS total"
        f" FROM ({rows}) WHERE count > 0)"
        " WHERE cumulative * ? >= total * ? GROUP BY bucket ORDER BY bucket"
    )


def percentile_parameters(percentile: Fraction) -> tuple[int, int]:
    """cumulative >= percentile / 100 * total, in whole numbers: p90 of 10 samples is rank 9
    exactly, not 9.000000000000002 rounded up to 10."""
    return 100 * percentile.denominator, percentile.numerator


def in_scan_order(
    ascending: list[tuple[int, float]], descending: bool
) -> dict[str, list[int] | list[float]]:
    """LocalStack's result shape, {"timestamps": [...], "values": [...]}, in the order asked."""
    points = ascending[::-1] if descending else ascending
    return {"timestamps": [t for t, _ in points], "values": [v for _, v in points]}


def value_counts(
    values: Sequence[float], counts: Sequence[float] | None
) -> list[tuple[float, float]]:
    """PutMetricData's Values/Counts (Counts default to 1 each) as (value, total count) per
    distinct value, in the order first seen; values with no count are left out."""
    totals: dict[float, float] = {}
    for index, value in enumerate(values):
        count = 1.0 if counts is None else float(counts[index])
        if count > 0:
            totals[float(value)] = totals.get(float(value), 0.0) + count
    return list(totals.items())
