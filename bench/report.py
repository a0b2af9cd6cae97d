"""How long a report takes over a big store: 1,000 probes every 30 s for 30 days (86M results).

Run with `.venv/bin/python bench/report.py` (`--probes`, `--days`, `--every` to scale
down; `--keep PATH` to reuse a generated store). It fills a fresh store with synthetic
results straight in SQL (1 % failing, latencies 5-500 ms, 5 % of probes `sql` with a
`stuck` value), a few incidents, then times `reports.data.collect` for the whole period
on the agent's own connection (threads = 1, memory_limit = 64MB) without the replay
(which reads every result into Python and is only meant for short periods), and prints
the time of each section.

Before timing, it rolls the results up by hour (`agent.store_rollup.roll_up`, what the
agent's `report-rollups` job does every 10 minutes; here a one-off backfill, timed
separately), so the report reads whole hours from the rollups and only the last,
not yet rolled-up hour from `results`. `--check` also times the same sections read from
`results` only and prints how far the figures are apart.

Target: < 5 s for the full size. Prints the load average before the run ("other load").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from agent import store_rollup
from agent.store import Store
from reports import data as report_data
from reports import rollup
from reports.data import Period, ReportRequest

_FILL = """
INSERT INTO results (ts, probe, kind, status, duration_ms, latency_ms, "values", detail)
SELECT ?::TIMESTAMP + to_seconds(t * ?) AS ts,
       'probe-' || p AS probe,
       CASE WHEN p % 20 = 0 THEN 'sql' ELSE 'http' END AS kind,
       CASE WHEN hash(p, t) % 100 = 0 THEN 'fail' ELSE 'ok' END AS status,
       1.0,
       5 + (hash(t, p) % 495)::DOUBLE AS latency_ms,
       CASE WHEN p % 20 = 0 THEN '{"stuck": ' || (hash(p, t) % 100 = 0)::INTEGER || '}'
            ELSE '{}' END::JSON,
       ''
FROM range(?, ?) AS ts_range(t), range(?) AS probes(p)
"""


def fill(
    con: duckdb.DuckDBPyConnection, start: datetime, probes: int, runs: int, every: int
) -> None:
    con.execute("SET threads = 8")
    con.execute("SET memory_limit = '4GB'")
    step = 2000
    for first in range(0, runs, step):
        con.execute(
            _FILL, [start.replace(tzinfo=None), every, first, min(first + step, runs), probes]
        )
    con.execute("CHECKPOINT")
    con.execute("SET threads = 1")
    con.execute("SET memory_limit = '64MB'")


def compare(con: duckdb.DuckDBPyConnection, request: ReportRequest) -> None:
    """Print how far the rollup figures are from the raw ones (and the raw path's time)."""
    fast = report_data.availability(con, request)
    fast_values = report_data.integrity(con, request)
    saved = rollup.MIN_ROLLUP_ROWS
    rollup.MIN_ROLLUP_ROWS = 1 << 62  # never plan: read `results` only
    try:
        began = time.perf_counter()
        slow = report_data.availability(con, request)
        print(f"raw availability + latency: {time.perf_counter() - began:.2f} s")
        began = time.perf_counter()
        slow_values = report_data.integrity(con, request)
        print(f"raw integrity: {time.perf_counter() - began:.2f} s")
    finally:
        rollup.MIN_ROLLUP_ROWS = saved
    assert fast_values == slow_values, "integrity figures differ"
    worst = {"availability": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
    for a, b in zip(fast.probes, slow.probes, strict=True):
        assert a.probe == b.probe and a.total == b.total and a.ok == b.ok
        worst["availability"] = max(
            worst["availability"], abs((a.availability or 0) - (b.availability or 0))
        )
        for key in ("p50", "p95", "p99"):
            x, y = getattr(a, f"{key}_ms"), getattr(b, f"{key}_ms")
            if x is not None and y:
                worst[key] = max(worst[key], abs(x - y) / y)
    print(
        "rollup vs raw: counts and integrity values equal; worst availability difference "
        f"{worst['availability']:.6f} pp; worst latency differences "
        + ", ".join(f"{k} {v:.1%}" for k, v in worst.items() if k != "availability")
        + " (raw percentiles are sampled above 2M results)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--every", type=int, default=30, help="seconds between runs")
    parser.add_argument("--keep", type=Path, help="store file to create or reuse")
    parser.add_argument(
        "--check", action="store_true", help="compare with the figures read from results only"
    )
    args = parser.parse_args()

    end = datetime(2026, 11, 1, tzinfo=UTC)
    start = end - timedelta(days=args.days)
    runs = int(args.days * 86400 / args.every)
    load1, load5, _ = os.getloadavg()
    print(
        f"other load before the run: loadavg {load1:.2f} (1 min) {load5:.2f} (5 min), {os.cpu_count()} cpus"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.duckdb"
        existed = path.exists()
        store = Store.open(path)
        try:
            if not existed:
                began = time.perf_counter()
                await store.run(
                    lambda con: fill(con, start, args.probes, runs, args.every), write=True
                )
                print(
                    f"filled {args.probes * runs:,} results in {time.perf_counter() - began:.1f} s"
                )
            began = time.perf_counter()
            hours = await store.run(lambda con: store_rollup.roll_up(con, end), write=True)
            if hours:
                print(
                    f"rolled up {hours} hours (one-off backfill; the agent does it hourly) in "
                    f"{time.perf_counter() - began:.1f} s"
                )
            request = ReportRequest(period=Period(start=start, end=end), slo={"*": 99.5})
            timings: dict[str, float] = {}

            def timed(name: str, fn: object) -> None:
                began = time.perf_counter()
                assert callable(fn)
                fn()
                timings[name] = time.perf_counter() - began

            def sections(con: duckdb.DuckDBPyConnection) -> None:
                timed(
                    "availability + latency (both periods)",
                    lambda: report_data.availability(con, request),
                )
                timed("incidents", lambda: report_data.incidents(con, request))
                timed("integrity", lambda: report_data.integrity(con, request))
                timed("noise (no replay)", lambda: report_data.noise(con, request, None))
                timed("healing", lambda: report_data.healing(con, request))

            began = time.perf_counter()
            await store.run(sections)
            total = time.perf_counter() - began
            if args.check:  # the figures from the rollups against those from `results` only
                await store.run(lambda con: compare(con, request))
        finally:
            await store.close()
    for name, seconds in timings.items():
        print(f"{name:<40} {seconds:8.2f} s")
    print(f"{'total':<40} {total:8.2f} s  ({args.probes * runs:,} results)")


if __name__ == "__main__":
    asyncio.run(main())
