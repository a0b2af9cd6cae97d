"""resync into a Redis hash (a reconcile side given as `hash:`), and its undo."""

from __future__ import annotations

from pathlib import Path

from agent.probe_spec import RunContext
from probes import reconcile
from probes.reconcile import ReconcileSpec
from remediations import resync, undo
from remediations._base import Target
from remediations.resync import ResyncSpec
from tests.databases import RedisTarget, make_sql_target, redis_target  # noqa: F401

SPEC = ResyncSpec.model_validate({"name": "resync-cache", "kind": "resync", "mode": "auto"})


async def test_resync_a_redis_hash_and_undo_it(redis_target: RedisTarget, tmp_path: Path) -> None:  # noqa: F811
    db = await make_sql_target("postgres", tmp_path)
    hash_key = redis_target.key("stock")
    try:
        await db.execute(
            "CREATE TABLE inventory (sku INTEGER PRIMARY KEY, available INTEGER NOT NULL)",
            "INSERT INTO inventory SELECT i, 100 + i FROM generate_series(1, 10) AS i",
        )
        values = {str(i): str(100 + i) for i in range(1, 11)} | {"3": "7", "8": "0"}
        await redis_target.admin.hset(hash_key, mapping=dict(values))  # type: ignore[arg-type]
        ctx = RunContext(
            base_dir=tmp_path, sources={"shop": db.source, "cache": redis_target.source}
        )
        probe = ReconcileSpec.model_validate(
            {"name": "cache-stock", "kind": "reconcile", "mode": "full", "key": ["sku"], "compare": ["available"],
             "left": {"source": "shop", "query": "SELECT sku, available FROM inventory"},
             "right": {"source": "cache", "hash": hash_key}, "truth": "left"}
        )  # fmt: skip
        try:
            observation = await reconcile.run(probe, ctx)
            assert observation.values["mismatched"] == 2
            target = Target("cache-stock", 1, observation.evidence or [], probe)
            plan = await resync.plan(SPEC, target, ctx)
            assert {
                c.key["field"]: (c.before["value"], c.after["value"]) for c in plan.changes
            } == {
                "3": ("7", "103"),
                "8": ("0", "108"),
            }
            assert (await resync.run(SPEC, plan, ctx)).ok
            fixed = await redis_target.admin.hgetall(hash_key)
            assert fixed == {str(i): str(100 + i) for i in range(1, 11)}
            assert (await reconcile.run(probe, ctx)).values["mismatched"] == 0

            await redis_target.admin.hset(hash_key, "8", "55")  # changed since the run
            blocked = await undo.run(undo.reverse(plan), ctx, max_rows=10, timeout=5)
            assert not blocked.ok and "changed since the plan" in blocked.detail
            assert await redis_target.admin.hget(hash_key, "3") == "103"  # nothing written
            await redis_target.admin.hset(hash_key, "8", "108")
            assert (await undo.run(undo.reverse(plan), ctx, max_rows=10, timeout=5)).ok
            assert await redis_target.admin.hgetall(hash_key) == values
        finally:
            await ctx.aclose()
    finally:
        await db.cleanup()
