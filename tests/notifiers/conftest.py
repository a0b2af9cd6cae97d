"""Shared pieces for the notifier tests: a context, notices at fixed times, the fake Slack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.notices import IncidentSnapshot, Notice, NoticeEvent
from agent.notifiers.context import NotifyContext
from tests.fakes.slack import FakeSlack

OPENED_AT = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)  # 1717243200
TOKEN = "xoxb-1111-2222-secrettokenvalue"


def make_notice(
    event: NoticeEvent = NoticeEvent.OPENED,
    *,
    notice_id: int = 1,
    target: str = "ops",
    after: timedelta = timedelta(0),
    actor: str | None = None,
    comment: str | None = None,
    **incident: Any,
) -> Notice:
    """A notice about incident 42 (shop-api, critical), `after` its opening."""
    fields: dict[str, Any] = {
        "id": 42,
        "fingerprint": "shop-api",
        "probe": "shop-api",
        "severity": "critical",
        "state": "open",
        "title": "shop-api failing",
        "summary": "timed out after 1s",
        "opened_at": OPENED_AT,
    }
    if event is NoticeEvent.RESOLVED:
        fields.update(state="resolved", resolution="recovered", resolved_at=OPENED_AT + after)
    if event is NoticeEvent.ACKNOWLEDGED:
        fields.update(
            state="acknowledged", acknowledged_by=actor, acknowledged_at=OPENED_AT + after
        )
    fields.update(incident)
    return Notice(
        id=notice_id,
        event=event,
        target=target,
        agent_name="shop-prod",
        incident=IncidentSnapshot(**fields),
        created_at=OPENED_AT + after,
        actor=actor,
        comment=comment,
    )


@pytest.fixture
async def ctx() -> AsyncIterator[NotifyContext]:
    """A notify context for one test; its clients are closed after.

    Its Slack pace is shortened so tests do not wait a second per message; the pacing
    tests use the production default.
    """
    context = NotifyContext(agent_name="shop-prod", slack_interval=0.01)
    yield context
    await context.aclose()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """The fake Slack on a loopback port, accepting TOKEN."""
    async with FakeSlack(tokens={TOKEN}) as fake:
        yield fake
