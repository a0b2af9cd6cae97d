"""A real agent on an ephemeral port, and a real HTTP target for its probes.

Fixtures for tests/api and tests/agent; a conftest (or test module) imports them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from agent.config_loader import load_config
from agent.daemon import Agent


@dataclass
class Target:
    """A local HTTP server: `/ok` answers 200 unless `healthy` is False, then 503."""

    base: str
    healthy: bool = True
    hits: dict[str, int] = field(default_factory=lambda: {"ok": 0, "heartbeat": 0})


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    state = Target("")

    async def ok(_: web.Request) -> web.Response:
        state.hits["ok"] += 1
        if state.healthy:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "down"}, status=503)

    async def heartbeat(_: web.Request) -> web.Response:
        state.hits["heartbeat"] += 1
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_route("*", "/heartbeat", heartbeat)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


@dataclass
class RunningAgent:
    """An agent running in the test's event loop, with an HTTP client holding its token."""

    agent: Agent
    config_path: Path
    data_dir: Path
    url: str
    token: str
    client: httpx.AsyncClient
    stopped: asyncio.Event
    task: asyncio.Task[int]
    judged: bool = False  # the test awaited the stop itself; the fixture leaves it alone

    async def stop(self) -> int:
        """Stop the agent as SIGTERM would; its exit code (raises what the stop raised)."""
        self.judged = True
        self.stopped.set()
        await self.client.aclose()
        return await asyncio.wait_for(self.task, 30)


StartAgent = Callable[..., Awaitable[RunningAgent]]


@pytest.fixture
async def start_agent(tmp_path: Path) -> AsyncIterator[StartAgent]:
    """`await start_agent(yaml_text, env=None)`: write agent.yaml (data_dir ./var) and run it.

    The text's `agent:` section should set `api: {listen: "127.0.0.1:0"}`; the fixture
    waits for `api.addr`, and stops every agent it started at the end of the test.
    """
    stops: list[RunningAgent] = []

    async def start(text: str, env: dict[str, str] | None = None) -> RunningAgent:
        config_path = tmp_path / "agent.yaml"
        config_path.write_text(text)
        config = load_config(config_path, env=env or {})
        agent = Agent(config, config_path=config_path)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop, install_signals=False))
        data_dir = config.agent.data_dir
        for _ in range(200):
            if agent.api_url is not None or agent.api_problem is not None or task.done():
                break
            await asyncio.sleep(0.025)
        if task.done():
            task.result()  # raises what made the agent stop
        token = (data_dir / "api.token").read_text().strip()
        url = agent.api_url or ""
        client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        running = RunningAgent(agent, config_path, data_dir, url, token, client, stop, task)
        stops.append(running)
        return running

    yield start
    for running in stops:
        if running.judged:
            continue
        # A clean stop is part of every test: an agent that fails to stop fails it.
        assert await running.stop() == 0


def agent_yaml(
    base: str,
    *,
    extra_agent: str = "",
    probes: str | None = None,
    api: str = '{listen: "127.0.0.1:0"}',
) -> str:
    """A config with the API on an ephemeral port and two http probes against `base`."""
    probes = (
        probes
        if probes is not None
        else f"""
  - {{name: web, kind: http, url: "{base}/ok", every: 200ms, expect: [status == 200]}}
  - {{name: web-strict, kind: http, url: "{base}/ok", every: 200ms, expect: ['json.status == "degraded"']}}
"""
    )
    return f"""
agent:
  data_dir: ./var
  api: {api}
  {extra_agent}
probes:{probes}
"""


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll `predicate` until it holds; fail the test after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.05)
