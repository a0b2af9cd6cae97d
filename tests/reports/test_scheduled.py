"""Reports inside a running agent: scheduled, stored, emailed to aiosmtpd on loopback.

The outbox carries a report's email like an incident notice: a failed SMTP attempt is
retried later and the report arrives exactly once, with the Message-ID chosen when the
send was queued.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from agent import store_reports
from agent.results import utcnow
from reports.generate import period_ending
from tests.running_agent import RunningAgent, StartAgent, start_agent, target, wait_until

__all__ = ["start_agent", "target"]


@dataclass
class Mailbox:
    """An SMTP receiver: refuses the first `refuse` messages with 451 (try again later)."""

    refuse: int = 0
    attempts: int = 0
    received: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.attempts <= self.refuse:
            return "451 4.3.0 mailbox busy, try again later"
        self.received.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        out = []
        for envelope in self.received:
            assert envelope.original_content is not None
            message = email.message_from_bytes(
                envelope.original_content, policy=email.policy.default
            )
            assert isinstance(message, EmailMessage)
            out.append(message)
        return out


async def _smtp(mailbox: Mailbox) -> AsyncIterator[tuple[int, Mailbox]]:
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(mailbox, hostname="mx.test"), "127.0.0.1", 0
    )
    yield server.sockets[0].getsockname()[1], mailbox
    server.close()
    await server.wait_closed()


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[int, Mailbox]]:
    async for pair in _smtp(Mailbox()):
        yield pair


@pytest.fixture
async def busy_smtp() -> AsyncIterator[tuple[int, Mailbox]]:
    async for pair in _smtp(Mailbox(refuse=1)):
        yield pair


def _yaml(base: str, port: int, schedule: str) -> str:
    return f"""
agent:
  name: shop-test
  data_dir: ./var
  api: {{listen: "127.0.0.1:0"}}
probes:
  - {{name: web, kind: http, url: "{base}/ok", every: 200ms, expect: [status == 200]}}
notify:
  - name: ops-email
    kind: email
    smtp: {{host: 127.0.0.1, port: {port}, starttls: false}}
    from: "opsagent <opsagent@shop.test>"
    to: [oncall@shop.test]
reports:
  - {{name: daily, {schedule}, period: 1h, notify: [ops-email], sections: [availability, incidents]}}
"""


def _read(path: str) -> str:
    return Path(path).read_text("utf-8")


async def _reports(running: RunningAgent) -> list[store_reports.StoredReport]:
    store = running.agent.running_store()
    return await store.run(lambda con: store_reports.listing(con))


async def test_scheduled_report_is_stored_and_emailed(
    start_agent: StartAgent, target: object, smtp: tuple[int, Mailbox]
) -> None:
    port, mailbox = smtp
    running = await start_agent(_yaml(target.base, port, "every: 2s"))  # type: ignore[attr-defined]

    async def arrived() -> bool:
        return len(mailbox.received) >= 1

    await wait_until(arrived, within=20)
    message = mailbox.messages()[0]
    # Python folds a long Subject right after the colon; unfolding leaves one space.
    subject = str(message["Subject"]).strip()
    assert subject.startswith("[opsagent] shop-test daily ")
    assert subject.endswith("100.00 % available, 0 incidents")
    assert message["X-Opsagent-Report"] == "daily"
    assert message.get_content_type() == "multipart/alternative"
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text = text_part.get_content().replace("\r\n", "\n")
    html = html_part.get_content().replace("\r\n", "\n")
    assert "AVAILABILITY AND LATENCY" in text and "web" in text
    assert "NOISE" not in text  # only the configured sections
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "web" in html

    # Stored under the data dir and listed in the store, with its delivery.
    reports = await _reports(running)
    sent = next(r for r in reports if message["Message-ID"].startswith(f"<report.daily.{r.id}."))
    assert sent.send_state == "sent"
    assert sent.trigger == "schedule" and sent.notify == ("ops-email",)
    assert Path(sent.html_path).parent == running.data_dir / "reports"
    assert sent.subject == subject
    assert _read(sent.html_path).strip() == html.strip()
    assert _read(sent.text_path).strip() == text.strip()
    assert (sent.period_end - sent.period_start).total_seconds() == 3600


async def test_failed_send_is_retried_and_delivered_exactly_once(
    start_agent: StartAgent, target: object, busy_smtp: tuple[int, Mailbox]
) -> None:
    port, mailbox = busy_smtp
    # Scheduled far away: the one report of this test is asked for by hand.
    running = await start_agent(_yaml(target.base, port, 'cron: "0 0 1 1 *"'))  # type: ignore[attr-defined]
    agent = running.agent
    spec = agent.config.reports[0]
    now = utcnow()
    done = await agent.reports.generate(spec, period_ending(spec, now), now=now, send=True)
    (notice,) = done.notices
    store = agent.running_store()

    # Queued in the store before any attempt (the first attempt may already be under way).
    row = await store.run(
        lambda con: con.execute(
            "SELECT event, target, report_id FROM notifications WHERE id = ?", [notice.id]
        ).fetchall()
    )
    assert row == [("report", "ops-email", done.report.id)]

    async def delivered() -> bool:
        return len(mailbox.received) == 1

    await wait_until(delivered, within=20)
    assert mailbox.attempts == 2  # the first was refused with 451, the retry accepted
    await asyncio.sleep(3)  # longer than the outbox's back-off: nothing more is sent
    assert len(mailbox.received) == 1 and mailbox.attempts == 2
    (message,) = mailbox.messages()
    assert message["Message-ID"] == notice.message_id

    (stored,) = await _reports(running)
    assert stored.send_state == "sent"
    (delivery,) = stored.deliveries
    assert delivery.attempts == 2 and delivery.last_error is None

    # After a restart nothing is sent again.
    assert await running.stop() == 0
    again = await start_agent(running.config_path.read_text())
    await asyncio.sleep(2)
    assert len(mailbox.received) == 1
    assert [r.send_state for r in await _reports(again)] == ["sent"]


async def test_reload_reschedules_adds_and_removes_report_jobs(
    start_agent: StartAgent, target: object, smtp: tuple[int, Mailbox]
) -> None:
    port, _ = smtp
    base = target.base  # type: ignore[attr-defined]
    running = await start_agent(_yaml(base, port, 'cron: "0 0 1 1 *"'))
    jobs = running.agent.reports
    schedule, next_run = jobs.schedule_of("daily")
    assert schedule == "cron 0 0 1 1 *" and next_run is not None and next_run.month == 1

    await asyncio.to_thread(running.config_path.write_text, _yaml(base, port, "every: 1s"))
    await running.agent.reload()
    assert jobs.schedule_of("daily")[0] == "every 1s"
    assert await jobs.roll_up() == 0  # every result is in the current hour: nothing to roll up

    async def generated() -> bool:
        return len(await _reports(running)) >= 1

    await wait_until(generated, within=10)

    without = _yaml(base, port, "every: 1s").split("reports:")[0]
    await asyncio.to_thread(running.config_path.write_text, without)
    await running.agent.reload()
    assert jobs.schedule_of("daily") == ("", None)
    count = len(await _reports(running))
    await asyncio.sleep(2.5)
    assert len(await _reports(running)) == count  # no job left to generate more
