"""Keyed tables on real servers for the reconcile tests, dropped after each test.

PostgreSQL gets a schema of its own per test, MariaDB tables with a unique prefix in
`test`, Redis keys with a unique prefix; SQLite and DuckDB files live in the test's
temp folder. The run context names the sources `pg`, `maria`, `lite`, `duck`, `cache`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest
import redis

from agent.probe_spec import RunContext
from agent.sources import DuckdbSource, MysqlSource, PostgresSource, RedisSource, SqliteSource
from tests.services import require_tcp

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
Row = Sequence[Any]


def pg_connect() -> psycopg.Connection[tuple[Any, ...]]:
    """A direct (writable) connection to the test database."""
    require_tcp("PostgreSQL", "127.0.0.1", 5432)
    return psycopg.connect(PG_DSN, autocommit=True)


def maria_connect() -> pymysql.connections.Connection[Any]:
    """A direct (writable) connection to MariaDB's `test` database."""
    require_tcp("MariaDB", "127.0.0.1", 3306)
    return pymysql.connect(
        host="127.0.0.1", user="root", database="test", charset="utf8mb4", autocommit=True
    )


@dataclass
class Data:
    """Creates tables and hashes for one test; `close()` drops them all."""

    tmp: Path
    tag: str = field(default_factory=lambda: "rc_" + uuid.uuid4().hex[:10])
    _pg: psycopg.Connection[tuple[Any, ...]] | None = None
    _maria: pymysql.connections.Connection[Any] | None = None
    _maria_tables: list[str] = field(default_factory=list)
    _redis_keys: list[str] = field(default_factory=list)

    @property
    def lite_path(self) -> Path:
        return self.tmp / "lite.db"

    @property
    def duck_path(self) -> Path:
        return self.tmp / "duck.duckdb"

    def pg(self, name: str, columns: str, rows: Sequence[Row]) -> str:
        """Create `name` in this test's schema; returns the qualified table name."""
        if self._pg is None:
            self._pg = pg_connect()
            self._pg.execute(f"CREATE SCHEMA {self.tag}")
        table = f"{self.tag}.{name}"
        self._pg.execute(f"CREATE TABLE {table} ({columns})")
        if rows:
            marks = ", ".join(["%s"] * len(rows[0]))
            with self._pg.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        return table

    def pg_execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        assert self._pg is not None
        self._pg.execute(sql, params)

    def maria(self, name: str, columns: str, rows: Sequence[Row]) -> str:
        """Create `<tag>_<name>` in MariaDB's `test`; returns the table name."""
        if self._maria is None:
            self._maria = maria_connect()
        table = f"{self.tag}_{name}"
        with self._maria.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} ({columns}) CHARACTER SET utf8mb4")
            self._maria_tables.append(table)
            if rows:
                marks = ", ".join(["%s"] * len(rows[0]))
                cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        return table

    def maria_execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        assert self._maria is not None
        with self._maria.cursor() as cur:
            cur.execute(sql, params)

    def lite(self, name: str, columns: str, rows: Sequence[Row]) -> str:
        """Create `name` in the test's SQLite file (decimals stored as REAL)."""
        plain = [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in rows]
        with sqlite3.connect(self.lite_path) as conn:
            conn.execute(f"CREATE TABLE {name} ({columns})")
            if plain:
                marks = ", ".join(["?"] * len(plain[0]))
                conn.executemany(f"INSERT INTO {name} VALUES ({marks})", plain)
        conn.close()
        return name

    def duck(self, name: str, columns: str, rows: Sequence[Row]) -> str:
        """Create `name` in the test's DuckDB file (closed again, so the probe can open it)."""
        conn = duckdb.connect(str(self.duck_path))
        try:
            conn.execute(f"CREATE TABLE {name} ({columns})")
            # One multi-row INSERT per 500 rows: DuckDB's executemany runs row by row.
            for start in range(0, len(rows), 500):
                chunk = rows[start : start + 500]
                marks = ", ".join(["(" + ", ".join(["?"] * len(chunk[0])) + ")"] * len(chunk))
                params = [value for row in chunk for value in row]
                conn.execute(f"INSERT INTO {name} VALUES {marks}", params)
        finally:
            conn.close()
        return name

    def redis_hash(self, name: str, mapping: dict[str, Any]) -> str:
        require_tcp("Redis", "127.0.0.1", 6379)
        key = f"{self.tag}:{name}"
        self._redis_keys.append(key)
        client = redis.Redis.from_url(REDIS_URL)
        try:
            client.delete(key)
            if mapping:
                client.hset(key, mapping={k: str(v) for k, v in mapping.items()})
        finally:
            client.close()
        return key

    def close(self) -> None:
        if self._pg is not None:
            self._pg.execute(f"DROP SCHEMA {self.tag} CASCADE")
            self._pg.close()
        if self._maria is not None:
            with self._maria.cursor() as cur:
                for table in self._maria_tables:
                    cur.execute(f"DROP TABLE IF EXISTS {table}")
            self._maria.close()
        if self._redis_keys:
            client = redis.Redis.from_url(REDIS_URL)
            try:
                client.delete(*self._redis_keys)
            finally:
                client.close()


def sources(tmp: Path) -> dict[str, Any]:
    """The sources every reconcile test can use."""
    return {
        "pg": PostgresSource(kind="postgres", dsn=PG_DSN),
        "maria": MysqlSource(kind="mysql", database="test", user="root"),
        "lite": SqliteSource(kind="sqlite", path=tmp / "lite.db"),
        "duck": DuckdbSource(kind="duckdb", path=tmp / "duck.duckdb"),
        "cache": RedisSource(kind="redis", url=REDIS_URL),
    }


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Data]:
    """Tables on the real servers, dropped after the test."""
    made = Data(tmp_path)
    yield made
    made.close()


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RunContext]:
    """A run context with the five test sources; its connectors are closed after."""
    context = RunContext(base_dir=tmp_path, sources=sources(tmp_path))
    yield context
    await context.aclose()
