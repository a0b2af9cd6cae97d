"""`POST /v1/query`: read-only SQL over the store, with a row limit and a time limit.

The store has one worker thread, so a runaway query would hold up ingest (results
queue, none are lost, but the store falls behind). The time limit therefore interrupts
the statement inside DuckDB (`interrupt()` from a timer thread), rather than merely
abandoning the await while the query keeps the worker busy.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import math
import threading
import uuid
from decimal import Decimal
from typing import Any

import duckdb

from agent.errors import StoreError
from agent.store import QueryResult, Store, StoreReader


class QueryTimeout(StoreError):
    """The query ran past its time limit and was interrupted."""


async def run_query(store: Store, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
    """Run one read-only statement; `StoreError` if refused or failed, `QueryTimeout` if cut."""
    fired = threading.Event()

    def work(con: duckdb.DuckDBPyConnection) -> QueryResult:
        lock = threading.Lock()
        finished = False

        def cut() -> None:
            # Under the lock, so an interrupt can never land on the next statement
            # the worker runs (an appender flush) once this query is over.
            with lock:
                if not finished:
                    fired.set()
                    con.interrupt()

        timer = threading.Timer(timeout_s, cut)
        timer.daemon = True
        timer.start()
        try:
            return StoreReader(con).query(sql, max_rows=max_rows)
        except duckdb.Error as exc:  # an interrupt can land outside the query's own try
            raise StoreError(f"query failed: {exc}") from exc
        finally:
            with lock:
                finished = True
            timer.cancel()
            if fired.is_set():
                # The interrupt may have hit the ROLLBACK that ends the read-only
                # transaction: end it now, or the next appender flush would run inside it.
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")

    try:
        return await store.run(work)
    except StoreError as exc:
        if fired.is_set():
            raise QueryTimeout(f"the query ran past its time limit ({timeout_s:g}s)") from exc
        raise


def json_safe(value: Any) -> Any:
    """A DuckDB value as JSON: ISO 8601 times, decimals and UUIDs as strings, bytes as base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no NaN/Infinity
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    return str(value)
