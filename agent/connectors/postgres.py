"""PostgreSQL through psycopg 3 (async), read-only, with a server-side statement timeout.

Each `fetch` is one round trip to open `BEGIN READ ONLY; SET LOCAL statement_timeout`,
the query through the extended protocol (which refuses a second statement, so
`COMMIT; DELETE ...` cannot escape the read-only transaction), and `ROLLBACK`. Rows
are streamed in chunks and reading stops after `max_rows + 1`, so a query that
returns millions of rows transfers only what is read. Sessions also carry
`default_transaction_read_only=on` and `application_name=opsagent:<source>` (how a
DBA finds the agent in `pg_stat_activity`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, cast

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent.connectors import Rows, SourceError, SqlDialect
from agent.connectors._pool import Pool
from agent.connectors._sql import one_line, prepare, seconds, source_error
from agent.redaction import Redactor
from agent.sources import PostgresSource

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

CONNECT_TIMEOUT = 5.0
# After the server's own timeout, the client gives it this long to say so before
# cutting the call itself (a server that stopped answering says nothing).
GRACE = 1.0
_SERVER = re.compile(r'server at "(?P<host>[^"]+)", port (?P<port>\d+) failed: (?P<reason>[^\n]*)')
_PASSWORD_FAILED = re.compile(r'password authentication failed for user "(?P<user>[^"]*)"')
_NO_ROLE = re.compile(r'role "(?P<user>[^"]*)" does not exist')
# Chunked reads need libpq 17; older ones stream row by row.
_CHUNK = 500 if psycopg.pq.version() >= 170000 else 1


class PostgresConnector:
    """A `SqlConnector` for one PostgreSQL source."""

    # The protocol's wider type: a protocol attribute must match exactly.
    dialect: SqlDialect = "postgres"

    def __init__(self, name: str, spec: PostgresSource) -> None:
        self.name = name
        password = spec.password.get_secret_value() if spec.password else None
        self._redactor = Redactor([password] if password else [])
        self._password = password
        self._conninfo = _conninfo(name, spec)
        self._pool: Pool[Connection] = Pool(self._connect, _close, self._alive)

    async def fetch(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        max_rows: int = 1000,
        timeout: float = 10.0,  # noqa: ASYNC109 - the connector contract; bounds the server too
    ) -> Rows:
        """Run one read-only statement; see the package docstring for the contract."""
        query, bound = prepare(sql, params, "postgres")
        try:
            # Connecting may take part of the budget too, but never more than it.
            connect_timeout = min(CONNECT_TIMEOUT, timeout)
            async with asyncio.timeout(connect_timeout + timeout + GRACE):
                async with self._pool.lease(connect_timeout) as lease:
                    return await self._run(lease.conn, query, bound, max_rows, timeout)
        except SourceError:
            raise
        except TimeoutError:
            raise SourceError(f"no answer within {seconds(timeout + GRACE)}") from None
        except psycopg.Error as exc:
            raise self._describe(exc, timeout) from None

    async def _run(
        self, conn: Connection, query: str, params: Any, max_rows: int, seconds_: float
    ) -> Rows:
        ms = max(1, round(seconds_ * 1000))
        # Our own text, one round trip: the simple protocol takes both statements.
        await conn.execute(f"BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}")
        cursor = conn.cursor()
        rows: list[tuple[Any, ...]] = []
        truncated = False
        stream = cast(
            AsyncGenerator[tuple[Any, ...], None],
            cursor.stream(query, params, size=min(_CHUNK, max_rows + 1)),
        )
        async with contextlib.aclosing(stream) as results:
            async for row in results:
                if len(rows) == max_rows:
                    truncated = True  # leaving the stream cancels the rest on the server
                    break
                rows.append(row)
        columns = [column.name for column in cursor.description or ()]
        await conn.execute("ROLLBACK")
        return Rows(columns, rows, truncated)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._pool.aclose()

    async def _connect(self, limit: float) -> Connection:
        try:
            async with asyncio.timeout(limit):
                return await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, password=self._password
                )
        except TimeoutError:
            raise SourceError(
                f"connect timed out after {seconds(limit)} ({self._where()})"
            ) from None
        except psycopg.Error as exc:
            raise self._describe_connect(exc) from None

    async def _alive(self, conn: Connection) -> bool:
        if conn.closed or conn.broken:
            return False
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await conn.execute("")  # an empty query: one round trip, no work
        except (psycopg.Error, TimeoutError):
            return False
        return True

    def _describe_connect(self, exc: psycopg.Error) -> SourceError:
        text = str(exc)
        match = _SERVER.search(text)
        where = f"{match['host']}:{match['port']}" if match else self._where()
        reason = match["reason"].replace("FATAL:", "").strip() if match else one_line(text)
        if "Connection refused" in reason:
            return SourceError(f"connect refused {where}")
        if user := _PASSWORD_FAILED.search(reason):
            return source_error(f"authentication failed for user '{user['user']}'", self._redactor)
        if user := _NO_ROLE.search(reason):
            return source_error(
                f"authentication failed for user '{user['user']}': role does not exist",
                self._redactor,
            )
        return source_error(f"connect failed {where}: {reason}", self._redactor)

    def _describe(self, exc: psycopg.Error, timeout: float) -> SourceError:
        primary = exc.diag.message_primary or one_line(str(exc)) or type(exc).__name__
        if isinstance(exc, errors.QueryCanceled) and "statement timeout" in primary:
            return SourceError(f"statement timeout after {seconds(timeout)}")
        if isinstance(exc, errors.ReadOnlySqlTransaction):
            return source_error(f"read-only: {primary}", self._redactor)
        if isinstance(exc, errors.AdminShutdown | errors.OperationalError) and not isinstance(
            exc, errors.QueryCanceled
        ):
            return source_error(f"connection lost: {primary}", self._redactor)
        return source_error(primary, self._redactor)

    def _where(self) -> str:
        info = conninfo_to_dict(self._conninfo)
        return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"


def _conninfo(name: str, spec: PostgresSource) -> str:
    """The DSN (or host/port/...) plus our session settings, the user's `options` kept."""
    base = spec.dsn or make_conninfo(
        host=spec.host, port=spec.port, dbname=spec.database, user=spec.user
    )
    options = conninfo_to_dict(base).get("options")
    ours = "-c default_transaction_read_only=on"
    return make_conninfo(
        base,
        connect_timeout=max(2, round(CONNECT_TIMEOUT)),  # libpq's minimum is 2 s
        application_name=f"opsagent:{name}",
        options=f"{options} {ours}" if options else ours,
    )


async def _close(conn: Connection) -> None:
    await conn.close()
