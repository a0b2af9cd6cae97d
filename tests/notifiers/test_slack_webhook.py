"""The slack_webhook notifier: slack-sdk's webhook client against the fake Slack's webhooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.errors import NotifyError
from agent.notices import NoticeEvent
from agent.notifiers import slack_webhook
from agent.notifiers._slack_blocks import message_blocks
from agent.notifiers.context import NotifyContext
from agent.notifiers.slack_webhook import SlackWebhookSpec
from tests.fakes.slack import WEBHOOK, FakeSlack
from tests.notifiers.conftest import make_notice

SECRET_PATH = "T0FAKE/B0FAKE/webhooksecret4242"


def spec_for(fake: FakeSlack, **fields: Any) -> SlackWebhookSpec:
    values = {
        "name": "ops-hook",
        "kind": "slack_webhook",
        "url": fake.webhook_url(SECRET_PATH),
        **fields,
    }
    return SlackWebhookSpec.model_validate(values)


async def test_each_event_is_a_new_message_with_the_incident_blocks(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    spec = spec_for(fake_slack, mention="<!here>")
    opened, resolved = make_notice(), make_notice(NoticeEvent.RESOLVED, notice_id=2)

    first = await slack_webhook.send(spec, opened, ctx)
    second = await slack_webhook.send(spec, resolved, ctx.for_delivery(first.ref))

    calls = fake_slack.calls_to(WEBHOOK)
    assert len(calls) == 2
    assert calls[0].body["blocks"] == message_blocks(opened, mention="<!here>")
    assert calls[0].body["text"] == "<!here> 🔴 CRITICAL shop-api failing: timed out after 1s"
    assert calls[1].body["blocks"][0]["text"]["text"] == "✅ shop-api failing"
    assert first.detail == second.detail == "posted"


async def test_rate_limit_is_transient_with_retry_after(
    fake_slack: FakeSlack, ctx: NotifyContext
) -> None:
    fake_slack.rate_limit(retry_after=30)
    with pytest.raises(NotifyError) as caught:
        await slack_webhook.send(spec_for(fake_slack), make_notice(), ctx)
    assert caught.value.retry_after == 30 and not caught.value.permanent
    assert len(fake_slack.calls) == 1


async def test_a_server_error_is_transient(fake_slack: FakeSlack, ctx: NotifyContext) -> None:
    fake_slack.server_error(500)
    with pytest.raises(NotifyError, match="HTTP 500") as caught:
        await slack_webhook.send(spec_for(fake_slack), make_notice(), ctx)
    assert not caught.value.permanent


@pytest.mark.parametrize("code", ["channel_not_found", "no_service", "invalid_token"])
async def test_a_dead_webhook_is_permanent(
    fake_slack: FakeSlack, ctx: NotifyContext, code: str
) -> None:
    fake_slack.api_error(code)
    with pytest.raises(NotifyError, match=code) as caught:
        await slack_webhook.send(spec_for(fake_slack), make_notice(), ctx)
    assert caught.value.permanent


async def test_the_url_stays_secret(
    fake_slack: FakeSlack, ctx: NotifyContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = spec_for(fake_slack)
    texts = [repr(spec), spec.model_dump_json()]
    texts.append((await slack_webhook.send(spec, make_notice(), ctx)).model_dump_json())
    fake_slack.api_error("no_service")
    with pytest.raises(NotifyError) as caught:
        await slack_webhook.send(spec, make_notice(), ctx)
    texts.append(str(caught.value))
    gone = spec_for(fake_slack, url=f"http://127.0.0.1:9/services/{SECRET_PATH}")
    with pytest.raises(NotifyError) as caught:
        await slack_webhook.send(gone, make_notice(), ctx)
    texts.append(str(caught.value))

    secret = SECRET_PATH.rsplit("/", 1)[-1]
    # aiohttp's access log names the path: leave the fake's own lines out.
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp")]
    assert all(secret not in line for line in ours)
    assert all(secret not in text for text in texts)


def test_the_url_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "hook.url").write_text("https://hooks.slack.com/services/T0/B0/x\n")
    spec = SlackWebhookSpec.model_validate(
        {"name": "hook", "kind": "slack_webhook", "url_file": "hook.url"},
        context={"base_dir": tmp_path},
    )
    assert spec.secret_url == "https://hooks.slack.com/services/T0/B0/x"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "set url or url_file"),
        ({"url": "hooks.slack.com/services/x"}, "expected an https:// webhook URL"),
        ({"url_file": "plain"}, "expected an https:// webhook URL"),
    ],
    ids=["missing", "not-a-url", "file-not-a-url"],
)
def test_invalid_specs_are_refused(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    (tmp_path / "plain").write_text("not a url")
    with pytest.raises(ValidationError, match=message) as caught:
        SlackWebhookSpec.model_validate(
            {"name": "hook", "kind": "slack_webhook", **fields}, context={"base_dir": tmp_path}
        )
    assert "hooks.slack.com/services/x" not in str(caught.value.errors()[0]["msg"])
