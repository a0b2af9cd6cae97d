"""The reconcile recipes in docs/recipes.md run against real servers and find exactly what they should.

Each recipe's probe is taken from the doc as written; only its sources are pointed at
throw-away namespaces (a PostgreSQL schema, a MariaDB database, a Redis database) that
hold the tables the recipe's queries name, seeded with known drift.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent.config_loader import parse_config
from agent.probe_spec import ProbeSpec, RunContext
from agent.results import ProbeResult, Status
from agent.runner import run_probe
from agent.sources import RedisSource
from tests.databases import HOST, REDIS_PORT, SqlTarget, make_sql_target
from tests.services import require_tcp

DOC = Path(__file__).resolve().parents[2] / "docs" / "recipes.md"
REDIS_DB = 11  # away from db 0 (the application's) and db 9 (the sql/redis recipes' tests)


class AnyEnv(Mapping[str, str]):
    """Every `${VAR}` in the recipes is set: they need no real secrets to load."""

    def __getitem__(self, key: str) -> str:
        return "recipe-secret"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def reconcile_recipes() -> dict[str, ProbeSpec]:
    """Every reconcile probe of the doc, by name."""
    section = DOC.read_text(encoding="utf-8").split("\n## Reconciliation", 1)[1]
    found: dict[str, ProbeSpec] = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        config = parse_config(block, str(DOC), base_dir=DOC.parent, env=AnyEnv())
        found.update({p.name: p for p in config.probes if p.kind == "reconcile"})
    return found


RECIPES = reconcile_recipes()


def test_the_doc_has_the_reconcile_recipes() -> None:
    assert set(RECIPES) == {"stock-drift", "cache-stock", "captured-but-unpaid"}


# --- the data, and what each recipe must find -------------------------------------

WAREHOUSE = [
    "CREATE TABLE stock (sku INT PRIMARY KEY, on_hand INT NOT NULL, reserved INT NOT NULL)",
    # available: 1 -> 8, 2 -> 5, 3 -> 6, 4 -> 3
    "INSERT INTO stock VALUES (1, 10, 2), (2, 5, 0), (3, 7, 1), (4, 3, 0)",
    "CREATE TABLE provider_captures (id INT PRIMARY KEY, order_id INT NOT NULL, "
    "amount DECIMAL(10, 2) NOT NULL, status VARCHAR(20) NOT NULL)",
    "INSERT INTO provider_captures VALUES (1, 1, 10.00, 'captured'), (2, 2, 20.00, 'captured'), "
    "(3, 3, 5.00, 'captured'), (4, 3, 2.50, 'captured'), (5, 4, 30.00, 'captured'), "
    "(6, 6, 9.99, 'refunded'), (7, 7, 15.01, 'captured')",
]
SHOP = [
    "CREATE TABLE inventory (sku INT PRIMARY KEY, available INT NOT NULL)",
    "INSERT INTO inventory VALUES (1, 8), (2, 6), (3, 6), (5, 9)",
    "CREATE TABLE orders (id INT PRIMARY KEY, status TEXT NOT NULL, total NUMERIC(10, 2) NOT NULL)",
    # 2 is still pending though captured; 3 was captured in two parts; 4's amount
    # differs; 5 is paid with no capture; 6 was refunded; 7 is a cent off (tolerated).
    "INSERT INTO orders VALUES (1, 'paid', 10.00), (2, 'pending', 20.00), (3, 'shipped', 7.50), "
    "(4, 'paid', 31.00), (5, 'delivered', 12.00), (6, 'refunded', 9.99), (7, 'paid', 15.00)",
]
CACHE: dict[Any, Any] = {"1": "8", "2": "5", "3": "60", "5": "9"}


def evidence(key: dict[str, Any], left: Any, right: Any, kind: str) -> dict[str, Any]:
    return {"key": key, "left": left, "right": right, "kind": kind, "truth": "left"}


EXPECTED: dict[str, tuple[dict[str, int], list[dict[str, Any]], list[str]]] = {
    "stock-drift": (
        {"mismatched": 1, "missing_right": 1, "missing_left": 1, "checked": 5},
        [
            evidence({"sku": 2}, {"available": 5}, {"available": 6}, "mismatch"),
            evidence({"sku": 4}, {"available": 3}, None, "missing_right"),
            evidence({"sku": 5}, None, {"available": 9}, "missing_left"),
        ],
        ["mismatched == 0", "missing_right == 0"],
    ),
    "cache-stock": (
        {"mismatched": 2, "missing_right": 0, "missing_left": 0, "checked": 4},
        [
            evidence({"sku": 2}, {"available": 6}, {"available": 5}, "mismatch"),
            evidence({"sku": 3}, {"available": 6}, {"available": 60}, "mismatch"),
        ],
        ["mismatched == 0"],
    ),
    "captured-but-unpaid": (
        {"mismatched": 1, "missing_right": 1, "missing_left": 1, "checked": 6},
        [
            evidence({"order_id": 2}, {"amount": 20}, None, "missing_right"),
            evidence({"order_id": 4}, {"amount": 30}, {"amount": 31}, "mismatch"),
            evidence({"order_id": 5}, None, {"amount": 12}, "missing_left"),
        ],
        ["missing_right == 0", "missing_left == 0", "mismatched == 0"],
    ),
}


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RunContext]:
    """The recipes' sources (shop, warehouse, payments, cache) on seeded throw-away namespaces."""
    require_tcp("Redis", HOST, REDIS_PORT)
    targets: list[SqlTarget] = []
    try:
        maria = await make_sql_target("mysql", tmp_path)
        targets.append(maria)
        pg = await make_sql_target("postgres", tmp_path)
        targets.append(pg)
        await maria.execute(*WAREHOUSE)
        await pg.execute(*SHOP)
        url = f"redis://{HOST}:{REDIS_PORT}/{REDIS_DB}"
        client = aioredis.Redis.from_url(url)
        await client.delete("stock:available")
        await client.hset("stock:available", mapping=CACHE)
        context = RunContext(
            base_dir=tmp_path,
            sources={
                "warehouse": maria.source,
                "payments": maria.source,
                "shop": pg.source,
                "cache": RedisSource(kind="redis", url=url),
            },
        )
        yield context
        await context.aclose()
        await client.delete("stock:available")
        await client.aclose()
    finally:
        for target in targets:
            await target.cleanup()


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_recipe_finds_exactly_the_seeded_drift(ctx: RunContext, name: str) -> None:
    spec = RECIPES[name]
    grace: int = getattr(spec, "grace")  # noqa: B009 - ProbeSpec has no grace; ReconcileSpec does
    results: list[ProbeResult] = [await run_probe(spec, ctx) for _ in range(grace)]
    *waiting, last = results
    for result in waiting:  # within the grace window: failing nothing yet
        assert result.status is Status.OK, result.error
        assert result.values["pending_grace"] == len(EXPECTED[name][1])
    counts, rows, failed = EXPECTED[name]
    assert last.error is None
    assert {k: last.values[k] for k in counts} == counts
    assert last.evidence == rows
    assert last.status is Status.FAIL
    # Every expectation on a count that is not 0 failed, and says so with the count.
    assert last.failed == [
        f"{e} failed: {e.split()[0]} is {last.values[e.split()[0]]}"
        for e in failed
        if last.values[e.split()[0]]
    ]
