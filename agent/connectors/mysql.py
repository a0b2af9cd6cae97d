"""MariaDB and MySQL through aiomysql, read-only, with a server-side statement timeout.

Before each query one `SET SESSION` makes the session read-only (`tx_read_only` on
MariaDB, `transaction_read_only` on MySQL; this also refuses DDL, which a `START
TRANSACTION READ ONLY` would not: DDL commits implicitly and runs outside it) and
sets the statement timeout (`max_statement_time` in seconds on MariaDB,
`max_execution_time` in ms, SELECT only, on MySQL). Setting both before every query
means a previous query on the same connection cannot have switched them off.

aiomysql always enables multi-statement packets, so the single-statement rule is
enforced by `_sql.prepare` before anything is sent. Rows come from an unbuffered
cursor; when more than `max_rows` exist the connection is dropped rather than
drained, so the rest is never transferred.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

import aiomysql
import pymysql

from agent.connectors import Rows, SourceError, SqlDialect
from agent.connectors._pool import Pool
from agent.connectors._sql import one_line, prepare, seconds, source_error
from agent.redaction import Redactor
from agent.sources import MysqlSource

CONNECT_TIMEOUT = 5.0
GRACE = 1.0  # see postgres.GRACE
_ACCESS_DENIED = re.compile(r"Access denied for user '(?P<user>[^']*)'")

# MySQL client/server error codes this module turns into words.
_CANT_CONNECT = 2003
_ACCESS_DENIED_CODE = 1045
_STATEMENT_TIMEOUTS = {1969, 3024}  # MariaDB max_statement_time, MySQL max_execution_time
_READ_ONLY = 1792
_CONNECTION_LOST = {1927, 2006, 2013, 2055}


class MysqlConnector:
    """A `SqlConnector` for one MariaDB or MySQL source."""

    # The protocol's wider type: a protocol attribute must match exactly.
    dialect: SqlDialect = "mysql"

    def __init__(self, name: str, spec: MysqlSource) -> None:
        self.name = name
        self._spec = spec
        password = spec.password.get_secret_value() if spec.password else ""
        self._password = password
        self._redactor = Redactor([password] if password else [])
        self._pool: Pool[aiomysql.Connection] = Pool(self._connect, _close, _alive)

    async def fetch(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        max_rows: int = 1000,
        timeout: float = 10.0,  # noqa: ASYNC109 - the connector contract; bounds the server too
    ) -> Rows:
        """Run one read-only statement; see the package docstring for the contract."""
        query, bound = prepare(sql, params, "mysql")
        try:
            # Connecting may take part of the budget too, but never more than it.
            connect_timeout = min(CONNECT_TIMEOUT, timeout)
            async with asyncio.timeout(connect_timeout + timeout + GRACE):
                async with self._pool.lease(connect_timeout) as lease:
                    conn = lease.conn
                    async with conn.cursor() as setup:
                        await setup.execute(_session_settings(conn, timeout))
                    cursor = await conn.cursor(aiomysql.SSCursor)
                    await cursor.execute(query, bound)
                    rows = list(await cursor.fetchmany(max_rows + 1))
                    columns = [d[0] for d in cursor.description or ()]
                    truncated = len(rows) > max_rows
                    if truncated:
                        lease.reuse = False  # draining would transfer every remaining row
                    else:
                        await cursor.close()
                    return Rows(columns, [tuple(r) for r in rows[:max_rows]], truncated)
        except SourceError:
            raise
        except TimeoutError:
            raise SourceError(f"no answer within {seconds(timeout + GRACE)}") from None
        except pymysql.err.MySQLError as exc:
            raise self._describe(exc, timeout) from None

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._pool.aclose()

    async def _connect(self, limit: float) -> aiomysql.Connection:
        spec = self._spec
        where = f"{spec.host}:{spec.port}"
        try:
            async with asyncio.timeout(limit):
                conn = await aiomysql.connect(
                    host=spec.host,
                    port=spec.port,
                    user=spec.user,
                    password=self._password,
                    db=spec.database,
                    autocommit=True,
                    charset="utf8mb4",
                    connect_timeout=limit,
                    program_name=f"opsagent:{self.name}",
                )
        except TimeoutError:
            raise SourceError(f"connect timed out after {seconds(limit)} ({where})") from None
        except pymysql.err.MySQLError as exc:
            code, message = _code_and_message(exc)
            if code == _CANT_CONNECT:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, ConnectionRefusedError):
                    raise SourceError(f"connect refused {where}") from None
                if isinstance(cause, TimeoutError):
                    raise SourceError(
                        f"connect timed out after {seconds(limit)} ({where})"
                    ) from None
                raise source_error(
                    f"connect failed {where}: {cause or message}", self._redactor
                ) from None
            raise self._describe(exc, 0.0) from None
        except OSError as exc:
            raise source_error(f"connect failed {where}: {exc}", self._redactor) from None
        return conn

    def _describe(self, exc: pymysql.err.MySQLError, timeout: float) -> SourceError:
        code, message = _code_and_message(exc)
        if code == _ACCESS_DENIED_CODE and (user := _ACCESS_DENIED.search(message)):
            return source_error(f"authentication failed for user '{user['user']}'", self._redactor)
        if code in _STATEMENT_TIMEOUTS:
            return SourceError(f"statement timeout after {seconds(timeout)}")
        if code == _READ_ONLY:
            return source_error(f"read-only: {message}", self._redactor)
        if code in _CONNECTION_LOST:
            return source_error(f"connection lost: {message}", self._redactor)
        return source_error(message, self._redactor)


def _session_settings(conn: aiomysql.Connection, timeout: float) -> str:
    """One `SET SESSION` for read-only and the statement timeout (our numbers, no user text)."""
    if "MariaDB" in conn.get_server_info():
        return f"SET SESSION tx_read_only = 1, SESSION max_statement_time = {timeout:.3f}"
    return (
        "SET SESSION transaction_read_only = 1, "
        f"SESSION max_execution_time = {max(1, round(timeout * 1000))}"
    )


def _code_and_message(exc: pymysql.err.MySQLError) -> tuple[int | None, str]:
    if len(exc.args) >= 2 and isinstance(exc.args[0], int):
        return exc.args[0], one_line(str(exc.args[1]))
    return None, one_line(str(exc)) or type(exc).__name__


async def _alive(conn: aiomysql.Connection) -> bool:
    if conn.closed:
        return False
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await conn.ping(reconnect=False)
    except (pymysql.err.MySQLError, OSError, TimeoutError):
        return False
    return True


async def _close(conn: aiomysql.Connection) -> None:
    conn.close()  # closes the socket at once; no goodbye packet to a server that may be gone
