"""The SQL connector contract, on real PostgreSQL, MariaDB, SQLite and DuckDB.

Every test runs once per dialect (`sql_target`); the ones that need a server (logins,
killed connections) run on PostgreSQL and MariaDB (`server_target`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from agent.connectors import SourceError, SqlConnector, open_connector
from agent.sources import MysqlSource, PostgresSource
from tests import databases
from tests.databases import SqlTarget, make_sql_target, unique
from tests.services import require_tcp

# Fixtures from tests/databases.py, by assignment so they are visible here.
sql_target = databases.sql_target
server_target = databases.server_target
closed_port = databases.closed_port

AMOUNTS = "SELECT id, amount FROM payments WHERE status = :status ORDER BY id"


@pytest.fixture
async def seeded(sql_target: SqlTarget) -> AsyncIterator[tuple[SqlTarget, SqlConnector]]:
    """A target with the payments table and a connector to it (closed after)."""
    await sql_target.seed_payments()
    connector = open_connector(unique("src"), sql_target.source)
    assert connector.dialect == sql_target.dialect
    try:
        yield sql_target, connector
    finally:
        await connector.aclose()


async def test_rows_columns_and_exact_values(seeded: tuple[SqlTarget, SqlConnector]) -> None:
    _, connector = seeded
    rows = await connector.fetch(AMOUNTS, {"status": "pending"})
    assert rows.columns == ["id", "amount"]
    assert [(int(i), Decimal(str(a))) for i, a in rows.rows] == [
        (1, Decimal("10.50")),
        (2, Decimal("20.25")),
        (4, Decimal("5.00")),
    ]
    assert rows.truncated is False
    assert rows.dicts()[0]["id"] == 1


async def test_max_rows_truncates(seeded: tuple[SqlTarget, SqlConnector]) -> None:
    _, connector = seeded
    rows = await connector.fetch("SELECT id FROM payments ORDER BY id", max_rows=2)
    assert [r[0] for r in rows.rows] == [1, 2]
    assert rows.truncated is True
    exact = await connector.fetch("SELECT id FROM payments ORDER BY id", max_rows=5)
    assert len(exact.rows) == 5 and exact.truncated is False
    # The connection is still good after a truncated read.
    again = await connector.fetch("SELECT count(*) AS n FROM payments")
    assert again.rows == [(5,)]


async def test_positional_params_and_literals_left_alone(
    seeded: tuple[SqlTarget, SqlConnector],
) -> None:
    _, connector = seeded
    rows = await connector.fetch(
        "SELECT count(*) AS n, '50% ? :x' AS text FROM payments WHERE status = ? AND id > ?",
        ["pending", 1],
    )
    assert rows.rows == [(2, "50% ? :x")]
    # Without params nothing is rewritten: `%` and `?` inside literals are plain text.
    plain = await connector.fetch("SELECT '100%' AS p, 'a?' AS q")
    assert plain.rows == [("100%", "a?")]


@pytest.mark.parametrize(
    "value",
    ["pending' OR '1'='1", "x'; DROP TABLE payments; --", "pending\\' OR 1=1 -- "],
    ids=["or-true", "drop-table", "backslash"],
)
async def test_an_injection_attempt_in_a_param_is_inert(
    seeded: tuple[SqlTarget, SqlConnector], value: str
) -> None:
    target, connector = seeded
    rows = await connector.fetch(AMOUNTS, {"status": value})
    assert rows.rows == []
    assert await target.scalar("SELECT count(*) FROM payments") == 5


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payments SET status = 'paid'",
        "DELETE FROM payments",
        "WITH doomed AS (SELECT id FROM payments) DELETE FROM payments WHERE id IN (SELECT id FROM doomed)",
        "CREATE TABLE intruder (id INTEGER)",
        "INSERT INTO payments (id, order_id, status, amount) VALUES (9, 9, 'x', 1)",
    ],
    ids=["update", "delete", "with-delete", "create-table", "insert"],
)
async def test_writes_fail_and_the_table_is_unchanged(
    seeded: tuple[SqlTarget, SqlConnector], statement: str
) -> None:
    target, connector = seeded
    with pytest.raises(SourceError) as info:
        await connector.fetch(statement)
    message = str(info.value)
    assert "\n" not in message
    if "WITH" not in statement or target.dialect != "mysql":
        # MariaDB has no DML inside WITH: that one is a syntax error, still refused.
        assert message.startswith("read-only: "), message
    await connector.aclose()  # DuckDB: a writer cannot open the file while we hold it
    assert await target.scalar("SELECT count(*) FROM payments") == 5
    assert await target.scalar("SELECT count(*) FROM payments WHERE status = 'paid'") == 1


async def test_a_second_statement_is_refused(seeded: tuple[SqlTarget, SqlConnector]) -> None:
    target, connector = seeded
    with pytest.raises(SourceError, match="only one SQL statement"):
        await connector.fetch("SELECT 1 AS one; DELETE FROM payments")
    # A trailing semicolon and comments are fine.
    rows = await connector.fetch("SELECT count(*) AS n FROM payments; -- done")
    assert rows.rows == [(5,)]
    await connector.aclose()
    assert await target.scalar("SELECT count(*) FROM payments") == 5


async def test_missing_table_and_bad_syntax_are_one_line(
    seeded: tuple[SqlTarget, SqlConnector],
) -> None:
    target, connector = seeded
    with pytest.raises(SourceError) as missing:
        await connector.fetch("SELECT * FROM nope")
    expected = {
        "postgres": 'relation "nope" does not exist',
        "mysql": f"Table '{target.namespace}.nope' doesn't exist",
        "sqlite": "no such table: nope",
        "duckdb": "Table with name nope does not exist!",
    }[target.dialect]
    assert str(missing.value) == expected
    with pytest.raises(SourceError) as bad:
        await connector.fetch("SELEC 1")
    assert "\n" not in str(bad.value) and "SELEC" in str(bad.value)


async def test_statement_timeout_cuts_the_query(seeded: tuple[SqlTarget, SqlConnector]) -> None:
    target, connector = seeded
    started = time.perf_counter()
    with pytest.raises(SourceError) as info:
        await connector.fetch(target.slow_query, timeout=1.0)
    assert str(info.value) == "statement timeout after 1s"
    assert time.perf_counter() - started < 3.5
    # The source is usable right after.
    assert (await connector.fetch("SELECT count(*) AS n FROM payments")).rows == [(5,)]


async def test_params_misuse_is_a_clear_error(seeded: tuple[SqlTarget, SqlConnector]) -> None:
    _, connector = seeded
    with pytest.raises(SourceError, match=r"no value for parameter :status"):
        await connector.fetch(AMOUNTS, {"state": "pending"})
    with pytest.raises(SourceError, match=r"has 2 \? placeholders but 1 params"):
        await connector.fetch("SELECT ? AS a, ? AS b", [1])


async def test_killed_mid_query_fails_then_the_next_call_reconnects(
    server_target: SqlTarget,
) -> None:
    await server_target.seed_payments()
    name = unique("src")
    connector = open_connector(name, server_target.source)
    try:
        assert (await connector.fetch("SELECT count(*) AS n FROM payments")).rows == [(5,)]
        slow = asyncio.create_task(connector.fetch(server_target.slow_query, timeout=10))
        for _ in range(50):  # until the slow query is running on the server
            await asyncio.sleep(0.1)
            if await server_target.kill_agent_connections(name):
                break
        with pytest.raises(SourceError) as info:
            await slow
        assert str(info.value).startswith("connection lost: "), str(info.value)
        # Killed between calls too: the idle connection is found dead and replaced.
        assert (await connector.fetch("SELECT count(*) AS n FROM payments")).rows == [(5,)]
        await asyncio.sleep(1.1)  # idle long enough to be checked before reuse
        assert await server_target.kill_agent_connections(name) == 1
        assert (await connector.fetch("SELECT count(*) AS n FROM payments")).rows == [(5,)]
    finally:
        await connector.aclose()


async def test_connect_refused(server_target: SqlTarget, closed_port: int) -> None:
    connector = open_connector(unique("src"), server_target.at_port(closed_port))
    with pytest.raises(SourceError) as info:
        await connector.fetch("SELECT 1 AS one")
    assert str(info.value) == f"connect refused 127.0.0.1:{closed_port}"
    await connector.aclose()


async def test_wrong_password_names_the_user_not_the_password(server_target: SqlTarget) -> None:
    user = await server_target.user_with_password("right-pw-8431")
    wrong = "wrong-pw-5527"
    connector = open_connector(unique("src"), server_target.with_login(user, wrong))
    try:
        try:
            rows = await connector.fetch("SELECT 1 AS one")
        except SourceError as exc:
            assert str(exc) == f"authentication failed for user '{user}'"
            assert wrong not in str(exc)
        else:
            # This PostgreSQL trusts loopback logins (pg_hba `trust`), so it never checks a
            # password; its authentication-failure path is covered by the unknown-role test.
            assert server_target.dialect == "postgres" and rows.rows == [(1,)]
    finally:
        await connector.aclose()


async def test_unknown_postgres_role_is_an_authentication_failure() -> None:
    require_tcp("PostgreSQL", "127.0.0.1", 5432)
    secret = "never-shown-9917"
    spec = PostgresSource(
        kind="postgres", dsn="postgresql://nobody_here@127.0.0.1:5432/test", password=secret
    )
    connector = open_connector(unique("src"), spec)
    with pytest.raises(SourceError) as info:
        await connector.fetch("SELECT 1 AS one")
    assert str(info.value) == "authentication failed for user 'nobody_here': role does not exist"
    await connector.aclose()


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb"])
async def test_a_missing_file_is_a_clear_error(dialect: str, tmp_path: Path) -> None:
    target = await make_sql_target(dialect, tmp_path)
    missing = target.path.with_name("missing.db")
    spec = target.source.model_copy(update={"path": missing})
    connector = open_connector(unique("src"), spec)
    with pytest.raises(SourceError) as info:
        await connector.fetch("SELECT 1 AS one")
    assert str(info.value) == f"cannot open {missing}: no such file"
    assert not missing.exists()  # read-only: never created


async def test_duckdb_cannot_reach_other_files(tmp_path: Path) -> None:
    target = await make_sql_target("duckdb", tmp_path)
    await target.seed_payments()
    connector = open_connector(unique("src"), target.source)
    out = tmp_path / "leak.csv"
    for statement in (
        f"COPY payments TO '{out}'",
        f"SELECT * FROM read_csv('{target.path}')",
        "SET enable_external_access = true",
    ):
        with pytest.raises(SourceError):
            await connector.fetch(statement)
    assert not out.exists()
    [(aware,)] = (await connector.fetch("SELECT TIMESTAMPTZ '2026-11-24 08:00:00+00' AS ts")).rows
    assert aware.utcoffset() is not None and aware.timestamp() == 1795507200.0
    assert (await connector.fetch("SELECT now()::TIMESTAMP IS NOT NULL AS ok")).rows == [(True,)]
    await connector.aclose()


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
async def test_a_silent_server_is_a_connect_timeout(dialect: str, tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, never answer, wait for the client to give up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec = (
        PostgresSource(kind="postgres", dsn=f"postgresql://postgres@127.0.0.1:{port}/test")
        if dialect == "postgres"
        else MysqlSource(kind="mysql", port=port)
    )
    connector = open_connector(unique("src"), spec)
    started = time.perf_counter()
    try:
        with pytest.raises(SourceError) as info:
            await connector.fetch("SELECT 1 AS one", timeout=1.0)
        assert str(info.value) == f"connect timed out after 1s (127.0.0.1:{port})"
        assert time.perf_counter() - started < 2.5
    finally:
        await connector.aclose()
        server.close()
