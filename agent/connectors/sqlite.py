"""A SQLite file through the standard library, opened read-only, queried in a thread.

The file is opened with a `file:...?mode=ro` URI (SQLite itself refuses every write)
and `PRAGMA query_only`. One connection per source, used by one thread at a time;
after any error it is closed and the next call opens the file again, which also picks
up a file that was replaced. Placeholders `?` and `:name` are SQLite's own.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.connectors import Rows, SourceError, SqlDialect
from agent.connectors._sql import one_line, prepare, seconds
from agent.connectors._threaded import Interrupted, run_interruptible

BUSY_TIMEOUT = 2.0  # how long to wait for a writer's lock before "database is locked"


class SqliteConnector:
    """A `SqlConnector` for one SQLite file."""

    # The protocol's wider type: a protocol attribute must match exactly.
    dialect: SqlDialect = "sqlite"

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def fetch(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        max_rows: int = 1000,
        timeout: float = 10.0,  # noqa: ASYNC109 - the connector contract; bounds the server too
    ) -> Rows:
        """Run one read-only statement; see the package docstring for the contract."""
        query, bound = prepare(sql, params, "sqlite")

        def work() -> Rows:
            with self._lock:
                try:
                    conn = self._conn or self._open()
                    cursor = conn.execute(query, bound or ())
                    rows = cursor.fetchmany(max_rows + 1)
                    columns = [d[0] for d in cursor.description or ()]
                    cursor.close()
                except BaseException:
                    self._drop()
                    raise
            return Rows(columns, [tuple(r) for r in rows[:max_rows]], len(rows) > max_rows)

        try:
            return await run_interruptible(work, self._interrupt, timeout)
        except Interrupted:
            raise SourceError(f"statement timeout after {seconds(timeout)}") from None
        except sqlite3.Error as exc:
            raise SourceError(self._describe(exc)) from None

    async def aclose(self) -> None:
        """Close the connection (the next call opens the file again)."""
        with self._lock:
            self._drop()

    def _open(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise SourceError(f"cannot open {self.path}: no such file")
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
        )
        conn.execute("PRAGMA query_only = ON")
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _interrupt(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.interrupt()

    def _describe(self, exc: sqlite3.Error) -> str:
        text = one_line(str(exc)) or type(exc).__name__
        if "readonly" in text or "query_only" in text:
            return f"read-only: {text}"
        if text.startswith("unable to open"):
            return f"cannot open {self.path}: {text}"
        return text
