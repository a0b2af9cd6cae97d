"""The Redis connector on a real Redis: commands, errors as one line, recovery after a kill."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from agent.connectors import RedisConnector, SourceError, open_connector
from agent.sources import RedisSource
from tests import databases
from tests.databases import RedisTarget, unique

redis_target = databases.redis_target
closed_port = databases.closed_port


@pytest.fixture
async def connector(redis_target: RedisTarget) -> AsyncIterator[tuple[str, RedisConnector]]:
    name = unique("src")
    opened = open_connector(name, redis_target.source)
    assert opened.dialect == "redis"
    try:
        yield name, opened
    finally:
        await opened.aclose()


async def test_execute_and_call(
    redis_target: RedisTarget, connector: tuple[str, RedisConnector]
) -> None:
    _, redis = connector
    await redis_target.admin.hset(redis_target.key("stock"), mapping={"sku-1": "7"})
    assert await redis.execute("PING") is True
    assert await redis.execute("HGET", redis_target.key("stock"), "sku-1") == "7"
    assert await redis.call(lambda r: r.hgetall(redis_target.key("stock"))) == {"sku-1": "7"}


async def test_a_wrong_type_is_a_one_line_error(
    redis_target: RedisTarget, connector: tuple[str, RedisConnector]
) -> None:
    _, redis = connector
    await redis_target.admin.set(redis_target.key("s"), "x")
    with pytest.raises(SourceError, match=r"^WRONGTYPE Operation against a key"):
        await redis.execute("LLEN", redis_target.key("s"))


async def test_a_killed_connection_is_replaced(
    redis_target: RedisTarget, connector: tuple[str, RedisConnector]
) -> None:
    _, redis = connector
    for _ in range(2):  # twice: the replacement is replaced too
        client_id = await redis.execute("CLIENT", "ID")
        await redis_target.kill_client(client_id)
        assert await redis.execute("PING") is True
        assert await redis.execute("CLIENT", "ID") != client_id


async def test_timeout_is_enforced(
    redis_target: RedisTarget, connector: tuple[str, RedisConnector]
) -> None:
    _, redis = connector
    started = time.perf_counter()
    with pytest.raises(SourceError, match=r"^timed out after 1s \(127\.0\.0\.1:6379\)$"):
        await redis.execute("BLPOP", redis_target.key("never"), 5, timeout=1.0)
    assert time.perf_counter() - started < 2
    assert await redis.execute("PING") is True


async def test_connect_refused(closed_port: int) -> None:
    redis = open_connector("r", RedisSource(kind="redis", url=f"redis://127.0.0.1:{closed_port}/0"))
    with pytest.raises(SourceError, match=f"^connect refused 127.0.0.1:{closed_port}$"):
        await redis.execute("PING")
    await redis.aclose()


async def test_wrong_password_names_the_user_not_the_password(redis_target: RedisTarget) -> None:
    user = unique("opsagent_u")
    await redis_target.admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL",
        "SETUSER",
        user,
        "on",
        ">right-pw-1234",
        f"~{redis_target.prefix}:*",
        "+@read",
        "+ping",
    )
    try:
        for url_password in (False, True):
            url = f"redis://{user}@127.0.0.1:6379/0"
            if url_password:
                spec = RedisSource(kind="redis", url=url.replace("@", ":wrong-pw-77@"))
            else:
                spec = RedisSource(kind="redis", url=url, password=SecretStr("wrong-pw-77"))
            redis = open_connector("r", spec)
            with pytest.raises(SourceError) as info:
                await redis.execute("PING")
            assert str(info.value) == f"authentication failed for user '{user}'"
            await redis.aclose()
        right = open_connector(
            "r",
            RedisSource(
                kind="redis",
                url=f"redis://{user}@127.0.0.1:6379/0",
                password=SecretStr("right-pw-1234"),
            ),
        )
        assert await right.execute("PING") is True
        await right.aclose()
    finally:
        await redis_target.admin.execute_command("ACL", "DELUSER", user)  # type: ignore[no-untyped-call]
