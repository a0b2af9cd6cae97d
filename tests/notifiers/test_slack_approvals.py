"""Approve/Reject buttons in Slack, end to end: a repair awaiting approval is posted with
buttons (real slack-sdk against the fake Slack), and a press comes back as Slack sends it
(a form signed with the app's signing secret) to the running agent's API.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from agent.config_loader import load_config
from agent.daemon import Agent
from tests.fakes.slack import FakeSlack

TOKEN = "xoxb-4242-1717-approvalsTokenValue"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@dataclass
class Shop:
    base: str = ""
    healthy: bool = False
    fixes: int = 0


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    state = Shop()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({}, status=200 if state.healthy else 503)

    async def fix(_: web.Request) -> web.Response:
        state.fixes += 1
        state.healthy = True
        return web.json_response({"fixed": True})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/admin/fix", fix)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def agent(tmp_path: Path, shop: Shop) -> AsyncIterator[tuple[Agent, FakeSlack]]:
    async with FakeSlack(tokens={TOKEN}) as slack:
        path = tmp_path / "agent.yaml"
        path.write_text(
            f"""
agent: {{data_dir: ./var, api: {{listen: "127.0.0.1:0"}}}}
notify:
  - name: ops-slack
    kind: slack
    token: ${{SLACK_TOKEN}}
    channel: "#ops"
    base_url: {slack.api_url}
    signing_secret: ${{SLACK_SIGNING_SECRET}}
    allowed_users: [U0ALICE, bob]
incidents: {{notify: [ops-slack], failures: 1, tick_every: 200ms}}
probes:
  - {{name: shop-api, kind: http, url: "{shop.base}/health", every: 300ms,
     expect: [status == 200], remediation: fix-shop}}
remediations:
  - {{name: fix-shop, kind: http, method: POST, url: "{shop.base}/admin/fix",
     mode: approval, verify_after: 0s}}
"""
        )
        env = {"SLACK_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
        running = Agent(load_config(path, env=env), config_path=path)
        stop = asyncio.Event()
        task = asyncio.create_task(running.run(stop, install_signals=False))
        for _ in range(200):
            if running.api_url is not None or task.done():
                break
            await asyncio.sleep(0.025)
        assert running.api_url is not None
        yield running, slack
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


def buttons(slack: FakeSlack) -> list[dict[str, Any]]:
    """Every actions block Slack received (posted or updated)."""
    found = []
    for call in slack.calls_to("chat.postMessage") + slack.calls_to("chat.update"):
        for block in call.body.get("blocks") or []:
            if block.get("type") == "actions":
                found.append(block)
    return found


def press(
    run_id: int,
    user: dict[str, str],
    action: str = "opsagent_approve",
    secret: str = SIGNING_SECRET,
) -> tuple[bytes, dict[str, str]]:
    """A block_actions interaction as Slack sends it: a signed form with a JSON payload."""
    payload = {
        "type": "block_actions",
        "user": user,
        "actions": [{"action_id": action, "value": str(run_id), "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return body, {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def wait_for(predicate: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def runs(agent: Agent) -> list[tuple[Any, ...]]:
    return await agent.running_store().run(
        lambda c: c.execute("SELECT id, state, verified FROM remediation_runs").fetchall()
    )


async def test_buttons_posted_and_only_allowed_signed_presses_act(
    agent: tuple[Agent, FakeSlack], shop: Shop
) -> None:
    running, slack = agent

    async def has_buttons() -> bool:
        return bool(buttons(slack))

    await wait_for(has_buttons)
    [block] = buttons(slack)
    [(run_id, state, _)] = await runs(running)
    assert state == "awaiting_approval"
    assert [e["action_id"] for e in block["elements"]] == ["opsagent_approve", "opsagent_reject"]
    assert {e["value"] for e in block["elements"]} == {str(run_id)}

    url = f"{running.api_url}/v1/slack/actions"
    async with httpx.AsyncClient() as http:
        body, headers = press(run_id, {"id": "U0ALICE", "username": "alice"}, secret="wrong")
        forged = await http.post(url, content=body, headers=headers)
        assert forged.status_code == 401
        body, headers = press(run_id, {"id": "U0MALLORY", "username": "mallory"})
        refused = await http.post(url, content=body, headers=headers)
        assert refused.status_code == 200
        assert "mallory via slack may not approve or reject" in refused.json()["text"]
        await asyncio.sleep(0.3)
        assert shop.fixes == 0  # nobody allowed said yes yet
        body, headers = press(run_id, {"id": "U0ALICE", "username": "alice"})
        approved = await http.post(url, content=body, headers=headers)
        assert approved.status_code == 200
        assert approved.json()["text"] == f"run #{run_id}: approved"

    async def verified() -> bool:
        return (await runs(running))[0][1:] == ("succeeded", True)

    await wait_for(verified)
    assert shop.fixes == 1
    steps = await running.running_store().run(
        lambda c: c.execute(
            "SELECT step, actor FROM remediation_steps WHERE run_id = ? ORDER BY id", [run_id]
        ).fetchall()
    )
    assert ("press_refused", "mallory via slack") in steps
    assert ("approved", "alice via slack") in steps
