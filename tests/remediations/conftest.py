"""Shared fixtures: a shop/warehouse pair with stock drift on real PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.probe_spec import RunContext
from agent.results import Observation
from probes import reconcile
from probes.reconcile import ReconcileSpec
from remediations._base import Target
from tests.databases import SqlTarget, make_sql_target
from tests.running_agent import start_agent  # noqa: F401  (a fixture for the agent tests)

SKUS = [f"sku-{i:02d}" for i in range(20)]
DRIFTED = {"sku-03": 7, "sku-11": 0, "sku-17": 42}  # shop's wrong value per drifted key


@dataclass
class Shop:
    """Warehouse (truth) and shop tables in one namespace, and a context that reads both."""

    db: SqlTarget
    ctx: RunContext
    probe: ReconcileSpec

    async def inventory(self) -> list[tuple[Any, ...]]:
        rows = await self.ctx.connector("shop").fetch(  # type: ignore[union-attr]
            "SELECT sku, available, name, price FROM inventory ORDER BY sku"
        )
        return rows.rows

    async def observe(self) -> Observation:
        return await reconcile.run(self.probe, self.ctx)

    async def target(self) -> Target:
        observation = await self.observe()
        return Target(
            self.probe.name, incident_id=1, evidence=observation.evidence or [], probe=self.probe
        )


@pytest.fixture(params=["postgres", "mysql"])
async def shop(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Shop]:
    db = await make_sql_target(request.param, tmp_path)
    stock = ", ".join(f"('{s}', {100 + i}, {i % 3})" for i, s in enumerate(SKUS))
    inventory = ", ".join(
        f"('{s}', {DRIFTED.get(s, 100 + i - i % 3)}, 'Item {i}', {i}.{i:02d})"
        for i, s in enumerate(SKUS)
    )
    await db.execute(
        "CREATE TABLE stock (sku VARCHAR(20) PRIMARY KEY, on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL)",
        "CREATE TABLE inventory (sku VARCHAR(20) PRIMARY KEY, available INTEGER NOT NULL, "
        "name VARCHAR(40) NOT NULL, price DECIMAL(10, 2) NOT NULL)",
        f"INSERT INTO stock VALUES {stock}",
        f"INSERT INTO inventory VALUES {inventory}",
    )
    ctx = RunContext(base_dir=tmp_path, sources={"warehouse": db.source, "shop": db.source})
    probe = ReconcileSpec.model_validate(
        {
            "name": "stock-drift",
            "kind": "reconcile",
            "left": {
                "source": "warehouse",
                "query": "SELECT sku, on_hand - reserved AS available FROM stock",
            },
            "right": {"source": "shop", "query": "SELECT sku, available FROM inventory"},
            "key": ["sku"],
            "compare": ["available"],
            "truth": "left",
            "mode": "full",
        }
    )
    try:
        yield Shop(db, ctx, probe)
    finally:
        await ctx.aclose()
        await db.cleanup()
