"""A report emailed to a real SMTP server (aiosmtpd) on loopback, parsed back."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from agent.errors import NotifyError
from agent.notifiers.context import NotifyContext
from agent.notifiers.email import EmailSpec
from reports.data import ReportData
from reports.deliver import send_report


class Handler:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[int, Handler]]:
    handler = Handler()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="mx.test"), "127.0.0.1", 0
    )
    port: int = server.sockets[0].getsockname()[1]
    yield port, handler
    server.close()
    await server.wait_closed()


@pytest.fixture
async def ctx() -> AsyncIterator[NotifyContext]:
    context = NotifyContext(agent_name="shop-prod")
    yield context
    await context.aclose()


def _spec(port: int) -> EmailSpec:
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": port, "starttls": False}
    return EmailSpec.model_validate(
        {
            "name": "ops-email",
            "kind": "email",
            "smtp": settings,
            "from": "opsagent <opsagent@shop.example>",
            "to": ["oncall@shop.example", "lead@shop.example"],
        }
    )


async def test_report_arrives_as_text_and_html(
    smtp: tuple[int, Handler], ctx: NotifyContext, report_data: ReportData
) -> None:
    port, handler = smtp
    detail = await send_report(_spec(port), report_data, ctx, title="daily")
    assert detail.startswith("sent <")
    (envelope,) = handler.envelopes
    assert sorted(envelope.rcpt_tos) == ["lead@shop.example", "oncall@shop.example"]
    assert envelope.original_content is not None
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == (
        "[opsagent] shop-prod daily 2026-11-01: 93.18 % available, 3 incidents"
    )
    assert message.get_content_type() == "multipart/alternative"
    assert message["Auto-Submitted"] == "auto-generated"
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text = text_part.get_content()
    html = html_part.get_content()
    assert "AVAILABILITY AND LATENCY" in text and "api" in text and "93.18 %" in text
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "93.18 %" in html


async def test_unreachable_server_is_a_retryable_error(
    ctx: NotifyContext, report_data: ReportData
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NotifyError) as caught:
        await send_report(_spec(port), report_data, ctx, title="daily")
    assert not caught.value.permanent
    assert f"smtp 127.0.0.1:{port}" in str(caught.value)
