"""The write path: one transaction, touched-row limit with rollback, dry runs, no pooling."""

from __future__ import annotations

import pytest

from agent.connectors import SourceError
from agent.connectors.writes import (
    Statement,
    TooManyRows,
    execute_in_transaction,
    quote_identifier,
    write_transaction,
)
from tests.databases import SqlTarget, make_sql_target

DIALECTS = ["postgres", "mysql", "sqlite"]


@pytest.fixture(params=DIALECTS)
async def target(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    t = await make_sql_target(request.param, tmp_path)
    await t.seed_payments()
    try:
        yield t
    finally:
        await t.cleanup()


async def statuses(target: SqlTarget) -> str:
    return str(
        await target.scalar(
            "SELECT "
            + (
                "string_agg(status, ',' ORDER BY id)"
                if target.dialect == "postgres"
                else "group_concat(status, ',')"
                if target.dialect == "sqlite"
                else "group_concat(status ORDER BY id SEPARATOR ',')"
            )
            + " FROM payments"
        )
    )


async def test_commits_and_counts(target: SqlTarget) -> None:
    counts = await execute_in_transaction(
        "t",
        target.source,
        [
            Statement("UPDATE payments SET status = :s WHERE status = 'pending'", {"s": "queued"}),
            Statement("UPDATE payments SET status = 'x' WHERE id = ?", [5]),
        ],
        max_rows=10,
    )
    assert counts == [3, 1]
    assert await statuses(target) == "queued,queued,paid,queued,x"


async def test_over_max_rows_rolls_everything_back(target: SqlTarget) -> None:
    before = await statuses(target)
    with pytest.raises(TooManyRows, match="would touch 4 rows, more than max_rows 3"):
        await execute_in_transaction(
            "t",
            target.source,
            [
                Statement("UPDATE payments SET status = 'a' WHERE id = 5"),
                Statement("UPDATE payments SET status = 'b' WHERE status = 'pending'"),
            ],
            max_rows=3,
        )
    assert await statuses(target) == before


async def test_dry_run_counts_without_changing(target: SqlTarget) -> None:
    before = await statuses(target)
    async with write_transaction("t", target.source, max_rows=10, commit=False) as tx:
        assert await tx.execute("UPDATE payments SET status = 'z' WHERE amount < 50") == 4
        rows = await tx.fetch("SELECT count(*) FROM payments WHERE status = 'z'")
        assert rows.rows[0][0] == 4
    assert await statuses(target) == before


async def test_errors_roll_back_and_are_one_line(target: SqlTarget) -> None:
    before = await statuses(target)
    with pytest.raises(SourceError):
        async with write_transaction("t", target.source, max_rows=10) as tx:
            await tx.execute("UPDATE payments SET status = 'q' WHERE id = 1")
            await tx.execute("UPDATE no_such_table SET x = 1")
    assert await statuses(target) == before


@pytest.mark.parametrize(
    ("name", "dialect", "quoted"),
    [("inventory", "postgres", '"inventory"'), ("shop.stock", "mysql", "`shop`.`stock`")],
)
def test_identifiers_are_quoted(name: str, dialect: str, quoted: str) -> None:
    assert quote_identifier(name, dialect) == quoted  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a;drop", 'x"y', "1abc", "a..b"])
def test_bad_identifiers_are_refused(name: str) -> None:
    with pytest.raises(SourceError, match="invalid identifier"):
        quote_identifier(name, "postgres")


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
async def test_the_read_path_stays_read_only_after_a_write(dialect: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from agent.connectors import open_connector

    db = await make_sql_target(dialect, tmp_path)
    try:
        await db.seed_payments()
        reader = open_connector("t", db.source)
        try:
            await reader.fetch("SELECT 1")  # type: ignore[union-attr]
            await execute_in_transaction(
                "t",
                db.source,
                [Statement("UPDATE payments SET status = 'w' WHERE id = 1")],
                max_rows=1,
            )
            with pytest.raises(SourceError, match="read-only"):
                await reader.fetch("UPDATE payments SET status = 'r' WHERE id = 2")  # type: ignore[union-attr]
        finally:
            await reader.aclose()
        assert await db.scalar("SELECT status FROM payments WHERE id = 2") == "pending"
        assert await db.scalar("SELECT status FROM payments WHERE id = 1") == "w"
    finally:
        await db.cleanup()


async def test_a_failed_login_never_shows_the_password(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # MariaDB: the test PostgreSQL trusts loopback logins, so it accepts any password.
    db = await make_sql_target("mysql", tmp_path)
    try:
        user = await db.user_with_password("right-pass-4821")
        source = db.with_login(user, "wrong-pass-9917")
        with pytest.raises(SourceError) as failed:
            await execute_in_transaction("t", source, [Statement("SELECT 1")], max_rows=1)
        assert "wrong-pass-9917" not in str(failed.value)
        assert "Access denied" in str(failed.value)
    finally:
        await db.cleanup()
