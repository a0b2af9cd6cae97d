"""Ingest speed of the store: results/s through the Store API, flush times, file size.

Run with `.venv/bin/python bench/store_ingest.py` (`--help` for options). Three numbers:

1. the Store API end to end: `append()` N results (default 200,000) from the event loop,
   in bursts of 1,000 with a yield between them as probes would, then `flush()`; the
   writer converts and appends them on its worker thread;
2. the raw DuckDB appender on rows already converted (what the engine alone costs);
3. `executemany` INSERT of the same converted rows (default 20,000), the alternative.

The results are synthetic but shaped like real ones: nested values, one in ten failing
with its failed expectations, one in a hundred carrying evidence rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb

from agent.results import ProbeResult, Status, utcnow
from agent.store import _RESULT_INSERT_COLUMNS, Store, _row
from agent.store_schema import MIGRATIONS


def sample_results(count: int) -> list[ProbeResult]:
    """`count` distinct results shaped like a mix of http, sql and host probes."""
    now = utcnow()
    results = []
    for i in range(count):
        failing = i % 10 == 0
        results.append(
            ProbeResult(
                probe=f"probe-{i % 50}",
                kind=("http", "sql", "host")[i % 3],
                started_at=now + timedelta(milliseconds=i),
                scheduled_at=now + timedelta(milliseconds=i - 3),
                duration_ms=12.5 + i % 7,
                status=Status.FAIL if failing else Status.OK,
                latency_ms=10.0 + i % 13,
                values={"status": 200, "bytes": 5120 + i, "disk": {"percent": {"/": 41.2}}},
                detail="HTTP 200 in 12 ms",
                error="connect refused 127.0.0.1:5432" if failing else None,
                failed=["status == 200", "latency_ms < 500"] if failing else [],
                evidence=[{"id": i, "amount": 12.5, "sku": f"SKU-{i}"}] if i % 100 == 0 else [],
            )
        )
    return results


async def store_api(path: Path, rows: int, batch_size: int, pool: list[ProbeResult]) -> None:
    """Measure results/s and flush times through the Store API."""
    store = Store.open(path, batch_size=batch_size)
    await store.start()
    started = time.perf_counter()
    for i in range(rows):
        store.append(pool[i % len(pool)])
        if i % 1000 == 999:
            await asyncio.sleep(0)  # probes yield; the writer runs in between
    await store.flush()
    elapsed = time.perf_counter() - started
    stats = store.stats()
    await store.close()
    print(f"Store API      {rows:>8,} results in {elapsed:6.2f} s = {rows / elapsed:>9,.0f} rows/s")
    print(
        f"  appender time per batch of {batch_size} (append_rows + flush): "
        f"p50 {stats.flush_p50_ms:.1f} ms, p99 {stats.flush_p99_ms:.1f} ms, "
        f"max {stats.max_flush_ms:.1f} ms over {stats.batches} batches"
    )


def raw_appender(path: Path, rows: int, batch_size: int, pool: list[ProbeResult]) -> None:
    """Measure the DuckDB appender alone, on converted rows, in batches of `batch_size`."""
    converted = [_row(r) for r in pool]
    con = _fresh_database(path)
    appender = con.appender("results", columns=list(_RESULT_INSERT_COLUMNS))
    flushes = []
    started = time.perf_counter()
    for offset in range(0, rows, batch_size):
        batch = [converted[(offset + j) % len(converted)] for j in range(batch_size)]
        t0 = time.perf_counter()
        appender.append_rows(batch)
        appender.flush()
        flushes.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    con.close()
    flushes.sort()
    print(
        f"raw appender   {rows:>8,} rows    in {elapsed:6.2f} s = {rows / elapsed:>9,.0f} rows/s "
        f"(flush p50 {statistics.median(flushes):.1f} ms, "
        f"p99 {flushes[int(0.99 * (len(flushes) - 1))]:.1f} ms, max {flushes[-1]:.1f} ms)"
    )


def executemany(path: Path, rows: int, pool: list[ProbeResult]) -> None:
    """Measure `executemany` INSERT on converted rows."""
    converted = [_row(pool[i % len(pool)]) for i in range(rows)]
    con = _fresh_database(path)
    columns = ", ".join(f'"{c}"' for c in _RESULT_INSERT_COLUMNS)
    marks = ", ".join("?" for _ in _RESULT_INSERT_COLUMNS)
    started = time.perf_counter()
    con.executemany(f"INSERT INTO results ({columns}) VALUES ({marks})", converted)
    elapsed = time.perf_counter() - started
    con.close()
    print(f"executemany    {rows:>8,} rows    in {elapsed:6.2f} s = {rows / elapsed:>9,.0f} rows/s")


def _fresh_database(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    for migration in MIGRATIONS:
        con.execute(migration.sql)
    return con


def main() -> None:
    """Parse options and run the three measurements in a scratch directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000, help="results through the Store API")
    parser.add_argument("--batch-size", type=int, default=1000, help="the store's batch_size")
    parser.add_argument(
        "--executemany-rows", type=int, default=20_000, help="rows for the executemany run"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args()
    pool = sample_results(10_000)
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        directory = Path(scratch)
        api_file = directory / "api.duckdb"
        asyncio.run(store_api(api_file, args.rows, args.batch_size, pool))
        print(f"  file size after close: {api_file.stat().st_size / 1e6:.1f} MB")
        raw_appender(directory / "raw.duckdb", args.rows, args.batch_size, pool)
        executemany(directory / "many.duckdb", args.executemany_rows, pool)


if __name__ == "__main__":
    main()
