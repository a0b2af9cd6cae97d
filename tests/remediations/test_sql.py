"""The sql kind against real PostgreSQL and MariaDB: dry-run plans, per-row params, max_rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.probe_spec import RunContext
from remediations import sql
from remediations._base import Target
from remediations.sql import SqlSpec
from tests.databases import SqlTarget, make_sql_target

REQUEUE = "UPDATE payments SET status = 'queued' WHERE id = :id AND status = 'pending'"


@pytest.fixture(params=["postgres", "mysql", "sqlite"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlTarget]:
    target = await make_sql_target(request.param, tmp_path)
    await target.seed_payments()
    try:
        yield target
    finally:
        await target.cleanup()


def spec(**fields: object) -> SqlSpec:
    return SqlSpec.model_validate(
        {
            "name": "requeue",
            "kind": "sql",
            "source": "shop",
            "statement": REQUEUE,
            "per_row": True,
            **fields,
        }
    )


async def queued(db: SqlTarget) -> int:
    return int(await db.scalar("SELECT count(*) FROM payments WHERE status = 'queued'"))


STUCK = Target(
    "stuck-payments", evidence=[{"id": 1, "amount": 10.5}, {"id": 2, "amount": 20.25}, {"id": 4}]
)


async def test_plan_counts_rows_without_changing_them_then_run_commits(
    db: SqlTarget, tmp_path: Path
) -> None:
    ctx = RunContext(base_dir=tmp_path, sources={"shop": db.source})
    plan = await sql.plan(spec(), STUCK, ctx)
    assert plan.rows == 3 and plan.detail["params"][0] == {"id": 1, "amount": 10.5}
    assert await queued(db) == 0
    result = await sql.run(spec(), plan, ctx)
    assert result.ok and await queued(db) == 3


async def test_over_max_rows_is_refused_and_rolled_back(db: SqlTarget, tmp_path: Path) -> None:
    ctx = RunContext(base_dir=tmp_path, sources={"shop": db.source})
    plan = await sql.plan(spec(max_rows=2), STUCK, ctx)
    assert plan.rows == 3  # so the guard refuses it
    result = await sql.run(spec(max_rows=2), plan, ctx)
    assert not result.ok and "more than max_rows 2" in result.detail
    assert await queued(db) == 0


def test_reconcile_evidence_flattens_to_parameters() -> None:
    row = {"key": {"sku": "a"}, "left": {"n": 1}, "right": None, "kind": "missing_right"}
    assert sql.flatten(row) == {"key_sku": "a", "left_n": 1, "right": None, "kind": "missing_right"}


async def test_captured_rows_make_a_sql_run_undoable(db: SqlTarget, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from agent.redaction import Redactor
    from agent.store import Store
    from remediations.flow import Remediator
    from remediations.guard import Guard

    ctx = RunContext(base_dir=tmp_path, sources={"shop": db.source})
    captured = spec(
        mode="auto", capture={"table": "payments", "key": {"id": "id"}, "columns": ["status"]}
    )
    plan = await sql.plan(captured, STUCK, ctx)
    assert [(c.key, c.before, c.after) for c in plan.changes] == [
        ({"id": i}, {"status": "pending"}, {"status": "queued"}) for i in (1, 2, 4)
    ]
    assert await queued(db) == 0  # the plan's transaction was rolled back
    store = Store.open(tmp_path / "s.duckdb")
    await store.start()
    try:
        remediator = Remediator(store, Guard(), ctx, Redactor(), lambda: datetime.now(UTC))
        done = await remediator.request(captured, STUCK, actor="auto")
        assert done.state == "succeeded" and await queued(db) == 3
        undone = await remediator.undo(captured, done.run_id, actor="cli:alice")
        assert undone.state == "succeeded", undone.result
        assert await queued(db) == 0
        assert int(await db.scalar("SELECT count(*) FROM payments WHERE status = 'pending'")) == 3
    finally:
        await store.close()
