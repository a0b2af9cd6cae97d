"""Real databases for connector and probe tests: one `SqlTarget` per dialect.

Each target lives in its own throw-away namespace (a PostgreSQL schema, a MariaDB
database, a SQLite or DuckDB file in the test's temp folder), can be seeded with the
same `payments` table, and knows its dialect's slow query and how to kill the agent's
server-side connections. Import the fixtures into a test module to use them:
`from tests.databases import sql_target, redis_target  # noqa: F401`.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomysql
import duckdb
import psycopg
import pymysql
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from agent.connectors import SQL_KINDS
from agent.connectors.duckdb_file import _CONFIG as DUCKDB_CONFIG
from agent.sources import (
    DuckdbSource,
    MysqlSource,
    PostgresSource,
    RedisSource,
    SourceSpec,
    SqliteSource,
)
from tests.services import require_tcp

UNKNOWN_THREAD = 1094  # MariaDB ER_NO_SUCH_THREAD
HOST = "127.0.0.1"
PG_PORT, MYSQL_PORT, REDIS_PORT = 5432, 3306, 6379
PG_ADMIN = f"host={HOST} port={PG_PORT} dbname=test user=postgres"

# The rows every SQL target is seeded with: (id, order_id, status, amount).
PAYMENTS = [
    (1, 101, "pending", "10.50"),
    (2, 102, "pending", "20.25"),
    (3, 103, "paid", "99.00"),
    (4, 104, "pending", "5.00"),
    (5, 105, "failed", "7.00"),
]
# A query every dialect runs for about five seconds (long enough to cut at 1s).
SLOW_QUERY = {
    "postgres": "SELECT pg_sleep(5) AS slept",
    "mysql": "SELECT SLEEP(5) AS slept",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) AS slept FROM c",
    "duckdb": "SELECT count(*) AS slept FROM range(100000000000) a",
}


def unique(prefix: str = "opsagent_t") -> str:
    """A name no other test (or test run) uses."""
    return f"{prefix}_{secrets.token_hex(4)}"


@dataclass
class SqlTarget:
    """One dialect's database for a test: its source spec and an admin (writing) door."""

    dialect: str
    source: SourceSpec
    namespace: str
    tmp: Path
    _cleanups: list[Callable[[], Any]] = field(default_factory=list)

    # --- writing, as the test's admin (never through the agent's connectors) ---

    async def execute(self, *statements: str) -> None:
        """Run statements with write access in the target's namespace."""
        if self.dialect == "postgres":
            async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
                await conn.execute(f"SET search_path = {self.namespace}")
                for statement in statements:
                    await conn.execute(statement)
        elif self.dialect == "mysql":
            conn = await aiomysql.connect(
                host=HOST, port=MYSQL_PORT, user="root", db=self.namespace, autocommit=True
            )
            try:
                async with conn.cursor() as cur:
                    for statement in statements:
                        await cur.execute(statement)
            finally:
                conn.close()
        elif self.dialect == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                for statement in statements:
                    db.execute(statement)
                db.commit()
        else:
            with duckdb.connect(str(self.path)) as db:
                for statement in statements:
                    db.execute(statement)

    async def scalar(self, sql: str) -> Any:
        """One value, read with the admin connection."""
        if self.dialect == "postgres":
            async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
                await conn.execute(f"SET search_path = {self.namespace}")
                row = await (await conn.execute(sql)).fetchone()
        elif self.dialect == "mysql":
            conn = await aiomysql.connect(
                host=HOST, port=MYSQL_PORT, user="root", db=self.namespace, autocommit=True
            )
            try:
                async with conn.cursor() as cur:
                    await cur.execute(sql)
                    row = await cur.fetchone()
            finally:
                conn.close()
        elif self.dialect == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                row = db.execute(sql).fetchone()
        else:
            # The connector's own configuration: DuckDB refuses a second, different one
            # on a file this process already has open.
            with duckdb.connect(str(self.path), read_only=True, config=dict(DUCKDB_CONFIG)) as db:
                row = db.execute(sql).fetchone()
        assert row is not None
        return row[0]

    async def seed_payments(self) -> None:
        """The `payments` table with the PAYMENTS rows."""
        values = ", ".join(f"({i}, {o}, '{s}', {a})" for i, o, s, a in PAYMENTS)
        await self.execute(
            "CREATE TABLE payments (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, "
            "status VARCHAR(20) NOT NULL, amount DECIMAL(10, 2) NOT NULL)",
            f"INSERT INTO payments (id, order_id, status, amount) VALUES {values}",
        )

    @property
    def path(self) -> Path:
        assert isinstance(self.source, SqliteSource | DuckdbSource)
        return self.source.path

    @property
    def slow_query(self) -> str:
        return SLOW_QUERY[self.dialect]

    # --- servers only ---

    async def kill_agent_connections(self, source_name: str) -> int:
        """Kill the server side of every connection the agent opened for `source_name`."""
        if self.dialect == "postgres":
            async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (f"opsagent:{source_name}",),
                )
                row = await cur.fetchone()
                return int(row[0]) if row else 0
        assert self.dialect == "mysql"
        conn = await aiomysql.connect(host=HOST, port=MYSQL_PORT, user="root", autocommit=True)
        try:
            async with conn.cursor() as cur:
                await cur.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST "
                    "WHERE DB = %s AND ID <> CONNECTION_ID()",
                    (self.namespace,),
                )
                ids = [row[0] for row in await cur.fetchall()]
                for thread_id in ids:
                    try:
                        await cur.execute(f"KILL {int(thread_id)}")
                    except pymysql.err.OperationalError as exc:
                        if exc.args[0] != UNKNOWN_THREAD:  # only "it ended meanwhile" is fine
                            raise
                return len(ids)
        finally:
            conn.close()

    async def user_with_password(self, password: str) -> str:
        """Create a login with `password` (dropped after the test); returns the user name."""
        user = unique("opsagent_u")
        if self.dialect == "postgres":
            async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
                await conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")

            async def drop_role() -> None:
                async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
                    await conn.execute(f"DROP ROLE IF EXISTS {user}")

            self._cleanups.append(drop_role)
        else:
            await self.execute(
                f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'",
                f"GRANT SELECT ON {self.namespace}.* TO '{user}'@'127.0.0.1'",
            )

            async def drop_user() -> None:
                await self.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")

            self._cleanups.append(drop_user)
        return user

    def with_login(self, user: str, password: str) -> SourceSpec:
        """This target's source, logging in as `user` with `password`."""
        secret = SecretStr(password)
        if isinstance(self.source, PostgresSource):
            dsn = f"postgresql://{user}@{HOST}:{PG_PORT}/test"
            return PostgresSource(kind="postgres", dsn=dsn, password=secret)
        assert isinstance(self.source, MysqlSource)
        return self.source.model_copy(update={"user": user, "password": secret})

    def at_port(self, port: int) -> SourceSpec:
        """This target's source, pointed at another port (a closed one, say)."""
        if isinstance(self.source, PostgresSource):
            return PostgresSource(kind="postgres", dsn=f"postgresql://postgres@{HOST}:{port}/test")
        assert isinstance(self.source, MysqlSource)
        return self.source.model_copy(update={"port": port})

    async def cleanup(self) -> None:
        for step in reversed(self._cleanups):
            await step()


async def make_sql_target(dialect: str, tmp_path: Path) -> SqlTarget:
    """Create the namespace of one dialect (skip or fail when its server is absent)."""
    namespace = unique()
    target: SqlTarget
    if dialect == "postgres":
        require_tcp("PostgreSQL", HOST, PG_PORT)
        dsn = f"postgresql://postgres@{HOST}:{PG_PORT}/test?options=-csearch_path%3D{namespace}"
        target = SqlTarget(dialect, PostgresSource(kind="postgres", dsn=dsn), namespace, tmp_path)
        async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
            await conn.execute(f"CREATE SCHEMA {namespace}")

        async def drop_schema() -> None:
            async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as conn:
                await conn.execute(f"DROP SCHEMA IF EXISTS {namespace} CASCADE")

        target._cleanups.append(drop_schema)
    elif dialect == "mysql":
        require_tcp("MariaDB", HOST, MYSQL_PORT)
        source = MysqlSource(kind="mysql", host=HOST, port=MYSQL_PORT, database=namespace)
        target = SqlTarget(dialect, source, namespace, tmp_path)
        conn = await aiomysql.connect(host=HOST, port=MYSQL_PORT, user="root", autocommit=True)
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"CREATE DATABASE {namespace}")
        finally:
            conn.close()

        async def drop_database() -> None:
            conn = await aiomysql.connect(host=HOST, port=MYSQL_PORT, user="root", autocommit=True)
            try:
                async with conn.cursor() as cur:
                    await cur.execute(f"DROP DATABASE IF EXISTS {namespace}")
            finally:
                conn.close()

        target._cleanups.append(drop_database)
    elif dialect == "sqlite":
        path = tmp_path / f"{namespace}.db"
        sqlite3.connect(path).close()
        target = SqlTarget(dialect, SqliteSource(kind="sqlite", path=path), namespace, tmp_path)
    else:
        path = tmp_path / f"{namespace}.duckdb"
        duckdb.connect(str(path)).close()
        target = SqlTarget(dialect, DuckdbSource(kind="duckdb", path=path), namespace, tmp_path)
    return target


@pytest.fixture(params=SQL_KINDS)
async def sql_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlTarget]:
    """Each SQL dialect in turn, in a fresh namespace, cleaned up afterwards."""
    target = await make_sql_target(request.param, tmp_path)
    try:
        yield target
    finally:
        await target.cleanup()


@pytest.fixture(params=["postgres", "mysql"])
async def server_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlTarget]:
    """The SQL dialects that have a server (and so logins and connections to kill)."""
    target = await make_sql_target(request.param, tmp_path)
    try:
        yield target
    finally:
        await target.cleanup()


@dataclass
class RedisTarget:
    """The Redis server, with a key prefix owned by one test."""

    prefix: str
    admin: aioredis.Redis
    source: RedisSource

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    async def kill_client(self, client_id: int) -> None:
        """Kill one connection, by the id it got from `CLIENT ID`."""
        await self.admin.client_kill_filter(_id=str(client_id))


@pytest.fixture
async def redis_target() -> AsyncIterator[RedisTarget]:
    """Redis on loopback; every key the test made under its prefix is deleted after."""
    require_tcp("Redis", HOST, REDIS_PORT)
    admin = aioredis.Redis(host=HOST, port=REDIS_PORT, decode_responses=True)
    prefix = unique()
    target = RedisTarget(
        prefix, admin, RedisSource(kind="redis", url=f"redis://{HOST}:{REDIS_PORT}/0")
    )
    try:
        yield target
    finally:
        keys = [key async for key in admin.scan_iter(match=f"{prefix}:*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]
