"""Connections to the data stores named under `sources:`, behind one small interface.

Probes (`sql`, `redis`, `reconcile`) never touch a driver: they ask the run context
for `ctx.connector(name)` and get one of two shapes.

`SqlConnector` (postgres, mysql/mariadb, sqlite, duckdb):

    rows = await connector.fetch(
        "SELECT id, amount FROM payments WHERE status = :status",
        {"status": "pending"},
        max_rows=50,
        timeout=5.0,
    )
    rows.columns, rows.rows, rows.truncated

`RedisConnector`: `await connector.execute("HGET", "stock", "sku-1")` for one raw
command, or `await connector.call(lambda r: r.hgetall("stock"))` for anything the
`redis.asyncio.Redis` client offers (pipelines, SCAN iterators).

The same contract for every dialect:

- Lazy: nothing connects until the first call, and a down server at start-up is a
  failed call, never a failed start.
- Parameters are always bound, never formatted into SQL. One placeholder style on
  every dialect: `:name` with a mapping, `?` with a sequence (see `_sql.py`). Without
  params the SQL is sent exactly as written.
- One statement per call; every session is read-only where the database allows it
  (PostgreSQL `BEGIN READ ONLY`, MariaDB/MySQL session `tx_read_only`, SQLite
  `mode=ro`, DuckDB `read_only=True` with file access disabled).
- `timeout` is enforced by the server where it can (`statement_timeout`,
  `max_statement_time`) and by an interrupt or a client-side cut otherwise; a call
  never outlives `timeout` plus the connect time by more than a second.
- `max_rows`: at most that many rows are read; `truncated` says whether there were more.
- A connection that broke (server restarted, backend killed) is dropped and the next
  call reconnects; idle pooled connections are checked before reuse.
- Every failure is a `SourceError` with a one-line message that never contains the
  source's password (`connect refused 127.0.0.1:5432`, `statement timeout after 2s`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from agent.errors import OpsAgentError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from agent.sources import SourceSpec

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any] | None
SqlDialect = Literal["postgres", "mysql", "sqlite", "duckdb"]
SQL_KINDS: tuple[SqlDialect, ...] = ("postgres", "mysql", "sqlite", "duckdb")


class SourceError(OpsAgentError):
    """A source could not answer: one line, secret-free, fit for a failed result."""


@dataclass(frozen=True)
class Rows:
    """The answer to one query: column names, at most `max_rows` rows, and whether more existed."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as `{column: value}` mappings (later duplicate column names win)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class SqlConnector(Protocol):
    """A SQL source: read-only queries with bound parameters, row limit and timeout."""

    dialect: SqlDialect

    async def fetch(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        max_rows: int = 1000,
        timeout: float = 10.0,  # noqa: ASYNC109 - also sent to the server as its statement timeout
    ) -> Rows:
        """Run one statement and return its first `max_rows` rows; SourceError on failure."""
        ...

    async def aclose(self) -> None:
        """Close every connection; the connector may be used again afterwards (it reconnects)."""
        ...


class RedisConnector(Protocol):
    """A Redis source: commands with a timeout, errors as SourceError."""

    dialect: Literal["redis"]

    async def execute(self, *args: Any, timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        """Send one raw command (`"LLEN", "queue"`) and return redis-py's parsed reply."""
        ...

    async def call(self, fn: Callable[[Redis], Awaitable[T]], *, timeout: float = 10.0) -> T:  # noqa: ASYNC109
        """Run `fn(client)` against the shared `redis.asyncio.Redis` client."""
        ...

    async def aclose(self) -> None:
        """Close the client's connections."""
        ...


def open_connector(
    name: str, spec: SourceSpec, *, base_dir: Path | None = None
) -> SqlConnector | RedisConnector:
    """The connector for source `name`; connects lazily on first use.

    `base_dir` anchors relative sqlite/duckdb file paths (the config file's folder);
    without it they are relative to the working directory.
    """
    # Drivers are imported here, not at the top: a config without postgres sources
    # does not pay for importing psycopg.
    if spec.kind == "postgres":
        from agent.connectors.postgres import PostgresConnector

        return PostgresConnector(name, spec)
    if spec.kind == "mysql":
        from agent.connectors.mysql import MysqlConnector

        return MysqlConnector(name, spec)
    if spec.kind == "sqlite":
        from agent.connectors.sqlite import SqliteConnector

        return SqliteConnector(name, _anchor(spec.path, base_dir))
    if spec.kind == "duckdb":
        from agent.connectors.duckdb_file import DuckdbConnector

        return DuckdbConnector(name, _anchor(spec.path, base_dir))
    from agent.connectors.redis import RedisSourceConnector

    return RedisSourceConnector(name, spec)


def _anchor(path: Path, base_dir: Path | None) -> Path:
    path = path.expanduser()
    return base_dir / path if base_dir is not None and not path.is_absolute() else path
