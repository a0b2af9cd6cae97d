"""The sql probe on real PostgreSQL, MariaDB, SQLite and DuckDB, run through the runner.

Every failure must come back as a failed result with a clear one-line reason: never an
exception, never a hang, never the password.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from agent.probe_spec import RunContext
from agent.redaction import Redactor
from agent.results import ProbeResult, Status
from agent.runner import run_probe
from agent.sources import SourceSpec
from probes.sql import SqlSpec, json_value
from tests import databases
from tests.databases import SqlTarget, unique

sql_target = databases.sql_target
server_target = databases.server_target
closed_port = databases.closed_port

STUCK = "SELECT count(*) AS stuck, sum(amount) AS amount_at_risk, min(id) AS first_id FROM payments WHERE status = :status"
EVIDENCE = "SELECT id, order_id, amount FROM payments WHERE status = :status ORDER BY id"


def spec(**fields: Any) -> SqlSpec:
    return SqlSpec.model_validate({"name": "payments", "kind": "sql", "source": "db", **fields})


@pytest.fixture
async def seeded(sql_target: SqlTarget) -> AsyncIterator[tuple[SqlTarget, RunContext]]:
    await sql_target.seed_payments()
    ctx = RunContext(sources={"db": sql_target.source})
    try:
        yield sql_target, ctx
    finally:
        await ctx.aclose()


async def test_values_and_exact_evidence(seeded: tuple[SqlTarget, RunContext]) -> None:
    _, ctx = seeded
    probe = spec(
        query=STUCK, evidence=EVIDENCE, params={"status": "pending"}, expect=["stuck == 0"]
    )
    result = await run_probe(probe, ctx)
    assert result.error is None
    assert result.values == {"stuck": 3, "amount_at_risk": 35.75, "first_id": 1}
    assert result.evidence == [
        {"id": 1, "order_id": 101, "amount": 10.5},
        {"id": 2, "order_id": 102, "amount": 20.25},
        {"id": 4, "order_id": 104, "amount": 5},
    ]
    assert result.status is Status.FAIL
    assert len(result.failed) == 1 and result.failed[0].startswith("stuck == 0")
    assert result.detail.startswith("stuck=3, amount_at_risk=35.75, first_id=1 (")
    assert result.detail.endswith("; evidence: 3 rows")
    healthy = await run_probe(spec(query=STUCK, params={"status": "refunded"}), ctx)
    assert healthy.status is Status.OK and healthy.values["stuck"] == 0


async def test_positional_params_and_evidence_limit(seeded: tuple[SqlTarget, RunContext]) -> None:
    _, ctx = seeded
    probe = spec(
        query="SELECT count(*) AS n FROM payments WHERE status = ? AND amount > ?",
        evidence="SELECT id FROM payments WHERE status = ? AND amount > ? ORDER BY id",
        params=["pending", 6],
        evidence_limit=1,
    )
    result = await run_probe(probe, ctx)
    assert result.values == {"n": 2}
    assert result.evidence == [{"id": 1}]
    assert result.detail.endswith("; evidence: 1 or more rows")


async def test_no_rows_means_no_values(seeded: tuple[SqlTarget, RunContext]) -> None:
    _, ctx = seeded
    result = await run_probe(
        spec(query="SELECT id AS newest FROM payments WHERE id < 0", expect=["newest > 0"]), ctx
    )
    assert result.values == {}
    assert result.detail == "query returned no rows"
    assert result.status is Status.FAIL
    assert "newest is missing" in result.failed[0]


async def test_more_rows_use_the_first(seeded: tuple[SqlTarget, RunContext]) -> None:
    _, ctx = seeded
    result = await run_probe(spec(query="SELECT id FROM payments ORDER BY id DESC"), ctx)
    assert result.values == {"id": 5}
    assert "more than one row, the first is used" in result.detail


async def test_an_injection_attempt_is_inert(seeded: tuple[SqlTarget, RunContext]) -> None:
    target, ctx = seeded
    result = await run_probe(
        spec(query=STUCK, params={"status": "pending' OR '1'='1'; DELETE FROM payments; --"}), ctx
    )
    assert result.values["stuck"] == 0
    await ctx.aclose()
    assert await target.scalar("SELECT count(*) FROM payments") == 5


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payments SET status = 'paid'",
        "DELETE FROM payments",
        "WITH doomed AS (SELECT id FROM payments) DELETE FROM payments WHERE id IN (SELECT id FROM doomed)",
        "CREATE TABLE intruder (id INTEGER)",
    ],
    ids=["update", "delete", "with-delete", "create-table"],
)
async def test_a_query_that_writes_fails_and_changes_nothing(
    seeded: tuple[SqlTarget, RunContext], statement: str
) -> None:
    target, ctx = seeded
    result = await run_probe(spec(query=statement), ctx)
    assert result.status is Status.FAIL
    assert result.error is not None and "\n" not in result.error
    if not (target.dialect == "mysql" and statement.startswith("WITH")):
        assert result.error.startswith("read-only: "), result.error
    await ctx.aclose()
    assert await target.scalar("SELECT count(*) FROM payments WHERE status = 'paid'") == 1
    assert await target.scalar("SELECT count(*) FROM payments") == 5


async def test_bad_query_missing_table_and_timeout_fail_clearly(
    seeded: tuple[SqlTarget, RunContext],
) -> None:
    target, ctx = seeded
    bad = await run_probe(spec(query="SELEC 1"), ctx)
    assert bad.status is Status.FAIL and bad.error and "SELEC" in bad.error
    missing = await run_probe(spec(query="SELECT count(*) AS n FROM nope"), ctx)
    assert missing.status is Status.FAIL and missing.error and "nope" in missing.error
    started = time.perf_counter()
    # 80% of a 1.25s timeout goes to the server: 1s.
    slow = await run_probe(spec(query=target.slow_query, timeout="1250ms"), ctx)
    assert time.perf_counter() - started < 2.5
    assert slow.status is Status.FAIL
    assert slow.error == "statement timeout after 1s"
    broken_evidence = await run_probe(
        spec(query="SELECT 1 AS one", evidence="SELECT * FROM nope"), ctx
    )
    assert broken_evidence.error is not None
    assert broken_evidence.error.startswith("evidence query: ")
    assert broken_evidence.values == {"one": 1}
    again = await run_probe(spec(query="SELECT count(*) AS n FROM payments"), ctx)
    assert again.status is Status.OK and again.values == {"n": 5}


async def test_killed_mid_run_fails_then_the_next_run_succeeds(server_target: SqlTarget) -> None:
    await server_target.seed_payments()
    name = unique("src")
    ctx = RunContext(sources={name: server_target.source})
    try:
        slow = asyncio.create_task(
            run_probe(spec(source=name, query=server_target.slow_query, timeout="8s"), ctx)
        )
        for _ in range(50):
            await asyncio.sleep(0.1)
            if await server_target.kill_agent_connections(name):
                break
        failed = await slow
        assert failed.status is Status.FAIL
        assert failed.error is not None and failed.error.startswith("connection lost: ")
        ok = await run_probe(spec(source=name, query="SELECT count(*) AS n FROM payments"), ctx)
        assert ok.status is Status.OK and ok.values == {"n": 5}
    finally:
        await ctx.aclose()


async def test_connect_refused_is_a_failed_result(
    server_target: SqlTarget, closed_port: int
) -> None:
    ctx = RunContext(sources={"db": server_target.at_port(closed_port)})
    result = await run_probe(spec(query="SELECT 1 AS one"), ctx)
    assert result.status is Status.FAIL
    assert result.error == f"connect refused 127.0.0.1:{closed_port}"
    await ctx.aclose()


async def test_the_password_never_shows(
    server_target: SqlTarget, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "Pw-sekrit-4471"
    user = await server_target.user_with_password("other-pw-1")
    source: SourceSpec = server_target.with_login(user, password)
    ctx = RunContext(sources={"db": source})
    redactor = Redactor.from_model(source)
    results: list[ProbeResult] = []
    try:
        for query in ("SELECT 1 AS one", f"SELECT '{password}' AS leak FROM nope"):
            results.append(await run_probe(spec(query=query), ctx, redactor=redactor))
    finally:
        await ctx.aclose()
    if server_target.dialect == "mysql":
        assert results[0].error == f"authentication failed for user '{user}'"
    for result in results:
        assert password not in result.model_dump_json()
    assert password not in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.50"), 12.5),
        (Decimal("3"), 3),
        (Decimal("NaN"), None),
        (timedelta(minutes=2), 120.0),
        (datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (date(2024, 1, 2), "2024-01-02"),
        (b"\x01\xff", "01ff"),
        (UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ({"a": [Decimal("1.5")]}, {"a": [1.5]}),
        (True, True),
    ],
    ids=[
        "decimal",
        "integral-decimal",
        "nan",
        "interval",
        "datetime",
        "date",
        "bytes",
        "uuid",
        "nested",
        "bool",
    ],
)
def test_json_values(value: Any, expected: Any) -> None:
    assert json_value(value) == expected
