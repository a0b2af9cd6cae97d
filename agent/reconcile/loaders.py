"""Turn a source's connector into a side of the comparison.

PostgreSQL, MariaDB/MySQL and DuckDB sources become `SqlSide`s (checksums computed
inside the database). SQLite has no md5 and a Redis hash has no SQL, so those sources
become `LocalSide`s: read whole (at most `max_rows`) and hashed in Python. Both are
usually small and near the agent (a local file, an in-memory hash), and the other
side can still use its checksums.
"""

from __future__ import annotations

from typing import Any

from agent.connectors import RedisConnector, SqlConnector
from agent.reconcile.sides import Columns, Deadline, LocalSide, Side, SqlSide
from agent.reconcile.values import parse_key, parse_number


def sql_side(
    label: str,
    source: str,
    connector: SqlConnector,
    query: str,
    columns: Columns,
    deadline: Deadline,
    max_rows: int,
) -> Side:
    """The side for a query on a SQL source."""
    if connector.dialect != "sqlite":
        return SqlSide(label, source, connector, query, columns, deadline)

    async def load(limit: int) -> tuple[list[tuple[Any, ...]], bool]:
        rows = await connector.fetch(query, max_rows=limit, timeout=deadline.left())
        return columns.project(label, rows), rows.truncated

    return LocalSide(label, source, load, max_rows, len(columns.key))


def redis_side(
    label: str,
    source: str,
    connector: RedisConnector,
    key: str,
    columns: Columns,
    deadline: Deadline,
    max_rows: int,
) -> Side:
    """The side for a Redis hash: each field is a key, its value the compared number."""

    async def load(limit: int) -> tuple[list[tuple[Any, ...]], bool]:
        # HLEN first: a hash too big to read whole costs one cheap command, not a transfer.
        size = int(await connector.execute("HLEN", key, timeout=deadline.left()))
        if size > limit:
            return [], True
        fields: dict[str, str] = await connector.call(
            lambda client: client.hgetall(key),  # type: ignore[arg-type,return-value]
            timeout=deadline.left(),
        )
        # Fields become integers only if all of them are, so one key kind holds.
        parsed = [parse_key(f) for f in fields]
        keys: list[Any] = parsed if all(isinstance(k, int) for k in parsed) else list(fields)
        if not columns.compare:
            return [(k,) for k in keys], False
        return [(k, parse_number(v)) for k, v in zip(keys, fields.values(), strict=True)], False

    return LocalSide(label, source, load, max_rows, len(columns.key))
