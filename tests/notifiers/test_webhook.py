"""The generic webhook notifier against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from agent.errors import NotifyError
from agent.notices import NoticeEvent
from agent.notifiers import webhook
from agent.notifiers.context import NotifyContext
from agent.notifiers.webhook import WebhookSpec
from tests.notifiers.conftest import make_notice

HOOK_TOKEN = "hook-token-0123456789"


@dataclass
class Receiver:
    """A local endpoint: records requests, answers `status` (and `headers`, `delay`)."""

    url: str = ""
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "accepted"
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.json()))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=self.body, headers=self.headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    found.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    yield found
    await runner.cleanup()


def spec_for(url: str, **fields: Any) -> WebhookSpec:
    return WebhookSpec.model_validate(
        {
            "name": "ops-hook",
            "kind": "webhook",
            "url": url,
            "headers": {"Authorization": f"Bearer {HOOK_TOKEN}"},
            **fields,
        }
    )


async def test_the_notice_is_posted_as_json(receiver: Receiver, ctx: NotifyContext) -> None:
    notice = make_notice(
        NoticeEvent.ACKNOWLEDGED, actor="alice", comment="on it", evidence=[{"id": 1}]
    )

    delivery = await webhook.send(spec_for(receiver.url), notice, ctx)

    ((headers, body),) = receiver.requests
    assert headers["Authorization"] == f"Bearer {HOOK_TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "schema": "opsagent.notice/1",
        "text": "👀 ACKNOWLEDGED shop-api failing — acknowledged by alice: on it",
        **json.loads(notice.model_dump_json()),
    }
    assert body["incident"]["evidence"] == [{"id": 1}]
    assert body["event"] == "acknowledged"
    assert delivery.ref == {"status": "200"}


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (401, True), (404, True), (408, False), (500, False), (503, False)],
)
async def test_the_status_decides_whether_to_retry(
    receiver: Receiver, ctx: NotifyContext, status: int, permanent: bool
) -> None:
    receiver.status = status
    with pytest.raises(NotifyError, match=f"HTTP {status}: accepted") as caught:
        await webhook.send(spec_for(receiver.url), make_notice(), ctx)
    assert caught.value.permanent is permanent
    assert caught.value.retry_after is None


async def test_429_is_retried_after_the_given_time(receiver: Receiver, ctx: NotifyContext) -> None:
    receiver.status, receiver.headers = 429, {"Retry-After": "12"}
    with pytest.raises(NotifyError) as caught:
        await webhook.send(spec_for(receiver.url), make_notice(), ctx)
    assert not caught.value.permanent
    assert caught.value.retry_after == 12


async def test_redirects_are_not_followed(receiver: Receiver, ctx: NotifyContext) -> None:
    receiver.status, receiver.headers = 302, {"Location": "/elsewhere"}
    with pytest.raises(NotifyError, match="HTTP 302") as caught:
        await webhook.send(spec_for(receiver.url), make_notice(), ctx)
    assert caught.value.permanent
    assert len(receiver.requests) == 1


async def test_a_slow_endpoint_is_a_transient_timeout(
    receiver: Receiver, ctx: NotifyContext
) -> None:
    receiver.delay = 2.0
    with pytest.raises(NotifyError, match=r"no answer within 0\.2s") as caught:
        await webhook.send(spec_for(receiver.url, timeout="200ms"), make_notice(), ctx)
    assert not caught.value.permanent


async def test_a_refused_connection_is_transient(ctx: NotifyContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        with pytest.raises(NotifyError, match=r"webhook http://127\.0\.0\.1") as caught:
            await webhook.send(spec_for(url), make_notice(), ctx)
    assert not caught.value.permanent


async def test_header_values_stay_out_of_errors(receiver: Receiver, ctx: NotifyContext) -> None:
    receiver.status, receiver.body = 401, f"bad token Bearer {HOOK_TOKEN}"
    spec = spec_for(receiver.url)
    with pytest.raises(NotifyError) as caught:
        await webhook.send(spec, make_notice(), ctx)
    assert HOOK_TOKEN not in str(caught.value)
    assert HOOK_TOKEN not in repr(spec)


def test_a_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="expected an http:// or https:// URL"):
        spec_for("ftp://example.com/hook")
