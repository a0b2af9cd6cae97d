"""The email notifier against a real SMTP server (aiosmtpd) on loopback.

Each test starts aiosmtpd in its own event loop on port 0: plain, STARTTLS with AUTH,
or implicit TLS, with certificates from a throwaway trustme CA.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from agent.errors import NotifyError
from agent.notices import NoticeEvent
from agent.notifiers import email as email_notifier
from agent.notifiers.context import NotifyContext
from agent.notifiers.email import EmailSpec
from tests.notifiers.conftest import make_notice

USER, PASSWORD = "opsagent", "s3cret-smtp-pass"


@dataclass
class Received:
    """What the server got, and how it should answer."""

    envelopes: list[Envelope] = field(default_factory=list)
    refuse_rcpt: set[str] = field(default_factory=set)
    data_answer: str | None = None  # e.g. "451 try again later"

    def message(self, index: int = -1) -> EmailMessage:
        content = self.envelopes[index].original_content
        assert content is not None
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Handler:
    """aiosmtpd handler that records, or refuses what the test asks it to."""

    def __init__(self, received: Received) -> None:
        self.received = received

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.received.refuse_rcpt:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.received.data_answer:
            return self.received.data_answer
        self.received.envelopes.append(envelope)
        return "250 Message accepted"


Start = Callable[..., Awaitable[tuple[int, Received]]]


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def smtp_server(ca: trustme.CA) -> AsyncIterator[Start]:
    """`port, received = await smtp_server(mode)` with mode plain, starttls or tls."""
    servers: list[asyncio.Server] = []

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, handled=False)

    async def start(mode: str = "plain") -> tuple[int, Received]:
        received = Received()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls)

        def factory() -> SMTP:
            if mode == "starttls":
                server = SMTP(
                    Handler(received),
                    hostname="mx.test",
                    tls_context=tls,
                    require_starttls=True,
                    auth_require_tls=True,
                    auth_required=True,
                    authenticator=authenticate,
                )
            else:
                server = SMTP(
                    Handler(received),
                    hostname="mx.test",
                    auth_require_tls=mode == "tls",
                    authenticator=authenticate,
                )
            return server

        server = await asyncio.get_running_loop().create_server(
            factory, "127.0.0.1", 0, ssl=tls if mode == "tls" else None
        )
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port, received

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def spec_for(port: int, **smtp: Any) -> EmailSpec:
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": port, "starttls": False}
    settings.update(smtp)
    return EmailSpec.model_validate(
        {
            "name": "ops-email",
            "kind": "email",
            "smtp": settings,
            "from": "opsagent <opsagent@shop.example>",
            "to": ["oncall@shop.example", "lead@shop.example"],
        }
    )


EVIDENCE = [
    {"id": 17, "order_id": 1001, "amount": "12.50", "note": "<script>alert(1)</script>"},
    {"id": 18, "order_id": 1002, "amount": "7.00", "note": "a & b"},
]


async def test_an_opened_incident_arrives_as_text_and_html(
    smtp_server: Start, ctx: NotifyContext
) -> None:
    port, received = await smtp_server("plain")
    notice = make_notice(evidence=EVIDENCE, links={"Runbook": "https://wiki.example/shop-api"})

    delivery = await email_notifier.send(spec_for(port), notice, ctx)

    (envelope,) = received.envelopes
    assert envelope.mail_from == "opsagent@shop.example"
    assert envelope.rcpt_tos == ["oncall@shop.example", "lead@shop.example"]
    message = received.message()
    assert message["Subject"] == "[opsagent] CRITICAL shop-api failing"
    assert message["From"] == "opsagent <opsagent@shop.example>"
    assert message["To"] == "oncall@shop.example, lead@shop.example"
    assert message["Message-ID"] == delivery.ref["message_id"]
    assert delivery.ref["message_id"].endswith("@shop.example>")
    assert message["In-Reply-To"] is None and message["References"] is None
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Opsagent-Incident"] == "42"
    assert message.get_content_type() == "multipart/alternative"

    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    # SMTP carries CRLF line ends; compare with plain newlines.
    text = text_part.get_content().replace("\r\n", "\n")
    html = html_part.get_content().replace("\r\n", "\n")
    assert text.startswith("🔔 CRITICAL shop-api failing\n\ntimed out after 1s\n")
    assert "Opened at:   2024-06-01 12:00:00 UTC" in text
    assert "    id  order_id  amount  note\n" in text
    assert "<script>alert(1)</script>" in text  # plain text is never escaped
    assert "Runbook: https://wiki.example/shop-api" in text
    assert "opsagent shop-prod · incident #42" in text
    assert "<title>[opsagent] CRITICAL shop-api failing</title>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert "a &amp; b" in html
    assert '<a href="https://wiki.example/shop-api">Runbook</a>' in html


async def test_later_notices_thread_on_the_first_message(
    smtp_server: Start, ctx: NotifyContext
) -> None:
    port, received = await smtp_server("plain")
    spec = spec_for(port)
    opened = await email_notifier.send(spec, make_notice(), ctx)
    ack = make_notice(NoticeEvent.ACKNOWLEDGED, actor="alice", comment="on it")
    resolved = make_notice(NoticeEvent.RESOLVED, after=timedelta(minutes=12))

    acked = await email_notifier.send(spec, ack, ctx.for_delivery(opened.ref))
    done = await email_notifier.send(spec, resolved, ctx.for_delivery(acked.ref))

    root = opened.ref["message_id"]
    assert acked.ref == done.ref == {"message_id": root}
    subjects = [received.message(i)["Subject"] for i in range(3)]
    assert subjects == [
        "[opsagent] CRITICAL shop-api failing",
        "[opsagent] ACKNOWLEDGED shop-api failing",
        "[opsagent] RESOLVED shop-api failing",
    ]
    for index in (1, 2):
        message = received.message(index)
        assert message["In-Reply-To"] == root
        assert message["References"] == root
        assert message["Message-ID"] != root
    body = received.message(2).get_body(preferencelist=("plain",))
    assert body is not None
    assert "recovered after 12m" in body.get_content()
    assert "State:       resolved (recovered)" in body.get_content()


async def test_starttls_with_login(smtp_server: Start, ctx: NotifyContext, ca_file: Path) -> None:
    port, received = await smtp_server("starttls")
    spec = spec_for(port, starttls=True, username=USER, password=PASSWORD, ca_file=str(ca_file))

    await email_notifier.send(spec, make_notice(), ctx)

    assert len(received.envelopes) == 1


async def test_a_wrong_password_is_permanent_and_not_repeated(
    smtp_server: Start, ctx: NotifyContext, ca_file: Path
) -> None:
    port, received = await smtp_server("starttls")
    spec = spec_for(
        port, starttls=True, username=USER, password="wrong-password", ca_file=str(ca_file)
    )

    with pytest.raises(NotifyError, match="authentication failed") as caught:
        await email_notifier.send(spec, make_notice(), ctx)

    assert caught.value.permanent
    assert "wrong-password" not in str(caught.value)
    assert received.envelopes == []


async def test_implicit_tls(smtp_server: Start, ctx: NotifyContext, ca_file: Path) -> None:
    port, received = await smtp_server("tls")
    spec = spec_for(port, tls=True, ca_file=str(ca_file))
    await email_notifier.send(spec, make_notice(), ctx)
    assert len(received.envelopes) == 1


async def test_an_untrusted_certificate_is_permanent(
    smtp_server: Start, ctx: NotifyContext
) -> None:
    port, _ = await smtp_server("starttls")
    spec = spec_for(port, starttls=True, username=USER, password=PASSWORD)
    with pytest.raises(NotifyError, match="certificate not trusted") as caught:
        await email_notifier.send(spec, make_notice(), ctx)
    assert caught.value.permanent


async def test_validation_can_be_turned_off(smtp_server: Start, ctx: NotifyContext) -> None:
    port, received = await smtp_server("starttls")
    spec = spec_for(port, starttls=True, username=USER, password=PASSWORD, validate_certs=False)
    await email_notifier.send(spec, make_notice(), ctx)
    assert len(received.envelopes) == 1


async def test_a_refused_recipient_is_permanent(smtp_server: Start, ctx: NotifyContext) -> None:
    port, received = await smtp_server("plain")
    received.refuse_rcpt = {"oncall@shop.example", "lead@shop.example"}
    with pytest.raises(NotifyError, match="every recipient refused") as caught:
        await email_notifier.send(spec_for(port), make_notice(), ctx)
    assert caught.value.permanent


async def test_one_refused_recipient_of_two_is_a_delivery(
    smtp_server: Start, ctx: NotifyContext
) -> None:
    port, received = await smtp_server("plain")
    received.refuse_rcpt = {"lead@shop.example"}
    delivery = await email_notifier.send(spec_for(port), make_notice(), ctx)
    assert received.envelopes[0].rcpt_tos == ["oncall@shop.example"]
    assert "refused: lead@shop.example" in delivery.detail


@pytest.mark.parametrize(
    ("answer", "permanent"),
    [("451 4.3.0 try again later", False), ("554 5.7.1 message rejected", True)],
    ids=["4xx-transient", "5xx-permanent"],
)
async def test_a_data_answer_decides_the_retry(
    smtp_server: Start, ctx: NotifyContext, answer: str, permanent: bool
) -> None:
    port, received = await smtp_server("plain")
    received.data_answer = answer
    with pytest.raises(NotifyError, match=answer.split()[0]) as caught:
        await email_notifier.send(spec_for(port), make_notice(), ctx)
    assert caught.value.permanent is permanent


async def test_a_refused_connection_is_transient(ctx: NotifyContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(NotifyError, match=f"smtp 127.0.0.1:{port}") as caught:
            await email_notifier.send(spec_for(port), make_notice(), ctx)
    assert not caught.value.permanent


async def test_a_silent_server_is_a_transient_timeout(ctx: NotifyContext) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets; returns when the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(NotifyError, match="timed out") as caught:
            await email_notifier.send(spec_for(port, timeout="300ms"), make_notice(), ctx)
    finally:
        server.close()
        await server.wait_closed()
    assert not caught.value.permanent


# --- config -------------------------------------------------------------------------


def test_defaults_are_starttls_on_587() -> None:
    spec = EmailSpec.model_validate(
        {
            "name": "mail",
            "kind": "email",
            "smtp": {"host": "smtp.example.com"},
            "from": "a@example.com",
            "to": ["b@example.com"],
        }
    )
    assert spec.smtp.starttls and not spec.smtp.tls
    assert spec.smtp.effective_port == 587
    assert spec.subject_prefix == "[opsagent]"


def test_tls_alone_means_smtps_on_465() -> None:
    spec = EmailSpec.model_validate(
        {
            "name": "mail",
            "kind": "email",
            "smtp": {"host": "smtp.example.com", "tls": True},
            "from": "a@example.com",
            "to": ["b@example.com"],
        }
    )
    assert spec.smtp.tls and not spec.smtp.starttls
    assert spec.smtp.effective_port == 465


def test_the_password_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "smtp.pw").write_text(PASSWORD + "\n")
    spec = EmailSpec.model_validate(
        {
            "name": "mail",
            "kind": "email",
            "smtp": {"host": "smtp.example.com", "username": USER, "password_file": "smtp.pw"},
            "from": "a@example.com",
            "to": ["b@example.com"],
        },
        context={"base_dir": tmp_path},
    )
    assert spec.smtp.password is not None
    assert spec.smtp.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(spec)


@pytest.mark.parametrize(
    ("smtp", "top", "message"),
    [
        ({"tls": True, "starttls": True}, {}, "not both"),
        ({"username": USER}, {}, "set both username and password"),
        (
            {"starttls": False, "username": USER, "password": "x"},
            {},
            "password in clear text",
        ),
        ({"ca_file": "missing.pem"}, {}, "does not exist"),
        ({}, {"to": []}, "at least 1"),
        ({}, {"from": "not-an-address"}, "invalid email address"),
        ({"port": 70000}, {}, "less than or equal to 65535"),
    ],
    ids=["tls-and-starttls", "user-no-password", "clear-text", "ca", "no-to", "bad-from", "port"],
)
def test_invalid_specs_are_refused(
    tmp_path: Path, smtp: dict[str, Any], top: dict[str, Any], message: str
) -> None:
    values = {
        "name": "mail",
        "kind": "email",
        "smtp": {"host": "smtp.example.com", **smtp},
        "from": "a@example.com",
        "to": ["b@example.com"],
        **top,
    }
    with pytest.raises(ValidationError, match=message):
        EmailSpec.model_validate(values, context={"base_dir": tmp_path})


def test_clear_text_login_is_allowed_on_this_machine() -> None:
    spec = spec_for(2525, username=USER, password=PASSWORD)
    assert spec.smtp.username == USER
