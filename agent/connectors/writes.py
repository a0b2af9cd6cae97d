"""The one write path to a SQL source, for remediations only; probes never import it.

The read path (`SqlConnector.fetch`) stays read-only on every dialect. A remediation
that changes data opens a *separate* connection here, for one transaction, and closes
it afterwards; nothing is pooled, so a writable session can never leak into a probe.

    async with write_transaction("shop", spec, max_rows=500, timeout=10.0) as tx:
        before = await tx.fetch("SELECT sku, available FROM inventory WHERE sku = :sku", {...})
        await tx.execute("UPDATE inventory SET available = :v WHERE sku = :sku", {...})
        # leaving the block commits; an exception (or `tx.rollback_only = True`) rolls back

The contract:

- Placeholders and the one-statement rule are `_sql.prepare`'s, as for reads.
- `execute` counts the rows each statement touched (MariaDB/MySQL report matched rows,
  not only changed ones); past `max_rows` in total it raises `TooManyRows`, which rolls
  the whole transaction back, so a blast-radius limit never leaves a partial change.
- `commit=False` (a dry run) always rolls back: the plan of a change can run the very
  statements and report how many rows they would touch, without side effects.
- Every statement has a server-side timeout where the dialect has one; the whole
  transaction is cut at `timeout` plus the connect time.
- Errors are `SourceError`s with one secret-free line.
- PostgreSQL, MariaDB/MySQL and SQLite; DuckDB sources are files the agent reads
  while another program owns them, so writing to them is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.connectors import Params, Rows, SourceError, SqlDialect
from agent.connectors._sql import one_line, prepare, seconds, source_error
from agent.redaction import Redactor
from agent.sources import MysqlSource, PostgresSource, SourceSpec, SqliteSource

CONNECT_TIMEOUT = 5.0


class TooManyRows(SourceError):
    """A write touched more rows than allowed; the transaction was rolled back."""

    def __init__(self, touched: int, max_rows: int) -> None:
        self.touched = touched
        self.max_rows = max_rows
        super().__init__(f"would touch {touched} rows, more than max_rows {max_rows}: rolled back")


@dataclass(frozen=True)
class Statement:
    """One statement of a transaction and its bound parameters."""

    sql: str
    params: Params = None


class _Driver(Protocol):
    async def fetch(self, sql: str, bound: Any, max_rows: int) -> Rows: ...
    async def execute(self, sql: str, bound: Any) -> int: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def close(self) -> None: ...


@dataclass
class Transaction:
    """One open write transaction; see the module docstring."""

    dialect: SqlDialect
    max_rows: int
    _driver: _Driver
    _redactor: Redactor
    touched: int = 0
    rollback_only: bool = False
    counts: list[int] = field(default_factory=list)

    async def fetch(self, sql: str, params: Params = None, *, max_rows: int = 1000) -> Rows:
        """Read inside the transaction (e.g. the before-values of the rows to change)."""
        query, bound = prepare(sql, params, self.dialect)
        rows: Rows = await self._guarded(self._driver.fetch(query, bound, max_rows))
        return rows

    async def execute(self, sql: str, params: Params = None) -> int:
        """Run one writing statement; its touched-row count. TooManyRows past `max_rows`."""
        query, bound = prepare(sql, params, self.dialect)
        count = max(0, int(await self._guarded(self._driver.execute(query, bound))))
        self.counts.append(count)
        self.touched += count
        if self.touched > self.max_rows:
            raise TooManyRows(self.touched, self.max_rows)
        return count

    async def _guarded(self, call: Any) -> Any:
        try:
            return await call
        except SourceError:
            raise
        except (TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:  # driver errors: one secret-free line
            raise source_error(_message(exc), self._redactor) from None


@contextlib.asynccontextmanager
async def write_transaction(
    name: str,
    spec: SourceSpec,
    *,
    max_rows: int,
    timeout: float = 30.0,  # noqa: ASYNC109 - also the server's statement timeout
    commit: bool = True,
    base_dir: Path | None = None,
) -> AsyncIterator[Transaction]:
    """A write transaction on source `name`: committed when the block ends without error."""
    redactor = Redactor(_secrets(spec))
    driver = await _open(name, spec, timeout, base_dir, redactor)
    tx = Transaction(_dialect(spec), max_rows, driver, redactor)
    try:
        async with asyncio.timeout(timeout + CONNECT_TIMEOUT):
            yield tx
            if commit and not tx.rollback_only:
                await tx._guarded(driver.commit())
            else:
                await tx._guarded(driver.rollback())
    except TimeoutError:
        await _quietly(driver.rollback())
        raise SourceError(f"write transaction cut after {seconds(timeout)}: rolled back") from None
    except BaseException:
        await _quietly(driver.rollback())
        raise
    finally:
        await _quietly(driver.close())


async def execute_in_transaction(
    name: str,
    spec: SourceSpec,
    statements: Sequence[Statement],
    *,
    max_rows: int,
    timeout: float = 30.0,  # noqa: ASYNC109
    commit: bool = True,
    base_dir: Path | None = None,
) -> list[int]:
    """Run `statements` in one transaction; the rows each touched. Rolled back past `max_rows`."""
    async with write_transaction(
        name, spec, max_rows=max_rows, timeout=timeout, commit=commit, base_dir=base_dir
    ) as tx:
        for statement in statements:
            await tx.execute(statement.sql, statement.params)
        return list(tx.counts)


def quote_identifier(name: str, dialect: SqlDialect) -> str:
    """A config-given table or column name (`inventory`, `shop.inventory`) quoted for SQL."""
    parts = name.split(".")
    if (
        not name
        or not all(p and (p[0].isalpha() or p[0] == "_") for p in parts)
        or not all(c.isalnum() or c == "_" for p in parts for c in p)
    ):
        raise SourceError(f"invalid identifier {name!r}: letters, digits and '_' only")
    mark = "`" if dialect == "mysql" else '"'
    return ".".join(f"{mark}{p}{mark}" for p in parts)


def _dialect(spec: SourceSpec) -> SqlDialect:
    if spec.kind in ("postgres", "mysql", "sqlite"):
        return spec.kind
    raise SourceError(f"writes to {spec.kind} sources are not supported")


def _secrets(spec: SourceSpec) -> list[str]:
    password = getattr(spec, "password", None)
    return [password.get_secret_value()] if password is not None else []


def _message(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return str(primary)
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return one_line(str(args[1]))
    return one_line(str(exc)) or type(exc).__name__


async def _quietly(call: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(call, 2.0)


async def _open(
    name: str, spec: SourceSpec, statement_s: float, base_dir: Path | None, redactor: Redactor
) -> _Driver:
    _dialect(spec)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            if isinstance(spec, PostgresSource):
                return await _Postgres.open(name, spec, statement_s)
            if isinstance(spec, MysqlSource):
                return await _Mysql.open(name, spec, statement_s)
            assert isinstance(spec, SqliteSource)
            path = spec.path.expanduser()
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            return await _Sqlite.open(path, statement_s)
    except TimeoutError:
        raise SourceError(f"connect timed out after {seconds(CONNECT_TIMEOUT)}") from None
    except SourceError:
        raise
    except Exception as exc:
        raise source_error(f"connect failed: {_message(exc)}", redactor) from None


class _Postgres:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, name: str, spec: PostgresSource, statement_s: float) -> _Postgres:
        import psycopg
        from psycopg.conninfo import make_conninfo

        base = spec.dsn or make_conninfo(
            host=spec.host, port=spec.port, dbname=spec.database, user=spec.user
        )
        conninfo = make_conninfo(
            base,
            connect_timeout=max(2, round(CONNECT_TIMEOUT)),
            application_name=f"opsagent-write:{name}",
        )
        password = spec.password.get_secret_value() if spec.password else None
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=False, password=password)
        # The session may default to read-only (the probes' role); this transaction writes.
        await conn.execute("SET TRANSACTION READ WRITE")
        await conn.execute(f"SET LOCAL statement_timeout = {max(1, round(statement_s * 1000))}")
        return cls(conn)

    async def fetch(self, sql: str, bound: Any, max_rows: int) -> Rows:
        cursor = await self._conn.execute(sql, bound)
        rows = list(await cursor.fetchmany(max_rows + 1))
        columns = [c.name for c in cursor.description or ()]
        return Rows(columns, [tuple(r) for r in rows[:max_rows]], len(rows) > max_rows)

    async def execute(self, sql: str, bound: Any) -> int:
        cursor = await self._conn.execute(sql, bound)
        return int(cursor.rowcount)

    async def commit(self) -> None:
        await self._conn.commit()

    async def rollback(self) -> None:
        await self._conn.rollback()

    async def close(self) -> None:
        await self._conn.close()


class _Mysql:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, name: str, spec: MysqlSource, statement_s: float) -> _Mysql:
        import aiomysql
        from pymysql.constants import CLIENT

        conn = await aiomysql.connect(
            host=spec.host,
            port=spec.port,
            user=spec.user,
            password=spec.password.get_secret_value() if spec.password else "",
            db=spec.database,
            autocommit=False,
            charset="utf8mb4",
            connect_timeout=CONNECT_TIMEOUT,
            program_name=f"opsagent-write:{name}",
            client_flag=CLIENT.FOUND_ROWS,  # rowcount = matched rows: the blast radius
        )
        async with conn.cursor() as cur:
            if "MariaDB" in conn.get_server_info():
                await cur.execute(
                    f"SET SESSION tx_read_only = 0, SESSION max_statement_time = {statement_s:.3f}"
                )
            else:
                await cur.execute("SET SESSION transaction_read_only = 0")
            await cur.execute("START TRANSACTION")
        return cls(conn)

    async def fetch(self, sql: str, bound: Any, max_rows: int) -> Rows:
        async with self._conn.cursor() as cur:
            await cur.execute(sql, bound)
            rows = list(await cur.fetchall())
            columns = [d[0] for d in cur.description or ()]
        return Rows(columns, [tuple(r) for r in rows[:max_rows]], len(rows) > max_rows)

    async def execute(self, sql: str, bound: Any) -> int:
        async with self._conn.cursor() as cur:
            await cur.execute(sql, bound)
            return int(cur.rowcount)

    async def commit(self) -> None:
        await self._conn.commit()

    async def rollback(self) -> None:
        await self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()


class _Sqlite:
    """sqlite3 on a worker thread; `BEGIN IMMEDIATE` takes the write lock up front."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path, statement_s: float) -> _Sqlite:
        def connect() -> sqlite3.Connection:
            if not path.exists():
                raise SourceError(f"database file not found: {path}")
            db = sqlite3.connect(
                path, timeout=statement_s, isolation_level=None, check_same_thread=False
            )
            db.execute("BEGIN IMMEDIATE")
            return db

        return cls(await asyncio.to_thread(connect))

    async def fetch(self, sql: str, bound: Any, max_rows: int) -> Rows:
        def read() -> Rows:
            cursor = self._db.execute(sql, bound if bound is not None else ())
            rows = cursor.fetchmany(max_rows + 1)
            columns = [d[0] for d in cursor.description or ()]
            return Rows(columns, [tuple(r) for r in rows[:max_rows]], len(rows) > max_rows)

        return await asyncio.to_thread(read)

    async def execute(self, sql: str, bound: Any) -> int:
        def write() -> int:
            return self._db.execute(sql, bound if bound is not None else ()).rowcount

        return await asyncio.to_thread(write)

    async def commit(self) -> None:
        await asyncio.to_thread(self._db.execute, "COMMIT")

    async def rollback(self) -> None:
        def rollback() -> None:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

        await asyncio.to_thread(rollback)

    async def close(self) -> None:
        await asyncio.to_thread(self._db.close)


__all__ = [
    "Statement",
    "TooManyRows",
    "Transaction",
    "execute_in_transaction",
    "quote_identifier",
    "write_transaction",
]
