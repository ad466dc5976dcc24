"""CloudWatch statistics as AWS defines them, without LocalStack: which `Stat` strings exist,
where a window ends, and nearest-rank percentiles over weighted values.

`cloudwatch_queries` feeds these with rows from LocalStack's metrics database; keeping them
free of LocalStack lets the unit tests check the arithmetic in milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
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


def percentile_rows_query(rows: str) -> str:
    """SQL for what percentiles are ranked from: (bucket, value, count) per distinct value of
    each bucket, sorted, over `rows`, a query of (bucket, value, count) rows; rows with no count
    are left out. One such read serves every percentile of the metric asked in one request
    (`cloudwatch_queries.shared_percentile_rows`)."""
    return (
        f"SELECT bucket, value, SUM(count) FROM ({rows}) WHERE count > 0"
        " GROUP BY bucket, value ORDER BY bucket, value"
    )


def nearest_rank(pairs: Sequence[tuple[float, float]], percentile: Fraction) -> float | None:
    """Nearest-rank percentile of (value, count) pairs sorted by value: the smallest value whose
    cumulative count reaches percentile% of the total count. None when there is no count.
    Compared as cumulative * 100 * den >= total * num: p90 of 10 samples is rank 9 exactly,
    not 9.000000000000002 rounded up to 10."""
    total = sum(count for _, count in pairs)
    if total <= 0:
        return None
    scale, threshold = 100 * percentile.denominator, total * percentile.numerator
    cumulative = 0.0
    for value, count in pairs:
        cumulative += count
        if cumulative * scale >= threshold:
            return value
    return pairs[-1][0]


def percentiles_by_bucket(
    rows: Iterable[tuple[int, float, float]], percentile: Fraction
) -> list[tuple[int, float]]:
    """(bucket, value, count) rows sorted by bucket then value -> (bucket, percentile) per
    bucket, ascending; buckets without counts are left out."""
    points: list[tuple[int, float]] = []
    current: int | None = None
    pairs: list[tuple[float, float]] = []

    def close() -> None:
        if current is not None and (result := nearest_rank(pairs, percentile)) is not None:
            points.append((current, result))

    for bucket, value, count in rows:
        if bucket != current:
            close()
            current, pairs = bucket, []
        pairs.append((value, count))
    close()
    return points


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
