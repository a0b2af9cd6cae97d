"""docs/recipes.md cannot rot: every YAML block is a valid config, and every sql and
redis recipe runs against real PostgreSQL, MariaDB and Redis with seeded data and finds
exactly the rows and values it should.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent.config import Config
from agent.config_loader import parse_config
from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Status
from agent.runner import run_probe
from agent.sources import RedisSource
from probes.redis import RedisSpec
from tests.databases import HOST, REDIS_PORT, SqlTarget, make_sql_target
from tests.services import require_tcp

DOC = Path(__file__).resolve().parents[2] / "docs" / "recipes.md"
BLOCKS: list[str] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
RUN_KINDS = ("sql", "redis")
REDIS_DB = 9  # away from db 0, where the application's own keys would live
REDIS_KEYS = ["queue:email", "stream:payment-webhooks", "queue:dead"]


class AnyEnv(Mapping[str, str]):
    """Every `${VAR}` in the recipes is set: the recipes need no real secrets to validate."""

    def __getitem__(self, key: str) -> str:
        return "recipe-secret"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def load(block: str) -> Config:
    return parse_config(block, str(DOC), base_dir=DOC.parent, env=AnyEnv())


def recipes() -> dict[str, ProbeSpec]:
    return {probe.name: probe for block in BLOCKS for probe in load(block).probes}


def test_the_doc_has_recipes() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_every_block_is_a_valid_config(block: str) -> None:
    config = load(block)
    assert config.probes
    for probe in config.probes:
        source = getattr(probe, "source", None)
        assert source is None or source in config.sources


# --- the data each recipe is run against, and what it must find ------------------

PG_SEED = [
    "CREATE TABLE payments (id INTEGER PRIMARY KEY, order_id INTEGER, status TEXT, "
    "amount NUMERIC(10, 2), created_at TIMESTAMPTZ)",
    "INSERT INTO payments VALUES "
    "(1, 101, 'pending', 10.50, now() - interval '40 minutes'),"
    "(2, 102, 'pending', 20.25, now() - interval '20 minutes'),"
    "(3, 103, 'pending', 5.00, now() - interval '5 minutes'),"
    "(4, 104, 'paid', 99.00, now() - interval '2 hours'),"
    "(5, 105, 'failed', 7.00, now() - interval '1 hour')",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, total NUMERIC(10, 2), paid_at TIMESTAMPTZ)",
    "INSERT INTO orders VALUES "
    "(201, 'paid', 50.00, now() - interval '2 hours'),"
    "(202, 'paid', 75.50, now() - interval '3 hours'),"
    "(203, 'paid', 10.00, now() - interval '10 minutes'),"
    "(204, 'cancelled', 20.00, NULL),"
    "(205, 'paid', 30.00, now() - interval '5 hours')",
    "CREATE TABLE invoices (id INTEGER PRIMARY KEY, order_id INTEGER)",
    "INSERT INTO invoices VALUES (901, 201)",
]
MYSQL_SEED = [
    "CREATE TABLE payments (id INTEGER PRIMARY KEY, order_id INTEGER, status VARCHAR(20), "
    "amount DECIMAL(10, 2), created_at DATETIME)",
    "INSERT INTO payments VALUES "
    "(1, 101, 'pending', 10.50, NOW() - INTERVAL 40 MINUTE),"
    "(2, 102, 'pending', 20.25, NOW() - INTERVAL 20 MINUTE),"
    "(3, 103, 'pending', 5.00, NOW() - INTERVAL 5 MINUTE),"
    "(4, 104, 'paid', 99.00, NOW() - INTERVAL 2 HOUR)",
    "CREATE TABLE stock_movements (id INTEGER PRIMARY KEY, sku VARCHAR(20), qty INTEGER, created_at DATETIME)",
    "INSERT INTO stock_movements VALUES "
    "(1, 'sku-1', 5, NOW() - INTERVAL 2 HOUR),"
    "(2, 'sku-2', -1, NOW() - INTERVAL 30 MINUTE),"
    "(3, 'sku-1', -2, NOW() - INTERVAL 15 MINUTE)",
]


def near(expected: int, slack: int = 60) -> Any:
    """An age computed by the database a few seconds after seeding."""

    class Near:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, int) and expected <= other <= expected + slack

        def __repr__(self) -> str:
            return f"~{expected}"

    return Near()


STUCK_EVIDENCE = [
    {"id": 1, "order_id": 101, "amount": 10.5, "age_s": near(2400)},
    {"id": 2, "order_id": 102, "amount": 20.25, "age_s": near(1200)},
]
# name -> (status, values, evidence)
EXPECTED: dict[str, tuple[Status, dict[str, Any], list[dict[str, Any]]]] = {
    "stuck-payments": (
        Status.FAIL,
        {"stuck": 2, "amount_at_risk": 30.75, "oldest_age_s": near(2400)},
        STUCK_EVIDENCE,
    ),
    "stuck-payments-mariadb": (
        Status.FAIL,
        {"stuck": 2, "amount_at_risk": 30.75, "oldest_age_s": near(2400)},
        STUCK_EVIDENCE,
    ),
    "orders-without-invoice": (
        Status.FAIL,
        {"missing_invoices": 2, "amount_uninvoiced": 105.5},
        [
            {"order_id": 205, "total": 30, "paid_at": Any},
            {"order_id": 202, "total": 75.5, "paid_at": Any},
        ],
    ),
    "stock-movements-fresh": (
        Status.FAIL,
        {"newest_age_s": near(900), "movements_last_hour": 2},
        [],
    ),
    "job-queues": (
        Status.OK,
        {
            "email_queue": 3,
            "webhook_stream": 2,
            "dead_letters": 0,
            "carts": 4,
            "carts_truncated": 0,
        },
        [],
    ),
}


def test_every_sql_and_redis_recipe_has_expectations_here() -> None:
    runnable = {name for name, probe in recipes().items() if probe.kind in RUN_KINDS}
    assert runnable == set(EXPECTED)


@pytest.fixture
async def seeded_sources(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """The recipes' source names, pointed at seeded test databases (and `run`, a tag)."""
    require_tcp("Redis", HOST, REDIS_PORT)
    pg = await make_sql_target("postgres", tmp_path)
    mysql: SqlTarget | None = None
    cache = aioredis.Redis(host=HOST, port=REDIS_PORT, db=REDIS_DB, decode_responses=True)
    run = secrets.token_hex(4)
    cart_prefix = f"cart:{run}"
    try:
        mysql = await make_sql_target("mysql", tmp_path)
        await pg.execute(*PG_SEED)
        await mysql.execute(*MYSQL_SEED)
        await cache.delete(*REDIS_KEYS)
        await cache.rpush("queue:email", "a", "b", "c")
        await cache.xadd("stream:payment-webhooks", {"id": "1"})
        await cache.xadd("stream:payment-webhooks", {"id": "2"})
        for i in range(4):
            await cache.set(f"{cart_prefix}:{i}", "1")
        yield {
            "shop": pg.source,
            "payments": mysql.source,
            "warehouse": mysql.source,
            "cache": RedisSource(kind="redis", url=f"redis://{HOST}:{REDIS_PORT}/{REDIS_DB}"),
            "run": run,
        }
    finally:
        await cache.delete(*REDIS_KEYS, *[f"{cart_prefix}:{i}" for i in range(4)])
        await cache.aclose()
        await pg.cleanup()
        if mysql is not None:
            await mysql.cleanup()


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_recipe_finds_exactly_the_seeded_problems(
    name: str, seeded_sources: dict[str, Any]
) -> None:
    probe = recipes()[name]
    if isinstance(probe, RedisSpec):
        # Count only this test's carts: other tests may keep carts in the shared Redis.
        carts = probe.counts["carts"]
        assert carts.pattern == "cart:*"
        narrowed = carts.model_copy(update={"pattern": f"cart:{seeded_sources['run']}:*"})
        probe = probe.model_copy(update={"counts": {"carts": narrowed}})
    ctx = RunContext(sources={k: v for k, v in seeded_sources.items() if k != "run"})
    try:
        result = await run_probe(probe, ctx)
    finally:
        await ctx.aclose()
    status, values, evidence = EXPECTED[name]
    assert result.error is None, result.error
    assert result.status is status, result.failed
    shown = {k: v for k, v in result.values.items() if k in values}
    assert shown == values
    assert len(result.evidence) == len(evidence)
    for got, want in zip(result.evidence, evidence, strict=True):
        assert set(got) == set(want)
        assert {k: v for k, v in got.items() if want[k] is not Any} == {
            k: v for k, v in want.items() if v is not Any
        }
