"""Incidents in the running agent: a real probe target, a real webhook receiver.

The kill -9 test runs the agent as a subprocess, kills it while notices are pending
(the receiver refuses them with 503), restarts it and checks every notice arrives
exactly once and no incident is duplicated.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiohttp import web


@dataclass
class World:
    """The shop endpoint the probe watches, and the webhook that receives notices."""

    base: str = ""
    shop_up: bool = True
    hook_up: bool = True
    notices: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, status=200 if w.shop_up else 503)

    async def hook(request: web.Request) -> web.Response:
        if not w.hook_up:
            w.refused += 1
            return web.Response(status=503, text="try later")
        w.notices.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    w.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield w
    await runner.cleanup()


def write_config(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"""
agent: {{data_dir: ./var, api: {{listen: "127.0.0.1:0"}}}}
notify:
  - {{name: hook, kind: webhook, url: "{base}/hook", timeout: 2s}}
incidents: {{notify: [hook], failures: 2, successes: 2, tick_every: 200ms}}
probes:
  - {{name: shop-api, kind: http, url: "{base}/health", every: 200ms, timeout: 150ms,
     expect: [status == 200], severity: critical}}
"""
    )
    return path


async def start_agent(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "run",
        "-c",
        str(config),
        "--log-format",
        "json",
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def wait_for(predicate: Any, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def incidents(db: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select id, probe, state from incidents order by id").fetchall()
    finally:
        con.close()


async def test_outage_opens_notifies_and_resolves(tmp_path: Path, world: World) -> None:
    config = write_config(tmp_path, world.base)
    proc = await start_agent(config)
    try:
        await asyncio.sleep(1.0)
        assert world.notices == []  # healthy: no noise
        world.shop_up = False
        await wait_for(lambda: len(world.notices) == 1)
        opened = world.notices[0]
        assert (opened["event"], opened["incident"]["state"], opened["incident"]["severity"]) == (
            "opened",
            "open",
            "critical",
        )
        assert opened["incident"]["summary"] == "status == 200 failed: status is 503"
        world.shop_up = True
        await wait_for(lambda: len(world.notices) == 2)
        assert world.notices[1]["event"] == "resolved"
        assert world.notices[1]["incident"]["id"] == opened["incident"]["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    rows = incidents(tmp_path / "var" / "opsagent.duckdb")
    assert [(r[1], r[2]) for r in rows] == [("shop-api", "resolved")]


async def test_kill_9_with_pending_notices_delivers_each_exactly_once(
    tmp_path: Path, world: World
) -> None:
    config = write_config(tmp_path, world.base)
    world.hook_up = False
    world.shop_up = False
    proc = await start_agent(config)
    await wait_for(lambda: world.refused >= 2)  # the opened notice exists and is being retried
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    world.hook_up = True
    proc = await start_agent(config)
    try:
        await wait_for(lambda: len(world.notices) >= 1)
        await asyncio.sleep(1.5)  # room for a duplicate to show up, if there were one
        world.shop_up = True
        await wait_for(lambda: len(world.notices) >= 2)
        await asyncio.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    ids = [n["id"] for n in world.notices]
    assert len(ids) == len(set(ids)) == 2
    assert [n["event"] for n in world.notices] == ["opened", "resolved"]
    rows = incidents(tmp_path / "var" / "opsagent.duckdb")
    assert len(rows) == 1 and rows[0][2] == "resolved"


async def test_reload_neither_reopens_nor_realerts(tmp_path: Path, world: World) -> None:
    from agent.config_loader import load_config
    from agent.daemon import Agent

    config = write_config(tmp_path, world.base)
    world.shop_up = False
    agent = Agent(load_config(config, env={}), config_path=config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, install_signals=False))
    try:
        await wait_for(lambda: len(world.notices) == 1)
        # A changed interval and a new probe, while the incident is open.
        config.write_text(
            config.read_text().replace(
                "every: 200ms, timeout: 150ms", "every: 300ms, timeout: 150ms"
            )
            + f"  - {{name: other, kind: tcp, port: {world.base.rsplit(':', 1)[1]}, every: 1s}}\n"
        )
        plan = await agent.reload()
        assert "other" in plan.summary()
        await asyncio.sleep(1.5)  # several more failing runs of shop-api after the reload
        assert [n["event"] for n in world.notices] == ["opened"]
        world.shop_up = True
        await wait_for(lambda: len(world.notices) == 2)
        assert world.notices[1]["event"] == "resolved"
        assert world.notices[1]["incident"]["id"] == world.notices[0]["incident"]["id"]
    finally:
        stop.set()
        assert await task == 0
    rows = incidents(tmp_path / "var" / "opsagent.duckdb")
    assert [(r[1], r[2]) for r in rows] == [("shop-api", "resolved")]
