"""The slack notifier, through the real slack-sdk client, against the fake Slack on loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.errors import NotifyError
from agent.notices import Delivery, Notice, NoticeEvent
from agent.notifiers import slack
from agent.notifiers._logs import SDK_LOGGER
from agent.notifiers.context import NotifyContext
from agent.notifiers.slack import SlackSpec
from tests.fakes.slack import FakeSlack
from tests.notifiers.conftest import TOKEN, make_notice

EVIDENCE = [
    {"id": 17, "order_id": 1001, "amount": "12.50", "created_at": "2024-06-01 11:40"},
    {"id": 18, "order_id": 1002, "amount": "7.00", "created_at": "2024-06-01 11:41"},
]


def spec_for(fake: FakeSlack, **fields: Any) -> SlackSpec:
    values: dict[str, Any] = {
        "name": "ops",
        "kind": "slack",
        "token": TOKEN,
        "channel": "#ops",
        "base_url": fake.api_url,
    }
    values.update(fields)
    return SlackSpec.model_validate(values)


async def send(
    spec: SlackSpec, notice: Notice, ctx: NotifyContext, ref: dict[str, str] | None = None
) -> Delivery:
    return await slack.send(spec, notice, ctx.for_delivery(ref))


async def test_an_opened_notice_posts_the_exact_block_kit_message(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack, mention="<!here>", link_base="https://ops.example.com/")
    notice = make_notice(
        evidence=EVIDENCE,
        entity=None,
        links={"Runbook": "https://wiki.example.com/shop-api"},
    )

    delivery = await send(spec, notice, ctx)

    (call,) = fake_slack.calls
    assert call.method == "chat.postMessage"
    assert call.body["channel"] == "#ops"
    assert call.body["text"] == "<!here> 🔴 CRITICAL shop-api failing: timed out after 1s"
    assert call.body["unfurl_links"] is False
    table = (
        "id  order_id  amount  created_at\n"
        "17  1001      12.50   2024-06-01 11:40\n"
        "18  1002      7.00    2024-06-01 11:41"
    )
    assert call.body["blocks"] == [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": "🔴 shop-api failing", "emoji": True},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Severity*\ncritical"},
                {"type": "mrkdwn", "text": "*Probe*\nshop-api"},
                {"type": "mrkdwn", "text": "*State*\nopen"},
                {
                    "type": "mrkdwn",
                    "text": "*Opened at*\n<!date^1717243200^{date_short_pretty} {time_secs}"
                    "|2024-06-01 12:00:00 UTC>",
                },
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": "<!here> timed out after 1s"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence*\n```{table}```"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "<https://ops.example.com/incidents/42|Incident #42>"
                " · <https://wiki.example.com/shop-api|Runbook>",
            },
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "opsagent *shop-prod* · incident #42"}],
        },
    ]
    channel_id = fake_slack.channel_id("#ops")
    assert channel_id is not None
    ts = delivery.ref["ts"]
    assert delivery.ref == {"channel": channel_id, "ts": ts}
    assert (channel_id, ts) in fake_slack.messages
    seconds, micros = ts.split(".")
    assert seconds.isdigit() and len(micros) == 6


async def test_resolve_updates_the_same_message_and_replies_in_its_thread(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack)
    opened = await send(spec, make_notice(), ctx)

    resolved = make_notice(
        NoticeEvent.RESOLVED, notice_id=2, after=timedelta(minutes=4, seconds=12)
    )
    delivery = await send(spec, resolved, ctx, opened.ref)

    assert [c.method for c in fake_slack.calls] == [
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
    ]
    update, reply = fake_slack.calls[1], fake_slack.calls[2]
    assert (update.body["channel"], update.body["ts"]) == (
        opened.ref["channel"],
        opened.ref["ts"],
    )
    blocks = update.body["blocks"]
    assert blocks[0]["text"]["text"] == "✅ shop-api failing"
    assert {"type": "mrkdwn", "text": "*State*\nresolved (recovered)"} in blocks[1]["fields"]
    assert any(f["text"].startswith("*Resolved at*") for f in blocks[1]["fields"])
    assert update.body["text"] == "✅ RESOLVED shop-api failing: timed out after 1s"
    assert reply.body["thread_ts"] == opened.ref["ts"]
    assert reply.body["channel"] == opened.ref["channel"]
    assert reply.body["text"] == "✅ *Resolved* recovered after 4m 12s"
    assert reply.body["reply_broadcast"] is False
    # The ref to keep is still the root message; nothing new at the channel's top level.
    assert delivery.ref == opened.ref
    root = fake_slack.messages[(opened.ref["channel"], opened.ref["ts"])]
    assert root.edits == 1
    assert root.blocks is not None and root.blocks[0]["text"]["text"] == "✅ shop-api failing"
    top_level = [m for m in fake_slack.messages.values() if m.thread_ts is None]
    assert len(top_level) == 1


async def test_an_acknowledgement_says_who_and_why_in_the_thread(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack)
    opened = await send(spec, make_notice(), ctx)
    ack = make_notice(
        NoticeEvent.ACKNOWLEDGED,
        notice_id=2,
        actor="alice via slack",
        comment="restarting the pods",
        after=timedelta(minutes=2),
    )

    await send(spec, ack, ctx, opened.ref)

    update, reply = fake_slack.calls[1], fake_slack.calls[2]
    assert {"type": "mrkdwn", "text": "*State*\nacknowledged by alice via slack"} in update.body[
        "blocks"
    ][1]["fields"]
    assert reply.body["text"] == "👀 *Acknowledged* by alice via slack: restarting the pods"


async def test_reminders_are_broadcast_from_the_thread_with_the_mention(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack, mention="<!here>")
    opened = await send(spec, make_notice(), ctx)

    await send(spec, make_notice(NoticeEvent.REMINDER, after=timedelta(hours=1)), ctx, opened.ref)

    reply = fake_slack.calls[-1]
    assert reply.body["reply_broadcast"] is True
    assert reply.body["text"] == (
        "<!here> ⏰ *Reminder* still open after 1h, not acknowledged: timed out after 1s"
    )


async def test_a_later_notice_without_a_previous_message_posts_a_new_one(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack)
    delivery = await send(spec, make_notice(NoticeEvent.RESOLVED), ctx, None)

    (call,) = fake_slack.calls
    assert call.method == "chat.postMessage" and "thread_ts" not in call.body
    assert call.body["blocks"][0]["text"]["text"] == "✅ shop-api failing"
    assert set(delivery.ref) == {"channel", "ts"}


async def test_a_deleted_message_is_replaced_by_a_new_one(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack)
    opened = await send(spec, make_notice(), ctx)
    del fake_slack.messages[(opened.ref["channel"], opened.ref["ts"])]

    delivery = await send(spec, make_notice(NoticeEvent.SILENCED, actor="bob"), ctx, opened.ref)

    assert [c.method for c in fake_slack.calls][-2:] == ["chat.update", "chat.postMessage"]
    assert "thread_ts" not in fake_slack.calls[-1].body
    assert delivery.ref["ts"] != opened.ref["ts"]


async def test_block_hooks_add_blocks_before_the_context_line(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    button = {
        "type": "actions",
        "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "value": "1"}
        ],
    }
    hooked = NotifyContext(agent_name="shop-prod", block_hooks=(lambda notice: [button],))
    interactive = spec_for(fake_slack, signing_secret="s1gn", allowed_users=["U0ALICE"])
    try:
        await send(interactive, make_notice(), hooked)
        await send(spec_for(fake_slack), make_notice(), hooked)  # no signing secret
    finally:
        await hooked.aclose()

    blocks = fake_slack.calls[0].body["blocks"]
    assert blocks[-2:] == [button, blocks[-1]]
    assert blocks[-1]["type"] == "context"
    # Without a signing secret no press could reach the agent: no buttons.
    assert button not in fake_slack.calls[1].body["blocks"]


async def test_no_mention_below_the_configured_severities(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack, mention="<!here>")
    await send(spec, make_notice(severity="warning"), ctx)

    call = fake_slack.calls[0]
    assert "<!here>" not in call.body["text"]
    assert call.body["blocks"][2]["text"]["text"] == "timed out after 1s"


async def test_text_from_the_monitored_systems_is_escaped(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    notice = make_notice(
        summary="body was <html> & not json",
        evidence=[{"note": "<!channel>"}] * 12,
    )
    await send(spec_for(fake_slack), notice, ctx)

    blocks = fake_slack.calls[0].body["blocks"]
    assert blocks[2]["text"]["text"] == "body was &lt;html&gt; &amp; not json"
    evidence = blocks[3]["text"]["text"]
    assert evidence.startswith("*Evidence (first 10 of 12 rows)*\n```note\n&lt;!channel&gt;")
    assert evidence.count("&lt;!channel&gt;") == 10


# --- pacing -------------------------------------------------------------------------


@pytest.fixture
async def paced() -> AsyncIterator[NotifyContext]:
    """A context with the production pace (the `ctx` fixture's is shortened)."""
    context = NotifyContext(agent_name="shop-prod")
    assert context.slack_interval == 1.0
    yield context
    await context.aclose()


async def test_messages_to_one_channel_are_paced_about_one_per_second(
    fake_slack: FakeSlack, paced: NotifyContext
) -> None:
    spec = spec_for(fake_slack)
    notices = [make_notice(notice_id=i, id=100 + i) for i in range(3)]

    await asyncio.gather(*(send(spec, n, paced) for n in notices))

    times = [c.time for c in fake_slack.calls_to("chat.postMessage")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 2
    assert all(0.9 <= gap <= 1.5 for gap in gaps), gaps


async def test_two_channels_are_not_paced_against_each_other(
    fake_slack: FakeSlack, paced: NotifyContext
) -> None:
    ops, alerts = spec_for(fake_slack), spec_for(fake_slack, name="alerts", channel="#alerts")
    await send(ops, make_notice(), paced)  # #ops's next slot is now a second away

    await asyncio.gather(send(ops, make_notice(), paced), send(alerts, make_notice(), paced))

    first, *later = fake_slack.calls_to("chat.postMessage")
    by_channel = {call.body["channel"]: call.time - first.time for call in later}
    assert by_channel["#alerts"] < 0.5
    assert 0.9 <= by_channel["#ops"] <= 1.5


# --- errors -------------------------------------------------------------------------


async def test_429_is_transient_with_retry_after_from_the_header(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack)
    fake_slack.rate_limit(retry_after=7)

    with pytest.raises(NotifyError) as caught:
        await send(spec, make_notice(), ctx)

    assert caught.value.retry_after == 7
    assert not caught.value.permanent
    assert "rate limited" in str(caught.value)
    assert len(fake_slack.calls) == 1, "slack-sdk must not retry by itself"
    # The outbox's retry then goes through.
    delivery = await send(spec, make_notice(), ctx)
    assert delivery.ref["ts"]


async def test_a_server_error_is_transient(fake_slack: FakeSlack, ctx: NotifyContext) -> None:
    fake_slack.server_error(503)

    with pytest.raises(NotifyError, match="HTTP 503") as caught:
        await send(spec_for(fake_slack), make_notice(), ctx)

    assert not caught.value.permanent and caught.value.retry_after is None
    assert len(fake_slack.calls) == 1


@pytest.mark.parametrize(
    "code",
    ["channel_not_found", "not_in_channel", "invalid_auth", "account_inactive", "token_revoked"],
)
async def test_auth_and_channel_errors_are_permanent(
    fake_slack: FakeSlack, ctx: NotifyContext, code: str
) -> None:
    fake_slack.api_error(code)

    with pytest.raises(NotifyError, match=code) as caught:
        await send(spec_for(fake_slack), make_notice(), ctx)

    assert caught.value.permanent


async def test_an_unknown_channel_is_permanent(fake_slack: FakeSlack, ctx: NotifyContext) -> None:
    with pytest.raises(NotifyError, match="channel_not_found") as caught:
        await send(spec_for(fake_slack, channel="#nowhere"), make_notice(), ctx)
    assert caught.value.permanent


async def test_a_wrong_token_is_permanent(fake_slack: FakeSlack, ctx: NotifyContext) -> None:
    with pytest.raises(NotifyError, match="invalid_auth") as caught:
        await send(spec_for(fake_slack, token="xoxb-wrong"), make_notice(), ctx)
    assert caught.value.permanent


async def test_an_unknown_error_code_is_transient(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    fake_slack.api_error("fatal_error")
    with pytest.raises(NotifyError, match="fatal_error") as caught:
        await send(spec_for(fake_slack), make_notice(), ctx)
    assert not caught.value.permanent


async def test_a_failed_thread_reply_retries_without_a_second_message(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack)
    opened = await send(spec, make_notice(), ctx)
    resolved = make_notice(NoticeEvent.RESOLVED, notice_id=2)
    fake_slack.server_error(500, method="chat.postMessage")

    with pytest.raises(NotifyError):
        await send(spec, resolved, ctx, opened.ref)
    await send(spec, resolved, ctx, opened.ref)

    assert [c.method for c in fake_slack.calls] == [
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",  # the reply, answered 500
        "chat.update",  # the retry rewrites the message: idempotent
        "chat.postMessage",
    ]
    assert len([m for m in fake_slack.messages.values() if m.thread_ts is None]) == 1


async def test_a_slow_answer_is_a_transient_timeout(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    fake_slack.delay(2.0)
    with pytest.raises(NotifyError, match=r"no answer within 0\.2s") as caught:
        await send(spec_for(fake_slack, timeout="200ms"), make_notice(), ctx)
    assert not caught.value.permanent


async def test_a_refused_connection_is_transient(ctx: NotifyContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = sock.getsockname()[1]
        spec = SlackSpec.model_validate(
            {
                "name": "ops",
                "kind": "slack",
                "token": TOKEN,
                "channel": "#ops",
                "base_url": f"http://127.0.0.1:{port}/api/",
            }
        )
        with pytest.raises(NotifyError, match=r"slack chat\.postMessage") as caught:
            await send(spec, make_notice(), ctx)
    assert not caught.value.permanent


# --- the token stays secret ---------------------------------------------------------


async def test_the_token_never_leaves_the_authorization_header(
    fake_slack: FakeSlack, ctx: NotifyContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Unpin the SDK's logger so its request/response dumps run too (worst case).
    SDK_LOGGER.setLevel(logging.DEBUG)
    spec = spec_for(fake_slack)
    texts: list[str] = [repr(spec), str(spec.model_dump()), spec.model_dump_json()]
    try:
        opened = await send(spec, make_notice(), ctx)
        texts += [opened.model_dump_json()]
        ack = make_notice(NoticeEvent.ACKNOWLEDGED, actor="alice", comment="on it")
        texts += [(await send(spec, ack, ctx, opened.ref)).model_dump_json()]
        scripts: list[Callable[[], None]] = [
            lambda: fake_slack.rate_limit(3),
            lambda: fake_slack.server_error(),
        ]
        for script in scripts:
            script()
            with pytest.raises(NotifyError) as caught:
                await send(spec, make_notice(), ctx)
            texts.append(str(caught.value))
        with pytest.raises(NotifyError) as caught:
            await send(spec_for(fake_slack, base_url="http://127.0.0.1:9/api/"), make_notice(), ctx)
        texts.append(str(caught.value))
    finally:
        SDK_LOGGER.setLevel(logging.INFO)

    assert fake_slack.calls
    for call in fake_slack.calls:
        assert call.token == TOKEN  # it was sent, as a bearer token...
        assert TOKEN not in call.raw_body  # ...and nowhere else
        assert all(TOKEN not in value for value in call.headers.values())
    assert any(r.name == SDK_LOGGER.name for r in caplog.records), "no SDK debug lines seen"
    assert TOKEN not in caplog.text
    for text in texts:
        assert TOKEN not in text


# --- config -------------------------------------------------------------------------


def test_the_token_can_come_from_a_file_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "slack.token").write_text(TOKEN + "\n")
    spec = SlackSpec.model_validate(
        {"name": "ops", "kind": "slack", "token_file": "slack.token", "channel": "#ops"},
        context={"base_dir": tmp_path},
    )
    assert spec.secret_token == TOKEN
    assert spec.token_file == tmp_path / "slack.token"
    assert TOKEN not in repr(spec)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "set token or token_file"),
        ({"token": "x", "token_file": "t"}, "set either token or token_file, not both"),
        ({"token_file": "missing"}, "does not exist"),
        ({"token": "x", "base_url": "slack.com/api"}, "expected an http:// or https:// URL"),
        ({"token": "x", "mention_on": ["urgent"]}, "mention_on"),
        ({"token": "x", "name": "ops slack"}, "invalid name"),
    ],
    ids=["no-token", "both", "missing-file", "bad-url", "bad-severity", "bad-name"],
)
def test_invalid_specs_are_refused(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    (tmp_path / "t").write_text("x")
    values = {"name": "ops", "kind": "slack", "channel": "#ops", **fields}
    with pytest.raises(ValidationError, match=message):
        SlackSpec.model_validate(values, context={"base_dir": tmp_path})
