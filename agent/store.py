"""The DuckDB store: one file, one connection, one worker thread, one writer.

The agent is the only process that opens the file (DuckDB locks it; a second process
gets `StoreError`), and inside the agent `Store` is the only owner of the connection:
every DuckDB call runs on one dedicated worker thread, so there is a single writer and
the connection never crosses threads. Async methods hand their work to that thread and
await it; the event loop never blocks on DuckDB. All SQL of opsagent lives here (and the
schema in `agent.store_schema`), behind named methods.

Ingest is batched: `append()` queues a result without blocking, and a writer task ships
the queue to the worker in batches through DuckDB's appender (one statement per batch),
when a batch is full or `flush_interval` after the oldest queued result.

For the CLI while the agent is stopped, `Store.open(path, read_only=True)` opens the file
read-only with no worker thread: `store.reader` answers synchronously.

Hardening: the connection runs with `enable_external_access = false`, so SQL over the
store (including `opsagent query`) cannot read or write other files; the only directory
it may touch is the private one used by `compact()`.

Footprint: the agent's connection runs with `threads = 1` and `memory_limit = 64MB`
(DuckDB's defaults are one thread per core and 80 % of RAM for its buffer pool, which
over weeks of results would grow the agent to gigabytes of cache). Queries larger than
that spill to `<file>.tmp`. Opening DuckDB itself costs ~23 MB of RSS whatever the
settings (mostly its code pages).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import duckdb
import pydantic_core

from agent.errors import StoreError
from agent.results import ProbeResult, Status, utcnow
from agent.store_schema import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_SQL

log = logging.getLogger(__name__)

T = TypeVar("T")

# The appender fills these columns; `id` comes from its sequence default.
_RESULT_INSERT_COLUMNS = (
    "ts",
    "probe",
    "kind",
    "status",
    "duration_ms",
    "latency_ms",
    "values",
    "detail",
    "error",
    "failed",
    "evidence",
    "scheduled_ts",
    "lag_ms",
)
_RESULT_COLUMNS = ("id", *_RESULT_INSERT_COLUMNS[:-1])  # lag_ms is derived on read


# Every column as one JSON array (a parameter each): converting one string is ~50x
# cheaper than converting a Python list to a DuckDB LIST parameter.
_INSERT_COUNTERS = """
INSERT INTO probe_counters (probe, runs, missed, "overlaps", since, updated_at)
SELECT unnest(?::JSON::VARCHAR[]), unnest(?::JSON::BIGINT[]), unnest(?::JSON::BIGINT[]),
       unnest(?::JSON::BIGINT[]), unnest(?::JSON::TIMESTAMP[]), unnest(?::JSON::TIMESTAMP[])
"""


def _result_select(alias: str = "") -> str:
    """The column list `_result_from_row` expects, optionally qualified by a table alias."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{column}"' for column in _RESULT_COLUMNS)


# DuckDB errors that blame the rows of a batch rather than the database: the batch is
# split to find and reject the bad rows instead of retrying forever (which would stall
# ingest). Conversion makes them very unlikely (text is cleaned, JSON always serialises).
_ROW_ERRORS: tuple[type[Exception], ...] = (
    duckdb.DataError,
    duckdb.IntegrityError,
    duckdb.InvalidInputException,
)

# DuckDB settings of the agent's read-write connection (see `_open_connection`).
AGENT_THREADS = 1
AGENT_MEMORY_LIMIT = "64MB"

# Retry delays for a failing write (disk full, I/O error): doubling, capped.
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0
# How many recent flush durations the percentiles in `stats()` are computed over.
_FLUSH_WINDOW = 1024

# `opsagent query` runs only these statement types...
_READ_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
# ...and refuses these keywords anywhere in the statement (outside strings, comments and
# quoted identifiers), which catches writes hidden in a read, e.g.
# `WITH d AS (DELETE FROM results RETURNING *) SELECT ...` parses as a SELECT in 2.0, or
# `EXPLAIN ANALYZE DELETE ...` which runs the delete.
_WRITE_KEYWORDS = frozenset(
    [
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "TRUNCATE",
        "CREATE",
        "DROP",
        "ALTER",
        "ATTACH",
        "DETACH",
        "COPY",
        "EXPORT",
        "IMPORT",
        "INSTALL",
        "LOAD",
        "SET",
        "RESET",
        "PRAGMA",
        "CALL",
        "CHECKPOINT",
        "VACUUM",
    ]
)
_WORD = re.compile(r"[A-Za-z_]+")

# Paths opened for writing in this process. DuckDB shares one database instance between
# connections of the same process, so its file lock cannot stop a second in-process
# writer: this registry does.
_WRITERS: set[Path] = set()
_WRITERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class StoreStats:
    """A snapshot of the writer's health, for `/metrics`, the TUI and `opsagent status`."""

    rows_written: int  # results on disk since open
    batches: int  # successful appender flushes
    last_batch_size: int
    last_flush_ms: float  # the last batch's appender time (append_rows + flush)
    max_flush_ms: float
    flush_p50_ms: float  # over the last 1024 flushes
    flush_p99_ms: float
    queue_depth: int  # results appended but not yet on disk (queued + being written)
    writer_alive: bool
    failed_flushes: int  # write attempts that failed and were retried
    rows_rejected: int  # rows DuckDB refused on their own merit (logged, not stored)
    retrying: bool  # True while a write is failing and being retried
    last_error: str | None  # the last write error, kept after recovery
    last_error_at: datetime | None


@dataclass(frozen=True)
class LatestResult:
    """The last stored result of one probe, with its current failure streak."""

    result: ProbeResult
    consecutive_failures: int  # non-ok results since the last ok one (0 when last is ok)
    last_ok_at: datetime | None  # started_at of the last ok result, None if never ok
    runs: int  # results stored for this probe


@dataclass(frozen=True)
class ProbeCounters:
    """The dispatcher's counters for one probe since the agent process started."""

    probe: str
    runs: int
    missed: int  # slots skipped because the scheduler fell behind
    overlaps: int  # slots skipped because the previous run was still in flight
    since: datetime  # start of the agent process that counted
    updated_at: datetime


class QueryResult(NamedTuple):
    """The answer to a read-only SQL query: column names, rows, and whether rows were cut."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


@dataclass
class _WriteOutcome:
    """What one write attempt achieved, reported by the worker thread to the writer task."""

    written: int = 0
    rejected: list[tuple[ProbeResult, str]] = field(default_factory=list)  # with why
    remaining: list[ProbeResult] = field(default_factory=list)  # unwritten after an error
    error: Exception | None = None
    flush_ms: float = 0.0


class StoreReader:
    """Synchronous reads over one connection. All read SQL lives here.

    Not thread-safe: in the agent it runs only on the store's worker thread (through the
    async methods of `Store`); in read-only mode it runs in the caller's thread.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def schema_version(self) -> int:
        """The schema version of the file (0 for a file opsagent never initialised)."""
        exists = _scalar(
            self._con,
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE database_name = current_database() AND table_name = 'schema_version'",
        )
        if not exists:
            return 0
        return int(_scalar(self._con, "SELECT coalesce(max(version), 0) FROM schema_version"))

    def latest_per_probe(self) -> list[LatestResult]:
        """The last result of every probe, by probe name, with failures since its last ok.

        "Last" is the order results were recorded (their id), which for one probe is the
        order its runs finished.
        """
        rows = self._con.execute(
            f"""
            WITH last_ok AS (
                SELECT probe, max(id) AS ok_id, arg_max(ts, id) AS ok_ts
                FROM results WHERE status = 'ok' GROUP BY probe
            ), per_probe AS (
                SELECT r.probe,
                       max(r.id) AS last_id,
                       count(*) FILTER (WHERE r.id > coalesce(o.ok_id, -1)) AS streak,
                       any_value(o.ok_ts) AS ok_ts,
                       count(*) AS runs
                FROM results r LEFT JOIN last_ok o USING (probe)
                GROUP BY r.probe
            )
            SELECT {_result_select("r")}, p.streak, p.ok_ts, p.runs
            FROM per_probe p JOIN results r ON r.id = p.last_id
            ORDER BY r.probe
            """
        ).fetchall()
        return [
            LatestResult(
                result=_result_from_row(row[:13]),
                consecutive_failures=int(row[13]),
                last_ok_at=_aware(row[14]),
                runs=int(row[15]),
            )
            for row in rows
        ]

    def history(self, probe: str, limit: int = 100) -> list[ProbeResult]:
        """The last `limit` results of `probe`, newest first."""
        rows = self._con.execute(
            f"SELECT {_result_select()} FROM results WHERE probe = ? ORDER BY id DESC LIMIT ?",
            [probe, limit],
        ).fetchall()
        return [_result_from_row(row) for row in rows]

    def count_results(self, probe: str | None = None) -> int:
        """How many results are stored, for one probe or all."""
        if probe is None:
            return int(_scalar(self._con, "SELECT count(*) FROM results"))
        return int(_scalar(self._con, "SELECT count(*) FROM results WHERE probe = ?", [probe]))

    def probe_counters(self) -> list[ProbeCounters]:
        """The last saved dispatcher counters of every probe."""
        rows = self._con.execute(
            'SELECT probe, runs, missed, "overlaps", since, updated_at FROM probe_counters ORDER BY probe'
        ).fetchall()
        return [
            ProbeCounters(
                str(p), int(r), int(m), int(o), _aware(s) or utcnow(), _aware(u) or utcnow()
            )
            for p, r, m, o, s, u in rows
        ]

    def get_meta(self, key: str) -> str | None:
        """The value stored under `key` in the meta table, or None."""
        value = _scalar(self._con, "SELECT value FROM meta WHERE key = ?", [key])
        return None if value is None else str(value)

    def query(
        self,
        sql: str,
        params: Sequence[object] | Mapping[str, object] | None = None,
        max_rows: int = 1000,
    ) -> QueryResult:
        """Run one read-only statement for `opsagent query`; at most `max_rows` rows.

        Three locks keep it read-only: DuckDB's parser must see exactly one SELECT or
        EXPLAIN statement (SHOW, DESCRIBE, SUMMARIZE, FROM-first, VALUES and WITH parse
        as SELECT); no write keyword may appear anywhere in it; and it runs inside a
        `READ ONLY` transaction that is always rolled back. Raises `StoreError` for a
        refused statement or a failing one (with DuckDB's message).
        """
        _check_read_only(self._con, sql)
        con = self._con
        con.execute("BEGIN TRANSACTION READ ONLY")
        try:
            con.execute(sql, params)
            columns = [str(d[0]) for d in con.description or []]
            rows = con.fetchmany(max_rows + 1)
        except duckdb.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc
        finally:
            # In 2.0 an unfinished result blocks the appender's flush: drop the rest.
            con.abort()
            con.execute("ROLLBACK")
        return QueryResult(columns, rows[:max_rows], len(rows) > max_rows)


class Store:
    """The agent's DuckDB store. Create with `Store.open()`, then `await start()`.

    Usage in the daemon::

        store = Store.open(data_dir / "opsagent.duckdb")
        await store.start()
        store.append(result)            # never blocks, never drops
        await store.flush()             # everything appended so far is on disk
        await store.close()             # drain, flush, checkpoint, close

    And in the CLI while the agent is stopped::

        with Store.open(path, read_only=True) as store:
            rows = store.reader.latest_per_probe()
    """

    def __init__(
        self, path: Path, *, read_only: bool, batch_size: int, flush_interval: float
    ) -> None:
        """Use `Store.open()`; this only sets the fields up."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = path
        self.read_only = read_only
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        # Compaction writes the new file here; the connection may touch nothing else.
        self._compact_dir = path.parent / f".{path.name}.compact"
        self._executor: ThreadPoolExecutor | None = (
            None
            if read_only
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="opsagent-store")
        )
        # Owned by the worker thread (or the caller's thread in read-only mode).
        self._con: duckdb.DuckDBPyConnection | None = None
        self._reader: StoreReader | None = None
        self._appender: duckdb.Appender | None = None
        # Owned by the event loop.
        self._pending: collections.deque[tuple[float, ProbeResult]] = collections.deque()
        self._appended = 0  # results ever appended
        self._done = 0  # results ever resolved (written or rejected), in append order
        self._flush_target = 0  # `flush()` wants `_done` to reach this
        self._inflight = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        # Stats, updated by the writer task.
        self._rows_written = 0
        self._batches = 0
        self._last_batch_size = 0
        self._last_flush_ms = 0.0
        self._max_flush_ms = 0.0
        self._flush_times: collections.deque[float] = collections.deque(maxlen=_FLUSH_WINDOW)
        self._failed_flushes = 0
        self._rows_rejected = 0
        self._retrying = False
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        read_only: bool = False,
        batch_size: int = 1000,
        flush_interval: float = 0.25,
    ) -> Store:
        """Open (and create or upgrade) the store at `path`.

        Read-write (the agent): creates parent directories and the file, applies pending
        migrations. Read-only (the CLI when the agent is stopped): the file must exist
        and be at this version's schema. Raises `StoreError` when the file is held by
        another process, is missing (read-only), or was written by a newer opsagent.
        """
        path = Path(path).expanduser().resolve()
        if read_only:
            if not path.exists():
                raise StoreError(f"the store {path} does not exist (has the agent run yet?)")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        with _WRITERS_LOCK:
            if path in _WRITERS:
                raise StoreError(f"the store {path} is already open for writing in this process")
            if not read_only:
                _WRITERS.add(path)
        store = cls(path, read_only=read_only, batch_size=batch_size, flush_interval=flush_interval)
        try:
            store._run_sync(store._open_connection)
        except BaseException:
            store._release()
            raise
        return store

    async def start(self) -> None:
        """Start the writer task. Call once, from the event loop that will append."""
        self._check_writable()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="opsagent-store-writer")

    async def close(self, drain_timeout: float | None = None) -> None:
        """Drain the queue, flush, checkpoint and close the file; stop the worker thread.

        Waits as long as writes keep failing unless `drain_timeout` (seconds) is given;
        then the unwritten results are logged as lost, the file is closed anyway and
        `StoreError` is raised. Closing twice is harmless.
        """
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        lost = 0
        if not self.read_only:
            if self._writer is None and self._pending:
                # Appended before `start()`: write them now rather than drop them.
                self._writer = asyncio.create_task(self._write_loop())
            if self._writer is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._writer), drain_timeout)
                except TimeoutError:
                    self._writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._writer
                except Exception:
                    pass  # the writer crashed; it logged why
                lost = len(self._pending) + self._inflight
                if lost:
                    log.error(
                        "store: closing with %d results not written: %s", lost, self._last_error
                    )
        try:
            await self._call(self._close_connection)
        finally:
            self._closed = True
            self._release()
        if lost:
            raise StoreError(
                f"the store closed with {lost} results not written: {self._last_error}"
            )

    def __enter__(self) -> Self:
        """Use a read-only store as a context manager (the CLI)."""
        if not self.read_only:
            raise StoreError("a read-write store is closed with `await store.close()`")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the read-only store."""
        self.close_read_only()

    def close_read_only(self) -> None:
        """Close a read-only store synchronously."""
        if not self.read_only:
            raise StoreError("a read-write store is closed with `await store.close()`")
        if not self._closed:
            self._closed = True
            self._close_connection()

    @property
    def reader(self) -> StoreReader:
        """Synchronous reads, for a read-only store only (the agent uses the async methods)."""
        if not self.read_only:
            raise StoreError(
                "synchronous reads are for read-only stores; the agent uses the async methods"
            )
        return self._connected_reader()

    # -- ingest --------------------------------------------------------------------------

    def append(self, result: ProbeResult) -> None:
        """Queue a result for the writer. Never blocks and never drops.

        There is no queue bound on purpose: a probe result must not be lost because the
        disk is slow, and the queue holds at most what the probes produce while writes
        lag or fail. Its size is the back-pressure signal: `stats().queue_depth` (and
        the process's memory) grow, and `retrying`/`last_error` say why.
        """
        self._check_writable()
        if not self._pending:
            self._wake.set()  # wake an idle writer to start the flush_interval clock
        self._pending.append((time.monotonic(), result))
        self._appended += 1
        if len(self._pending) == self.batch_size:
            self._wake.set()  # a full batch goes out at once

    async def flush(self) -> None:
        """Return when every result appended so far is on disk (or rejected and logged).

        Raises `StoreError` if the writer is not running. Waits while writes fail and are
        retried; wrap in `asyncio.wait_for` to bound it.
        """
        self._check_writable()
        target = self._appended
        if self._done >= target:
            return
        if not self._writer_alive():
            raise StoreError(
                f"the store's writer is not running: {self._last_error or 'not started'}"
            )
        self._flush_target = max(self._flush_target, target)
        self._wake.set()
        async with self._progress:
            await self._progress.wait_for(lambda: self._done >= target or not self._writer_alive())
        if self._done < target:
            raise StoreError(f"the store's writer stopped: {self._last_error}")

    def stats(self) -> StoreStats:
        """The writer's counters and health, cheap enough to call on every scrape."""
        window = sorted(self._flush_times)
        return StoreStats(
            rows_written=self._rows_written,
            batches=self._batches,
            last_batch_size=self._last_batch_size,
            last_flush_ms=self._last_flush_ms,
            max_flush_ms=self._max_flush_ms,
            flush_p50_ms=_percentile(window, 0.50),
            flush_p99_ms=_percentile(window, 0.99),
            queue_depth=len(self._pending) + self._inflight,
            writer_alive=self._writer_alive(),
            failed_flushes=self._failed_flushes,
            rows_rejected=self._rows_rejected,
            retrying=self._retrying,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
        )

    # -- reads ---------------------------------------------------------------------------

    async def latest_per_probe(self) -> list[LatestResult]:
        """The last result of every probe with its failure streak (`opsagent status`)."""
        return await self._read(lambda r: r.latest_per_probe())

    async def history(self, probe: str, limit: int = 100) -> list[ProbeResult]:
        """The last `limit` results of `probe`, newest first."""
        return await self._read(lambda r: r.history(probe, limit))

    async def count_results(self, probe: str | None = None) -> int:
        """How many results are stored, for one probe or all."""
        return await self._read(lambda r: r.count_results(probe))

    async def query(
        self,
        sql: str,
        params: Sequence[object] | Mapping[str, object] | None = None,
        max_rows: int = 1000,
    ) -> QueryResult:
        """Run one read-only statement (`opsagent query`); see `StoreReader.query`."""
        return await self._read(lambda r: r.query(sql, params, max_rows))

    async def get_meta(self, key: str) -> str | None:
        """The value stored under `key` in the meta table, or None."""
        return await self._read(lambda r: r.get_meta(key))

    async def schema_version(self) -> int:
        """The schema version of the open file."""
        return await self._read(lambda r: r.schema_version())

    # -- writes other than ingest --------------------------------------------------------

    async def save_probe_counters(self, counters: Sequence[ProbeCounters]) -> None:
        """Replace the saved dispatcher counters with `counters` (one row per probe).

        One statement whatever the number of probes: each column goes in as one JSON
        array that DuckDB unnests (measured with 5,000 probes: ~25 ms, against ~4 s for
        `executemany`, which blocked the store's only thread for most of every 5 s).
        """
        self._check_writable()
        counters = list(counters)

        def replace() -> None:
            columns = (
                [c.probe for c in counters],
                [c.runs for c in counters],
                [c.missed for c in counters],
                [c.overlaps for c in counters],
                [_naive(c.since) for c in counters],
                [_naive(c.updated_at) for c in counters],
            )
            con = self._connection()
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM probe_counters")
                if counters:
                    con.execute(_INSERT_COUNTERS, [_json(column) for column in columns])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

        await self._call(replace)

    async def probe_counters(self) -> list[ProbeCounters]:
        """The last saved dispatcher counters of every probe."""
        return await self._read(lambda r: r.probe_counters())

    async def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key` in the meta table (e.g. the agent's start time)."""
        self._check_writable()

        def upsert() -> None:
            self._connection().execute(
                "INSERT OR REPLACE INTO meta (key, value, updated_at) VALUES (?, ?, ?)",
                [key, value, _naive(utcnow())],
            )

        await self._call(upsert)

    async def prune(self, older_than: timedelta) -> int:
        """Delete results that started more than `older_than` ago; returns how many.

        The file does not shrink by itself: run `compact()` after a large prune.
        """
        self._check_writable()
        cutoff = _naive(utcnow() - older_than)

        def delete() -> int:
            return int(_scalar(self._connection(), "DELETE FROM results WHERE ts < ?", [cutoff]))

        deleted = await self._call(delete)
        log.info("store: pruned %d results older than %s", deleted, older_than)
        return deleted

    async def compact(self) -> None:
        """Rewrite the file without the space freed by deletes, so it actually shrinks.

        In DuckDB 2.0 neither CHECKPOINT nor VACUUM returns freed blocks to the file
        system (measured: a 17.8 MB file stays 17.8 MB after deleting 90% of its rows), so
        this copies the database into a fresh file (`ATTACH`, `COPY FROM DATABASE`),
        closes the connection, swaps the files with an atomic rename and reopens. Ingest
        waits meanwhile (results stay queued). A crash at any point leaves either the old
        file or the new one complete; leftovers are removed at the next open.
        """
        self._check_writable()
        before, after = await self._call(self._compact_sync)
        log.info("store: compacted %s from %d to %d bytes", self.path, before, after)

    # -- the writer task (event loop) ----------------------------------------------------

    async def _write_loop(self) -> None:
        """Ship queued results to the worker in batches until closed and drained."""
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                urgent = self._closing or self._flush_target > self._done
                if len(self._pending) < self.batch_size and not urgent:
                    # Wait for a full batch, a flush()/close(), or the oldest row's deadline.
                    delay = self._pending[0][0] + self.flush_interval - time.monotonic()
                    if delay > 0:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), delay)
                        continue
                count = min(len(self._pending), self.batch_size)
                batch = [self._pending.popleft()[1] for _ in range(count)]
                await self._write(batch)
        except Exception as exc:  # a bug: say so loudly, flush() waiters must not hang
            log.exception("store: the writer task crashed")
            self._note_error(exc)
            raise
        finally:
            await self._notify_progress()

    async def _write(self, batch: list[ProbeResult]) -> None:
        """Write one batch, retrying with back-off until every row is written or rejected."""
        delay = _RETRY_FIRST_S
        attempt = 0
        while batch:
            attempt += 1
            self._inflight = len(batch)
            try:
                outcome = await self._call(functools.partial(self._write_attempt, batch))
            except Exception as exc:  # the worker itself failed (e.g. shut down)
                outcome = _WriteOutcome(remaining=batch, error=exc)
            self._account(outcome)
            await self._notify_progress()
            if outcome.error is None:
                if self._retrying:
                    log.warning("store: writes recovered after %d attempts", attempt)
                    self._retrying = False
                break
            batch = outcome.remaining
            self._inflight = len(batch)
            self._failed_flushes += 1
            self._retrying = True
            self._note_error(outcome.error)
            if attempt == 1 or attempt % 10 == 0:  # a full disk must not flood the log
                log.error(
                    "store: writing %d results failed (attempt %d), retrying in %.1fs: %s",
                    len(batch),
                    attempt,
                    delay,
                    outcome.error,
                )
            if isinstance(outcome.error, duckdb.FatalException | StoreError) or _invalidated(
                outcome.error
            ):
                # DuckDB invalidates the database after a fatal error; only a fresh
                # connection (which replays the WAL) can write again. StoreError here
                # means a failed compaction left the store without a connection.
                try:
                    await self._call(self._reopen)
                except Exception as exc:
                    log.error("store: reopening after a fatal error failed: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
        self._inflight = 0

    def _account(self, outcome: _WriteOutcome) -> None:
        """Fold a write attempt into the stats and release waiting `flush()` calls."""
        if outcome.written:
            self._rows_written += outcome.written
            self._batches += 1
            self._last_batch_size = outcome.written
            self._last_flush_ms = outcome.flush_ms
            self._max_flush_ms = max(self._max_flush_ms, outcome.flush_ms)
            self._flush_times.append(outcome.flush_ms)
        for result, reason in outcome.rejected:
            log.error(
                "store: rejected the result of %s started at %s, it is not stored: %s",
                result.probe,
                result.started_at,
                reason,
            )
        self._rows_rejected += len(outcome.rejected)
        self._done += outcome.written + len(outcome.rejected)

    async def _notify_progress(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _note_error(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._last_error_at = utcnow()

    def _writer_alive(self) -> bool:
        return self._writer is not None and not self._writer.done()

    # -- worker-thread side --------------------------------------------------------------

    def _write_attempt(self, batch: list[ProbeResult]) -> _WriteOutcome:
        """Convert and insert `batch`, rejecting only the rows that are themselves bad.

        A result that cannot be converted (a bug upstream) is rejected at once. When
        DuckDB refuses the batch for its content, the batch is split in halves until the
        bad rows are alone, and only they are rejected. Any other error (disk full, I/O)
        stops the attempt: the unwritten results come back in `remaining` for a retry.
        """
        outcome = _WriteOutcome()
        pairs: list[tuple[ProbeResult, tuple[Any, ...]]] = []
        for result in batch:
            try:
                pairs.append((result, _row(result)))
            except Exception as exc:
                outcome.rejected.append((result, f"cannot convert: {type(exc).__name__}: {exc}"))
        refused: list[tuple[ProbeResult, str]] = []
        first_refusal: Exception | None = None
        chunks = [pairs] if pairs else []  # a stack; first halves pop first (append order)
        while chunks:
            chunk = chunks.pop()
            try:
                outcome.flush_ms += self._insert([row for _, row in chunk])
                outcome.written += len(chunk)
            except Exception as exc:
                if not _blames_rows(exc):
                    outcome.remaining = [r for c in [chunk, *reversed(chunks)] for r, _ in c]
                    outcome.error = exc
                    break
                if first_refusal is None:
                    first_refusal = exc
                    log.warning("store: DuckDB refused a batch (%s); isolating the bad rows", exc)
                if len(chunk) == 1:
                    refused.append((chunk[0][0], f"{type(exc).__name__}: {exc}"))
                else:
                    middle = len(chunk) // 2
                    chunks += [chunk[middle:], chunk[:middle]]
        if first_refusal is not None and len(refused) == len(pairs) > 1:
            # Not one row went in: the database is refusing, not the rows. Keep them all.
            outcome.remaining = [result for result, _ in pairs]
            outcome.error = first_refusal
            return outcome
        outcome.rejected += refused
        return outcome

    def _insert(self, rows: list[tuple[Any, ...]]) -> float:
        """Append and flush `rows` in one statement; returns the milliseconds it took."""
        if self._appender is None:
            self._appender = self._connection().appender(
                "results", columns=list(_RESULT_INSERT_COLUMNS)
            )
        started = time.perf_counter()
        try:
            self._appender.append_rows(rows)
            self._appender.flush()
        except BaseException as exc:
            # After a failure the appender's buffer is in no state to trust: drop it so
            # a retry starts empty and no row can be inserted twice.
            with contextlib.suppress(duckdb.Error):
                self._appender.clear()
            self._appender = None
            if isinstance(exc, duckdb.ResourceInUseException):
                # A read left its result unfinished (a bug, logged by the caller): end
                # it so that the retry can write.
                with contextlib.suppress(duckdb.Error):
                    self._connection().abort()
            raise
        return (time.perf_counter() - started) * 1000

    def _open_connection(self) -> None:
        """Connect, lock down file access, and migrate (or check the schema if read-only)."""
        if not self.read_only and self._compact_dir.exists():
            log.warning("store: removing an interrupted compaction in %s", self._compact_dir)
            shutil.rmtree(self._compact_dir, ignore_errors=True)
        try:
            con = duckdb.connect(str(self.path), read_only=self.read_only)
        except duckdb.Error as exc:
            if "lock" in str(exc).lower():
                raise StoreError(
                    f"the store {self.path} is in use by another process "
                    "(is the agent running? use the control API)"
                ) from exc
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        try:
            # `allowed_directories` must be set before access is switched off.
            allowed = [] if self.read_only else [f"{self._compact_dir}{os.sep}"]
            con.execute("SET allowed_directories = ?", [allowed])
            con.execute("SET enable_external_access = false")
            # TIMESTAMP columns hold UTC: make casts and now() in SQL over the store
            # (reports) agree with them, whatever the host's time zone.
            con.execute("SET TimeZone = 'UTC'")
            if not self.read_only:
                # The agent: one thread, so that a big query through the API cannot take
                # the cores the event loop needs; a bounded buffer pool (queries past it
                # spill to `<file>.tmp`), so the cache cannot grow to DuckDB's default of
                # 80 % of RAM over weeks of results. The CLI's read-only opens keep the
                # defaults: a one-off query may use the machine.
                con.execute(f"SET threads = {AGENT_THREADS}")
                con.execute(f"SET memory_limit = '{AGENT_MEMORY_LIMIT}'")
            if self.read_only:
                self._check_schema(con)
            else:
                self._migrate(con)
        except BaseException:
            con.close()
            raise
        self._con = con
        self._reader = StoreReader(con)

    def _check_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        version = StoreReader(con).schema_version()
        if version > SCHEMA_VERSION:
            raise _newer_error(self.path, version)
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {version}, this opsagent reads "
                f"version {SCHEMA_VERSION}; start the agent once to upgrade it"
            )

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(SCHEMA_VERSION_SQL)
        version = StoreReader(con).schema_version()
        if version > SCHEMA_VERSION:
            raise _newer_error(self.path, version)
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(migration.sql)
                con.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    [number, migration.name, _naive(utcnow())],
                )
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise StoreError(
                    f"the store {self.path}: migration {number} ({migration.name}) failed: {exc}"
                ) from exc
            log.info("store: applied migration %d (%s) to %s", number, migration.name, self.path)

    def _close_connection(self) -> None:
        self._appender = None
        if self._con is None:
            return
        con, self._con, self._reader = self._con, None, None
        try:
            if not self.read_only:
                con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.error(
                "store: checkpoint at close failed (the WAL is replayed at next open): %s", exc
            )
        finally:
            con.close()

    def _reopen(self) -> None:
        self._appender = None
        if self._con is not None:
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._con = self._reader = None
        self._open_connection()

    def _compact_sync(self) -> tuple[int, int]:
        """Copy the database into a new file and swap it in; returns sizes before, after."""
        con = self._connection()
        self._appender = None
        con.execute("CHECKPOINT")
        before = self.path.stat().st_size
        shutil.rmtree(self._compact_dir, ignore_errors=True)
        self._compact_dir.mkdir()
        # Same file name inside the directory, so the copy's catalog name matches.
        fresh = self._compact_dir / self.path.name
        database = str(_scalar(con, "SELECT current_database()")).replace('"', '""')
        try:
            con.execute(f"ATTACH {_sql_string(str(fresh))} AS opsagent_compact")
            try:
                con.execute(f'COPY FROM DATABASE "{database}" TO opsagent_compact')
            finally:
                con.execute("DETACH opsagent_compact")  # checkpoints and closes the copy
        except duckdb.Error as exc:
            shutil.rmtree(self._compact_dir, ignore_errors=True)
            raise StoreError(f"compacting the store {self.path} failed: {exc}") from exc
        # Close so the old file has no WAL left (a WAL replayed onto the new file would
        # corrupt it) and the swap does not happen under an open connection.
        self._con = self._reader = None
        con.close()
        wal = self.path.with_name(self.path.name + ".wal")
        try:
            if wal.exists() or fresh.with_name(fresh.name + ".wal").exists():
                raise StoreError(f"compacting the store {self.path} aborted: a WAL remained")
            _fsync(fresh)
            os.replace(fresh, self.path)
            _fsync(self.path.parent)
        finally:
            shutil.rmtree(self._compact_dir, ignore_errors=True)
            self._open_connection()
        return before, self.path.stat().st_size

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError(f"the store {self.path} is closed")
        return self._con

    def _connected_reader(self) -> StoreReader:
        if self._reader is None:
            raise StoreError(f"the store {self.path} is closed")
        return self._reader

    # -- extension point for the other store_* modules -----------------------------------

    async def run(self, fn: Callable[[duckdb.DuckDBPyConnection], T], *, write: bool = False) -> T:
        """Run `fn(connection)` on the store's worker thread; for `agent/store_*.py` only.

        Keeps the one-writer rule while letting each concept keep its SQL in its own
        store module. `fn` must fetch everything it reads (`fetchall`): a half-read
        result breaks the next appender flush in DuckDB 2.0.
        """
        if write:
            self._check_writable()
        elif self._closed:
            raise StoreError(f"the store {self.path} is closed")
        return await self._call(lambda: fn(self._connection()))

    def run_read_only(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`fn(connection)` synchronously, on a store opened read-only (the CLI)."""
        if not self.read_only:
            raise StoreError("synchronous reads are for read-only stores")
        return fn(self._connection())

    # -- plumbing ------------------------------------------------------------------------

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the worker thread (inline for a read-only store, which has none)."""
        if self._executor is None:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _run_sync(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the worker thread and wait, for synchronous `open()`."""
        if self._executor is None:
            return fn()
        return self._executor.submit(fn).result()

    async def _read(self, fn: Callable[[StoreReader], T]) -> T:
        if self._closed:
            raise StoreError(f"the store {self.path} is closed")
        return await self._call(lambda: fn(self._connected_reader()))

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"the store {self.path} is open read-only")
        if self._closing or self._closed:
            raise StoreError(f"the store {self.path} is closed")

    def _release(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if not self.read_only:
            with _WRITERS_LOCK:
                _WRITERS.discard(self.path)


# -- conversions -------------------------------------------------------------------------


def _row(result: ProbeResult) -> tuple[Any, ...]:
    """A result as a row in `_RESULT_INSERT_COLUMNS` order; cleans text DuckDB would refuse.

    Empty `failed` and `evidence` are stored as NULL: an empty list or JSON value costs
    the appender ~2 us per row each, NULL almost nothing, and most results have neither.
    """
    return (
        _naive(result.started_at),
        _text(result.probe),
        _text(result.kind),
        result.status.value,
        result.duration_ms,
        result.latency_ms,
        _json(result.values) if result.values else "{}",
        _text(result.detail),
        None if result.error is None else _text(result.error),
        [_text(f) for f in result.failed] if result.failed else None,
        _json(result.evidence) if result.evidence else None,
        None if result.scheduled_at is None else _naive(result.scheduled_at),
        result.lag_ms,
    )


def _result_from_row(row: Sequence[Any]) -> ProbeResult:
    """A `ProbeResult` from a row selected with `_result_select()` (the id is dropped)."""
    (
        _id,
        ts,
        probe,
        kind,
        status,
        duration,
        latency,
        values,
        detail,
        error,
        failed,
        evidence,
        sched,
    ) = row
    return ProbeResult(
        probe=probe,
        kind=kind,
        started_at=ts.replace(tzinfo=UTC),
        duration_ms=duration,
        status=Status(status),
        latency_ms=latency,
        values=json.loads(values),
        detail=detail,
        error=error,
        failed=[] if failed is None else list(failed),
        evidence=[] if evidence is None else json.loads(evidence),
        scheduled_at=_aware(sched),
    )


def _naive(moment: datetime) -> datetime:
    """An aware datetime as naive UTC for a TIMESTAMP column (naive input is taken as UTC).

    Done here rather than by DuckDB: the appender converts aware datetimes four times
    slower than this, and by the session's TimeZone rather than always to UTC.
    """
    if moment.tzinfo is None:
        return moment
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _text(value: str) -> str:
    """`value` as valid UTF-8: lone surrogates (e.g. from undecodable command output) become '?'."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


# The fallback encoder (one instance: `json.dumps` with options builds one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _json(value: object) -> str:
    """JSON text for a JSON column; what JSON cannot hold (Decimals, objects) becomes a string.

    pydantic's Rust serializer is ~4x faster than the json module (and writes datetimes
    as ISO 8601); it refuses lone surrogates and undecodable bytes, which the json
    module's path then cleans up.
    """
    try:
        return pydantic_core.to_json(value, fallback=str).decode()
    except ValueError:
        return _text(_JSON.encode(value))


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one read statement, with a message saying why."""
    if not sql.strip():
        raise StoreError("refused: the query is empty")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise StoreError(f"query failed: {exc}") from exc
    if not statements:
        raise StoreError("refused: the query is empty")
    if len(statements) != 1:
        raise StoreError(f"refused: one statement at a time ({len(statements)} given)")
    kind = statements[0].type
    if kind not in _READ_STATEMENTS:
        raise StoreError(
            f"refused: {kind.name} statements are not allowed; queries only read "
            "(SELECT, WITH, FROM, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN)"
        )
    for position, token in duckdb.tokenize(sql):
        if token != duckdb.token_type.keyword:
            continue
        word = _WORD.match(sql, position)
        if word and word.group().upper() in _WRITE_KEYWORDS:
            raise StoreError(
                f"refused: {word.group().upper()} is not allowed; queries only read "
                '(quote an identifier that is spelled like a keyword: "set")'
            )


def _scalar(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] | None = None
) -> Any:
    """The first value of the first row, or None.

    Reads with `fetchall()`, never `fetchone()`: in DuckDB 2.0 a result left unfinished
    makes the appender's next flush fail ("connection has an unfinished result").
    """
    rows = con.execute(sql, params).fetchall()
    return rows[0][0] if rows else None


def _blames_rows(exc: Exception) -> bool:
    """True when `exc` is about the rows written rather than the database's state."""
    return isinstance(exc, _ROW_ERRORS) and not _invalidated(exc)


def _invalidated(exc: Exception) -> bool:
    """True for DuckDB's "database has been invalidated" (after a fatal error)."""
    return isinstance(exc, duckdb.Error) and "invalidated" in str(exc)


def _sql_string(value: str) -> str:
    """`value` as a SQL string literal (ATTACH takes no parameters)."""
    return "'" + value.replace("'", "''") + "'"


def _newer_error(path: Path, version: int) -> StoreError:
    return StoreError(
        f"the store {path} has schema version {version}, newer than this opsagent knows "
        f"({SCHEMA_VERSION}); it was written by a newer opsagent: upgrade opsagent"
    )


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's) data to disk so a rename after it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
