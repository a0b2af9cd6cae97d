"""Hourly rollups of the results, so a report over weeks reads thousands of rows, not millions.

Two tables, one row per probe and hour (`rollup_hourly`) and per probe, hour and value
name of sql/reconcile results (`rollup_hourly_values`), filled by `roll_up` for every
whole hour that ended at least `ROLLUP_DELAY` ago (results are stored a little after
they start). `meta.rollup_until` says up to where hours are rolled up; a crash between
two hours leaves it consistent because each hour is written with that mark in one
transaction.

Latency is kept as a histogram with fixed logarithmic buckets (bucket `b` holds
latencies in [0.01 ms x 1.1^b, 0.01 ms x 1.1^(b+1))), so percentiles of any set of hours
are read back within 5 % of the exact value. Values keep runs, runs with a value above
0, the peak and the last value (top-level numeric values only: a nested name is read
from `results`).

Reports use the rollups for whole hours (`reports.data`); the partial hours at the
edges of a period and hours touched by a maintenance exclusion are read from `results`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import duckdb

from agent.store import _aware, _naive

ROLLUP_UNTIL = "rollup_until"  # meta key: hours before this are rolled up
ROLLUP_DELAY = timedelta(minutes=5)
HIST_BASE_MS = 0.01
HIST_RATIO = 1.1
HOUR = timedelta(hours=1)
INTEGRITY_KINDS = ("sql", "reconcile")

# The histogram bucket of `latency_ms` (NULL for results without a latency: `greatest`
# alone would skip the NULL and put them in bucket 0).
LATENCY_BUCKET = (
    "CASE WHEN latency_ms IS NOT NULL THEN "
    f"floor(ln(greatest(latency_ms, {HIST_BASE_MS}) / {HIST_BASE_MS}) / ln({HIST_RATIO}))::SMALLINT END"
)

_HOURLY = f"""
INSERT INTO rollup_hourly
SELECT hour, probe, any_value(kind), sum(total), sum(ok), sum(lat_n), sum(lat_sum),
       list(b ORDER BY b) FILTER (WHERE b IS NOT NULL),
       list(n ORDER BY b) FILTER (WHERE b IS NOT NULL)
FROM (
    SELECT date_trunc('hour', ts) AS hour, probe, any_value(kind) AS kind,
           {LATENCY_BUCKET} AS b,
           count(*) AS total, count(*) FILTER (WHERE status = 'ok') AS ok,
           count(latency_ms) AS lat_n, coalesce(sum(latency_ms), 0) AS lat_sum,
           count(latency_ms)::INTEGER AS n
    FROM results WHERE ts >= ? AND ts < ?
    GROUP BY ALL
)
GROUP BY hour, probe
"""

_VALUES = f"""
INSERT INTO rollup_hourly_values
SELECT hour, probe, name, count(*), count(*) FILTER (WHERE x > 0), max(x), arg_max(x, ts), max(ts)
FROM (
    SELECT date_trunc('hour', ts) AS hour, probe, ts, name,
           TRY_CAST(json_extract("values", '$."' || replace(name, '"', '\\"') || '"') AS DOUBLE) AS x
    FROM (
        SELECT ts, probe, "values", unnest(json_keys("values")) AS name
        FROM results
        WHERE ts >= ? AND ts < ? AND kind IN ({", ".join(f"'{k}'" for k in INTEGRITY_KINDS)})
    )
)
WHERE x IS NOT NULL
GROUP BY hour, probe, name
"""


def floor_hour(moment: datetime) -> datetime:
    """The start of the hour holding `moment`."""
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    """The first hour boundary at or after `moment`."""
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def rolled_until(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """Hours before this are in the rollups (aware UTC); None before the first roll-up."""
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [ROLLUP_UNTIL]).fetchall()
    return _aware(datetime.fromisoformat(rows[0][0])) if rows else None


def roll_up(con: duckdb.DuckDBPyConnection, now: datetime, *, max_hours: int = 24 * 400) -> int:
    """Roll up every whole hour that ended `ROLLUP_DELAY` before `now`; returns how many.

    Starts after the last rolled-up hour (or at the first result), one hour per
    transaction so memory stays small whatever the backlog.
    """
    end = floor_hour(now - ROLLUP_DELAY)
    start = rolled_until(con)
    if start is None:
        (first,) = con.execute("SELECT min(ts) FROM results").fetchall()[0]
        if first is None:
            return 0
        start = floor_hour(_aware(first) or first)
    done = 0
    hour = start
    while hour < end and done < max_hours:
        bounds = [_naive(hour), _naive(hour + HOUR)]
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DELETE FROM rollup_hourly WHERE hour = ?", bounds[:1])
            con.execute("DELETE FROM rollup_hourly_values WHERE hour = ?", bounds[:1])
            con.execute(_HOURLY, bounds)
            con.execute(_VALUES, bounds)
            con.execute(
                "INSERT OR REPLACE INTO meta (key, value, updated_at) VALUES (?, ?, now()::TIMESTAMP)",
                [ROLLUP_UNTIL, (hour + HOUR).isoformat()],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        hour += HOUR
        done += 1
    return done


def prune(con: duckdb.DuckDBPyConnection, before: datetime) -> int:
    """Delete rollups of hours before `before` (the results' retention)."""
    bound = [_naive(floor_hour(before))]
    deleted = con.execute("DELETE FROM rollup_hourly WHERE hour < ? RETURNING 1", bound).fetchall()
    con.execute("DELETE FROM rollup_hourly_values WHERE hour < ?", bound)
    return len(deleted)


def bucket_value(bucket: int) -> float:
    """The latency a histogram bucket stands for: its geometric middle (ms)."""
    value: float = HIST_BASE_MS * HIST_RATIO ** (bucket + 0.5)
    return value


def histogram_quantiles(
    counts: list[tuple[int, int]], fractions: tuple[float, ...]
) -> tuple[float | None, ...]:
    """Quantiles from (bucket, count) pairs sorted by bucket (ranks as `quantile_cont`)."""
    total = sum(n for _, n in counts)
    if total == 0:
        return tuple(None for _ in fractions)
    out: list[float | None] = []
    for fraction in fractions:
        rank = math.floor(fraction * (total - 1))  # 0-based, the lower neighbour
        seen = 0
        for bucket, n in counts:
            seen += n
            if seen > rank:
                out.append(bucket_value(bucket))
                break
    return tuple(out)
