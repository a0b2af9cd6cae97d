"""The redis probe on a real Redis: PING, INFO, numbers, type-aware lengths, bounded SCAN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from agent.probe_spec import RunContext
from agent.results import Status
from agent.runner import run_probe
from agent.sources import RedisSource
from probes.redis import RedisSpec
from tests import databases
from tests.databases import RedisTarget

redis_target = databases.redis_target
closed_port = databases.closed_port


def spec(**fields: Any) -> RedisSpec:
    return RedisSpec.model_validate({"name": "cache", "kind": "redis", "source": "cache", **fields})


@pytest.fixture
async def ctx(redis_target: RedisTarget) -> AsyncIterator[RunContext]:
    context = RunContext(sources={"cache": redis_target.source})
    yield context
    await context.aclose()


async def test_ping_and_info(ctx: RunContext) -> None:
    result = await run_probe(
        spec(info=["role", "connected_clients", "no_such_field"], expect=['info.role == "master"']),
        ctx,
    )
    assert result.status is Status.OK, result.failed
    assert result.values["ping_ms"] == result.values["latency_ms"] > 0
    assert result.values["info"]["role"] == "master"
    assert result.values["info"]["connected_clients"] >= 1
    assert "no_such_field" not in result.values["info"]
    assert "INFO has no field 'no_such_field'" in result.detail


async def test_keys_hashes_lengths_and_counts(redis_target: RedisTarget, ctx: RunContext) -> None:
    admin, key = redis_target.admin, redis_target.key
    await admin.set(key("orders"), "42")
    await admin.set(key("ratio"), "0.25")
    await admin.set(key("word"), "many")
    await admin.hset(key("stock"), mapping={"sku-1": "7", "sku-2": "x"})
    await admin.rpush(key("queue"), *range(5))
    await admin.xadd(key("stream"), {"a": "1"})
    await admin.zadd(key("zset"), {"a": 1, "b": 2})
    await admin.sadd(key("set"), "a", "b", "c")
    for i in range(30):
        await admin.set(key(f"session:{i}"), "1")
    probe = spec(
        keys={
            "orders": key("orders"),
            "ratio": key("ratio"),
            "word": key("word"),
            "gone": key("gone"),
        },
        hashes={
            "sku_1": {"key": key("stock"), "field": "sku-1"},
            "sku_2": {"key": key("stock"), "field": "sku-2"},
        },
        lengths={
            "queue": key("queue"),
            "stream": key("stream"),
            "zset": key("zset"),
            "set": key("set"),
            "hash": key("stock"),
            "empty": key("nothing"),
            "text": key("orders"),
        },
        counts={"sessions": {"pattern": f"{redis_target.prefix}:session:*"}},
        expect=["queue < 10", "sessions == 30"],
    )
    result = await run_probe(probe, ctx)
    assert result.status is Status.OK, result.failed
    values = {k: v for k, v in result.values.items() if k not in ("latency_ms", "ping_ms")}
    assert values == {
        "orders": 42,
        "ratio": 0.25,
        "sku_1": 7,
        "queue": 5,
        "stream": 1,
        "zset": 2,
        "set": 3,
        "hash": 2,
        "empty": 0,
        "sessions": 30,
        "sessions_truncated": 0,
    }
    assert f"word: {key('word')} holds 'many', not a number" in result.detail
    assert f"gone: {key('gone')} does not exist" in result.detail
    assert f"sku_2: {key('stock')}[sku-2] holds 'x', not a number" in result.detail
    assert f"text: {key('orders')} is a string, which has no length" in result.detail


async def test_scan_stops_at_max_scan(redis_target: RedisTarget, ctx: RunContext) -> None:
    for i in range(300):
        await redis_target.admin.set(redis_target.key(f"k:{i}"), "1")
    probe = spec(counts={"keys": {"pattern": f"{redis_target.prefix}:k:*", "max_scan": 10}})
    result = await run_probe(probe, ctx)
    assert result.values["keys_truncated"] == 1
    assert result.values["keys"] < 300


async def test_connect_refused(closed_port: int) -> None:
    ctx = RunContext(
        sources={"cache": RedisSource(kind="redis", url=f"redis://127.0.0.1:{closed_port}/0")}
    )
    result = await run_probe(spec(), ctx)
    assert result.status is Status.FAIL
    assert result.error == f"connect refused 127.0.0.1:{closed_port}"
    await ctx.aclose()


async def test_recovers_after_its_connection_is_killed(
    redis_target: RedisTarget, ctx: RunContext
) -> None:
    connector = ctx.connector("cache")
    assert connector.dialect == "redis"
    for _ in range(2):
        client_id = await connector.execute("CLIENT", "ID")
        await redis_target.kill_client(client_id)
        assert (await run_probe(spec(), ctx)).status is Status.OK


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"keys": {"bad-name": "k"}}, "value name 'bad-name'"),
        ({"keys": {"q": "k"}, "lengths": {"q": "k"}}, "value name 'q' is used twice"),
        ({"keys": {"ping_ms": "k"}}, "value name 'ping_ms' is used twice"),
        ({"counts": {"s": {"pattern": "*", "max_scan": 0}}}, "greater than or equal to 1"),
    ],
    ids=["not-an-identifier", "twice", "built-in", "max-scan"],
)
def test_bad_specs_are_config_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**fields)
