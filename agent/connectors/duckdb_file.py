"""Another DuckDB file (not the agent's own store), opened read-only, queried in a thread.

`read_only=True` refuses writes to the file; `enable_external_access=false` with the
configuration locked also refuses `COPY ... TO`, `ATTACH`, reading other files and
loading extensions, so a query can only read this database. Placeholders: `?`, and
`:name` is rewritten to DuckDB's `$name`.

DuckDB allows one writing process per file, so the source must not be a file another
process holds open for writing, nor the agent's own store (same process, different
configuration). `TIMESTAMP WITH TIME ZONE` values come back as aware datetimes
(DuckDB 2.0.0 needed pytz for them, which opsagent does not install; hence >= 2.0.1).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from agent.connectors import Rows, SourceError, SqlDialect
from agent.connectors._sql import one_line, prepare, seconds
from agent.connectors._threaded import Interrupted, run_interruptible

_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,  # so a query cannot switch the above back on
    "threads": 1,  # a probe's query should not take every core from the monitored shop
}


class DuckdbConnector:
    """A `SqlConnector` for one DuckDB file."""

    # The protocol's wider type: a protocol attribute must match exactly.
    dialect: SqlDialect = "duckdb"

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._conn: duckdb.DuckDBPyConnection | None = None
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
        query, bound = prepare(sql, params, "duckdb")

        def work() -> Rows:
            with self._lock:
                try:
                    conn = self._conn or self._open()
                    cursor = conn.execute(query, bound)
                    rows = cursor.fetchmany(max_rows + 1)
                    columns = [d[0] for d in cursor.description or ()]
                except BaseException:
                    self._drop()
                    raise
            return Rows(columns, [tuple(r) for r in rows[:max_rows]], len(rows) > max_rows)

        try:
            return await run_interruptible(work, self._interrupt, timeout)
        except Interrupted:
            raise SourceError(f"statement timeout after {seconds(timeout)}") from None
        except duckdb.Error as exc:
            raise SourceError(self._describe(exc)) from None

    async def aclose(self) -> None:
        """Close the connection (the next call opens the file again)."""
        with self._lock:
            self._drop()

    def _open(self) -> duckdb.DuckDBPyConnection:
        if not self.path.is_file():
            raise SourceError(f"cannot open {self.path}: no such file")
        conn = duckdb.connect(str(self.path), read_only=True, config=dict(_CONFIG))
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

    def _describe(self, exc: duckdb.Error) -> str:
        text = one_line(str(exc)) or type(exc).__name__
        # DuckDB prefixes its messages with the error class: "Catalog Error: ...".
        for prefix in (
            "Invalid Input Error: ",
            "Catalog Error: ",
            "Binder Error: ",
            "Parser Error: ",
        ):
            text = text.removeprefix(prefix)
        if "read-only mode" in text or "disabled by configuration" in text:
            return f"read-only: {text}"
        if "pytz" in text:
            return (
                "TIMESTAMP WITH TIME ZONE values cannot be read without pytz: "
                "cast them in the query, e.g. ts::TIMESTAMP or epoch(ts)"
            )
        if isinstance(exc, duckdb.IOException):
            return f"cannot open {self.path}: {text}"
        return text
