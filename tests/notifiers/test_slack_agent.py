"""Slack end to end through the real agent: probe → incident → outbox → slack-sdk → fake Slack.

Each test runs the real `Agent` in the test's event loop (control API on port 0, store
in tmp_path) with a `slack` notifier whose `base_url` is the fake Slack, and http
probes against a real local aiohttp server that the test turns unhealthy (503) and
back. The incident thresholds are the defaults (3 failures open, 2 passes resolve);
probes run every 200 ms so a whole open → resolve takes a few seconds. The Slack pace
is the production one (1 message per second per channel).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from agent import store_incidents as sql
from agent.config_loader import load_config
from agent.daemon import Agent
from agent.incidents.models import Incident
from tests.fakes.slack import Call, FakeSlack

TOKEN = "xoxb-4242-1717-e2eSecretTokenValue"
CHANNEL_ID = "C0OPS00001"  # the fake's ID of #ops
SUMMARY = "status == 200 failed: status is 503"


@dataclass
class Shop:
    """The HTTP endpoint the probes watch: 200 while `up`, else 503."""

    base: str = ""
    up: bool = True


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    state = Shop()

    async def health(_: web.Request) -> web.Response:
        if state.up:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "down"}, status=503)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(tokens={TOKEN}) as fake:
        yield fake


RunAgent = Callable[[list[str]], Awaitable[Agent]]


@pytest.fixture
async def run_agent(
    tmp_path: Path, shop: Shop, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[RunAgent]:
    """`await run_agent(["shop-api", ...])`: the agent with one critical http probe per name.

    The token reaches the config through `${SLACK_TOKEN}`, as in production. Logging is
    captured at DEBUG, so the token checks cover every line the agent could write.
    """
    caplog.set_level(logging.DEBUG)
    running: list[tuple[asyncio.Event, asyncio.Task[int]]] = []

    async def start(probes: list[str]) -> Agent:
        lines = "\n".join(
            f'  - {{name: {name}, kind: http, url: "{shop.base}/health", every: 200ms,'
            f" timeout: 150ms, expect: [status == 200], severity: critical}}"
            for name in probes
        )
        path = tmp_path / "agent.yaml"
        path.write_text(
            f"""
agent: {{name: slack-e2e, data_dir: ./var, api: {{listen: "127.0.0.1:0"}}}}
notify:
  - name: ops-slack
    kind: slack
    token: ${{SLACK_TOKEN}}
    channel: "#ops"
    base_url: {slack.api_url}
    mention: "<!here>"
    link_base: https://ops.example.com
    timeout: 5s
incidents: {{notify: [ops-slack], tick_every: 200ms}}
probes:
{lines}
"""
        )
        agent = Agent(load_config(path, env={"SLACK_TOKEN": TOKEN}), config_path=path)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop, install_signals=False))
        running.append((stop, task))
        for _ in range(200):
            if agent.api_url is not None or agent.api_problem is not None or task.done():
                break
            await asyncio.sleep(0.025)
        if task.done():
            task.result()
        assert agent.api_url is not None, agent.api_problem
        return agent

    yield start
    for stop, task in running:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0  # a clean stop is part of the test


async def wait_for(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


def roots(slack: FakeSlack) -> list[Call]:
    """Top-level messages posted (not thread replies)."""
    return [c for c in slack.calls_to("chat.postMessage") if "thread_ts" not in c.body]


def replies(slack: FakeSlack) -> list[Call]:
    return [c for c in slack.calls_to("chat.postMessage") if "thread_ts" in c.body]


async def incident(agent: Agent, incident_id: int) -> Incident:
    found = await agent.running_store().run(lambda con: sql.get(con, incident_id))
    assert found is not None
    return found


def slack_date(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    text = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(aware.timestamp())}^{{date_short_pretty}} {{time_secs}}|{text}>"


def field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"}


def assert_no_token_leaked(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    """The token travels only in the Authorization header: not in bodies, other headers, logs."""
    assert slack.calls
    for call in slack.calls:
        assert call.token == TOKEN  # presented as a bearer token
        assert TOKEN not in call.raw_body
        assert TOKEN not in json.dumps(call.body, ensure_ascii=False)
        assert all(TOKEN not in f"{k}: {v}" for k, v in call.headers.items())
    assert caplog.records
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in (record.exc_text or "")
    assert TOKEN not in caplog.text


async def test_alert_posts_exact_blocks_then_resolve_updates_the_same_message(
    run_agent: RunAgent, shop: Shop, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await run_agent(["shop-api"])
    await asyncio.sleep(1.0)
    assert slack.calls == []  # healthy: nothing sent

    shop.up = False
    await wait_for(lambda: len(roots(slack)) == 1)
    opened = await incident(agent, 1)
    assert opened.opened_at is not None
    (post,) = slack.calls  # no auth.test or other chatter first
    assert post.method == "chat.postMessage"
    context = {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "opsagent *slack-e2e* · incident #1"}],
    }
    links = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "<https://ops.example.com/incidents/1|Incident #1>"},
    }
    assert post.body == {
        "channel": "#ops",
        "text": f"<!here> 🔴 CRITICAL shop-api failing: {SUMMARY}",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": "🔴 shop-api failing", "emoji": True},
            },
            {
                "type": "section",
                "fields": [
                    field("Severity", "critical"),
                    field("Probe", "shop-api"),
                    field("State", "open"),
                    field("Opened at", slack_date(opened.opened_at)),
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"<!here> {SUMMARY}"}},
            links,
            context,
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    ((channel, ts),) = slack.messages  # the fake's answer: channel ID and ts
    assert channel == CHANNEL_ID

    shop.up = True
    await wait_for(lambda: len(replies(slack)) == 1)
    resolved = await incident(agent, 1)
    assert resolved.resolved_at is not None
    (update,) = slack.calls_to("chat.update")
    assert update.time < replies(slack)[0].time  # the message first, then the thread
    assert update.body == {
        "channel": channel,
        "ts": ts,
        "text": f"✅ RESOLVED shop-api failing: {SUMMARY}",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": "✅ shop-api failing", "emoji": True},
            },
            {
                "type": "section",
                "fields": [
                    field("Severity", "critical"),
                    field("Probe", "shop-api"),
                    field("State", "resolved (recovered)"),
                    field("Opened at", slack_date(opened.opened_at)),
                    field("Resolved at", slack_date(resolved.resolved_at)),
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": SUMMARY}},
            links,
            context,
        ],
    }
    age = int((resolved.resolved_at - opened.opened_at).total_seconds())
    assert 0 <= age < 60
    (reply,) = replies(slack)
    assert reply.body == {
        "channel": channel,
        "thread_ts": ts,
        "text": f"✅ *Resolved* recovered after {age}s",
        "reply_broadcast": False,
    }
    assert slack.messages[(channel, ts)].edits == 1
    assert len(roots(slack)) == 1  # updated in place, never re-posted
    # The stored delivery ref is the message that was updated.
    refs = await agent.running_store().run(
        lambda con: con.execute(
            "SELECT event, state, ref FROM notifications ORDER BY id"
        ).fetchall()
    )
    assert [(e, s, json.loads(r)) for e, s, r in refs] == [
        ("opened", "sent", {"channel": channel, "ts": ts}),
        ("resolved", "sent", {"channel": channel, "ts": ts}),
    ]
    assert_no_token_leaked(slack, caplog)


async def test_a_429_is_retried_once_after_retry_after(
    run_agent: RunAgent, shop: Shop, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.rate_limit(retry_after=2, calls=1, method="chat.postMessage")
    await run_agent(["shop-api"])
    shop.up = False
    await wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 2, within=15)
    first, retry = slack.calls_to("chat.postMessage")
    assert retry.time - first.time >= 2.0
    assert retry.body == first.body  # the same notice, sent again
    await asyncio.sleep(2.5)  # room for a duplicate, if there were one
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert len(slack.messages) == 1
    retried = [r for r in caplog.records if "retrying in 2.0s" in r.getMessage()]
    assert len(retried) == 1
    assert "rate limited (HTTP 429, retry after 2s)" in retried[0].getMessage()
    assert_no_token_leaked(slack, caplog)


async def test_incidents_opening_together_are_paced_one_per_second(
    run_agent: RunAgent, shop: Shop, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    await run_agent(["shop-api", "shop-cart", "shop-pay"])
    await asyncio.sleep(0.6)
    shop.up = False
    await wait_for(lambda: len(roots(slack)) == 3, within=15)
    posts = roots(slack)
    gaps = [b.time - a.time for a, b in itertools.pairwise(posts)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert all(gap < 2.5 for gap in gaps), gaps  # paced, not held back
    titles = sorted(c.body["blocks"][0]["text"]["text"] for c in posts)
    assert titles == [f"🔴 {name} failing" for name in ("shop-api", "shop-cart", "shop-pay")]
    assert_no_token_leaked(slack, caplog)
