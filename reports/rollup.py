"""Report figures from the hourly rollups (`agent.store_rollup`) plus `results` at the edges.

`plan()` splits a period into whole hours that the rollups hold and ranges read from
`results`: the partial hours at both ends, hours not rolled up yet, and every hour an
exclusion (maintenance window, incident in maintenance) touches, so exclusions stay
exact. It answers None, and the report reads `results` as before, when the rollups
hold fewer than `MIN_ROLLUP_ROWS` results of the period: short reports stay exact.

What changes with rollups: latency percentiles come from the hourly histograms (within
5 %; the report says they are estimates), a sparkline bucket's latency is the mean
rather than the median, and an hour is drawn in the chart bucket it starts in.
Counts, availability, exclusions and integrity figures are the same as from `results`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from agent.store_rollup import (
    HOUR,
    LATENCY_BUCKET,
    ceil_hour,
    floor_hour,
    histogram_quantiles,
    rolled_until,
)

# Below this many results in the rolled-up hours, reading `results` is fast and exact.
MIN_ROLLUP_ROWS = 2_000_000
Range = tuple[datetime, datetime]  # naive UTC [start, end)


@dataclass(frozen=True)
class Plan:
    """Which parts of a period come from the rollups and which from `results`."""

    hours: list[Range]
    raw: list[Range]
    rows: int  # results in `hours`


def _naive(moment: datetime) -> datetime:
    return moment if moment.tzinfo is None else moment.replace(tzinfo=None)


def ranges(spans: Sequence[Range], column: str) -> tuple[str, list[Any]]:
    """A SQL condition true inside any of `spans` ("false" for none), and its parameters."""
    if not spans:
        return "false", []
    sql = " OR ".join(f"({column} >= ? AND {column} < ?)" for _ in spans)
    return f"({sql})", [bound for span in spans for bound in span]


def top_level(name: str) -> bool:
    """A value name the rollups keep (not a nested path)."""
    return not any(c in name for c in '.["')


def plan(
    con: duckdb.DuckDBPyConnection,
    period: Any,
    exclusions: Sequence[tuple[datetime, datetime, str, bool]],
    *,
    min_rows: int | None = None,
) -> Plan | None:
    """Split `period` into rolled-up hours and raw ranges; None to read `results` only."""
    until = rolled_until(con)
    if until is None:
        return None
    start, end = _naive(period.start), _naive(period.end)
    first, last = ceil_hour(start), min(floor_hour(end), _naive(until))
    if first >= last:
        return None
    blocked: list[Range] = []
    for s, e, _, _ in sorted(exclusions):
        if e <= first or s >= last:
            continue
        span = (floor_hour(max(s, first)), min(ceil_hour(e), last))
        if blocked and span[0] <= blocked[-1][1]:
            blocked[-1] = (blocked[-1][0], max(blocked[-1][1], span[1]))
        else:
            blocked.append(span)
    hours: list[Range] = []
    cursor = first
    for s, e in blocked:
        if s > cursor:
            hours.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < last:
        hours.append((cursor, last))
    if not hours:
        return None
    where, params = ranges(hours, "hour")
    (rows,) = con.execute(
        f"SELECT coalesce(sum(total), 0) FROM rollup_hourly WHERE {where}", params
    ).fetchall()[0]
    if int(rows) < (MIN_ROLLUP_ROWS if min_rows is None else min_rows):
        return None
    raw = [r for r in [(start, first), *blocked, (last, end)] if r[0] < r[1]]
    return Plan(hours=hours, raw=raw, rows=int(rows))


def _bucket(column: str) -> str:
    return f"least(floor(epoch({column} - ?::TIMESTAMP) / ?)::INTEGER, ? - 1)"


def per_probe(
    con: duckdb.DuckDBPyConnection,
    period: Any,
    the_plan: Plan,
    exclusion: tuple[str, list[Any]],
    *,
    buckets: int,
    latency: bool = True,
) -> tuple[dict[str, tuple[Any, ...]], dict[tuple[str, int], tuple[Any, ...]]]:
    """The rows `reports.data._per_probe` gives, from the rollups and the raw ranges.

    Per probe: (probe, total, ok, excluded, p50, p95, p99); per (probe, bucket):
    (probe, bucket, total, ok, mean latency). `exclusion` is the SQL condition (and its
    parameters) marking excluded results, applied to the raw ranges.
    """
    start = _naive(period.start)
    bucket_s = period.length.total_seconds() / buckets
    head = [start, bucket_s, buckets]
    hours, hour_params = ranges(the_plan.hours, "hour")
    raw, raw_params = ranges(the_plan.raw, "ts")
    condition, condition_params = exclusion
    # (probe, bucket) -> [total, ok, excluded, latency sum, latency count]
    acc: dict[tuple[str, int], list[float]] = {}
    for probe, bucket, total, ok, excluded, lat_sum, lat_n in (
        con.execute(
            f"SELECT probe, {_bucket('hour')}, sum(total), sum(ok), 0, sum(latency_sum), "
            f"sum(latency_n) FROM rollup_hourly WHERE {hours} GROUP BY ALL",
            [*head, *hour_params],
        ).fetchall()
        + con.execute(
            f"""
        WITH c AS (
            SELECT probe, status, latency_ms, {_bucket("ts")} AS bucket, {condition} AS excluded
            FROM results WHERE {raw}
        )
        SELECT probe, bucket,
               count(*) FILTER (WHERE NOT excluded),
               count(*) FILTER (WHERE NOT excluded AND status = 'ok'),
               count(*) FILTER (WHERE excluded),
               coalesce(sum(latency_ms) FILTER (WHERE NOT excluded), 0),
               count(latency_ms) FILTER (WHERE NOT excluded)
        FROM c GROUP BY ALL
        """,
            [*head, *condition_params, *raw_params],
        ).fetchall()
    ):
        row = acc.setdefault((probe, bucket), [0, 0, 0, 0.0, 0])
        for i, value in enumerate((total, ok, excluded, lat_sum, lat_n)):
            row[i] += value
    histograms: dict[str, dict[int, int]] = {}
    if latency:
        for probe, bucket, count in (
            con.execute(
                f"""
            SELECT probe, b, sum(n) FROM (
                SELECT probe, unnest(latency_buckets) AS b, unnest(latency_counts) AS n
                FROM rollup_hourly WHERE {hours}
            ) GROUP BY ALL
            """,
                hour_params,
            ).fetchall()
            + con.execute(
                f"""
            SELECT probe, {LATENCY_BUCKET} AS b, count(*) FROM results
            WHERE ({raw}) AND latency_ms IS NOT NULL AND NOT ({condition}) GROUP BY ALL
            """,
                [*raw_params, *condition_params],
            ).fetchall()
        ):
            per = histograms.setdefault(probe, {})
            per[bucket] = per.get(bucket, 0) + int(count)
    per_bucket: dict[tuple[str, int], tuple[Any, ...]] = {}
    totals: dict[str, list[int]] = {}
    for (probe, bucket), (total, ok, excluded, lat_sum, lat_n) in acc.items():
        mean = lat_sum / lat_n if lat_n else None
        per_bucket[(probe, bucket)] = (probe, bucket, int(total), int(ok), mean)
        t = totals.setdefault(probe, [0, 0, 0])
        t[0], t[1], t[2] = t[0] + int(total), t[1] + int(ok), t[2] + int(excluded)
    rows: dict[str, tuple[Any, ...]] = {}
    for probe, (total, ok, excluded) in totals.items():
        hist = sorted(histograms.get(probe, {}).items())
        p50, p95, p99 = (
            histogram_quantiles(hist, (0.5, 0.95, 0.99)) if latency else (None, None, None)
        )
        rows[probe] = (probe, total, ok, excluded, p50, p95, p99)
    return rows, per_bucket


def integrity(
    con: duckdb.DuckDBPyConnection,
    period: Any,
    the_plan: Plan,
    names: Sequence[str],
    bucket_s: float,
    buckets: int,
) -> list[tuple[Any, ...]]:
    """Rows like `reports.data._INTEGRITY`'s for the rolled-up hours:
    (name index, probe, bucket, runs, found, last, peak, last ts)."""
    hours, hour_params = ranges(the_plan.hours, "hour")
    index = {name: i for i, name in enumerate(names)}
    rows = con.execute(
        f"SELECT name, probe, {_bucket('hour')}, sum(runs), sum(found), arg_max(last, last_ts), "
        f"max(peak), max(last_ts) FROM rollup_hourly_values "
        f"WHERE ({hours}) AND name IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL",
        [_naive(period.start), bucket_s, buckets, *hour_params, list(names)],
    ).fetchall()
    return [(index[r[0]], *r[1:]) for r in rows]


__all__ = ["HOUR", "MIN_ROLLUP_ROWS", "Plan", "integrity", "per_probe", "plan", "ranges"]
