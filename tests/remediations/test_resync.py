"""resync and undo against real PostgreSQL and MariaDB: exactly the drifted rows, exactly back."""

from __future__ import annotations

import pytest

from agent.errors import RemediationRefused
from remediations import resync, undo
from remediations.resync import ResyncSpec
from tests.remediations.conftest import DRIFTED, Shop


def spec(**fields: object) -> ResyncSpec:
    return ResyncSpec.model_validate(
        {"name": "resync-stock", "kind": "resync", "table": "inventory", "mode": "auto", **fields}
    )


async def test_resync_fixes_exactly_the_drifted_rows_and_undo_restores_them(shop: Shop) -> None:
    broken = await shop.inventory()
    target = await shop.target()
    assert (await shop.observe()).values["mismatched"] == 3

    plan = await resync.plan(spec(), target, shop.ctx)
    assert sorted(c.key["sku"] for c in plan.changes) == sorted(DRIFTED)
    assert {c.key["sku"]: c.before["available"] for c in plan.changes} == DRIFTED
    assert await shop.inventory() == broken  # planning changed nothing

    result = await resync.run(spec(), plan, shop.ctx)
    assert result.ok, result.error
    fixed = await shop.inventory()
    assert (await shop.observe()).values["mismatched"] == 0  # verification passes
    changed = [(b, a) for b, a in zip(broken, fixed, strict=True) if b != a]
    assert sorted(b[0] for b, _ in changed) == sorted(DRIFTED)
    for before, after in changed:  # only `available` moved
        assert before[0] == after[0] and before[2:] == after[2:]
    unchanged = [b for b in broken if b[0] not in DRIFTED]
    assert unchanged == [a for a in fixed if a[0] not in DRIFTED]  # same values, same types

    reverse = undo.reverse(plan, run_id=1)
    undone = await undo.run(reverse, shop.ctx, max_rows=10, timeout=10)
    assert undone.ok, undone.error
    assert await shop.inventory() == broken  # byte-identical to before the repair


async def test_a_plan_over_max_rows_is_refused_and_nothing_changes(shop: Shop) -> None:
    broken = await shop.inventory()
    plan = await resync.plan(spec(max_rows=2), await shop.target(), shop.ctx)
    assert plan.rows == 3
    result = await resync.run(spec(max_rows=2), plan, shop.ctx)
    assert not result.ok and "more than max_rows 2" in result.detail
    assert await shop.inventory() == broken


async def test_a_row_changed_since_the_plan_is_not_overwritten(shop: Shop) -> None:
    plan = await resync.plan(spec(), await shop.target(), shop.ctx)
    await shop.db.execute("UPDATE inventory SET available = 5 WHERE sku = 'sku-11'")
    before = await shop.inventory()
    result = await resync.run(spec(), plan, shop.ctx)
    assert not result.ok and "changed since the plan" in result.detail
    assert await shop.inventory() == before  # all or nothing


async def test_keys_that_agree_again_are_skipped(shop: Shop) -> None:
    target = await shop.target()
    await shop.db.execute("UPDATE inventory SET available = 103 WHERE sku = 'sku-03'")
    plan = await resync.plan(spec(), target, shop.ctx)
    assert sorted(c.key["sku"] for c in plan.changes) == ["sku-11", "sku-17"]
    assert any("agrees again" in s for s in plan.skipped)


async def test_resync_needs_a_reconcile_incident(shop: Shop) -> None:
    target = await shop.target()
    with pytest.raises(RemediationRefused, match="reconcile incidents only"):
        await resync.plan(spec(), type(target)("x", evidence=target.evidence), shop.ctx)


@pytest.mark.parametrize(
    ("query", "table"),
    [
        ("SELECT sku, available FROM inventory", "inventory"),
        ("select sku,available from shop.inventory;", "shop.inventory"),
        ("SELECT sku, on_hand - reserved AS available FROM stock", None),
        ("SELECT sku, available FROM inventory WHERE active", None),
    ],
)
def test_the_table_is_inferred_only_from_a_plain_query(query: str, table: str | None) -> None:
    assert resync.plain_table(query) == table


async def test_the_design_example_without_table_works(shop: Shop) -> None:
    design = ResyncSpec.model_validate(
        {"name": "resync-stock", "kind": "resync", "mode": "auto", "max_rows": 500,
         "cooldown": "10m", "max_attempts": "3 per 1h"}
    )  # fmt: skip
    plan = await resync.plan(design, await shop.target(), shop.ctx)
    assert plan.detail["table"] == "inventory" and len(plan.changes) == 3
