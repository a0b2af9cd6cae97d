"""The console notifier: one line per notice, and it never fails."""

from __future__ import annotations

import io
import sys
from datetime import timedelta

import pytest

from agent.notices import Notice, NoticeEvent
from agent.notifiers import console
from agent.notifiers.console import ConsoleSpec
from agent.notifiers.context import NotifyContext
from tests.notifiers.conftest import make_notice

SPEC = ConsoleSpec(name="terminal", kind="console")


@pytest.mark.parametrize(
    ("notice", "line"),
    [
        (
            make_notice(),
            "🔔 OPENED       critical  shop-api failing — timed out after 1s",
        ),
        (
            make_notice(NoticeEvent.ACKNOWLEDGED, actor="alice", comment="on it"),
            "👀 ACKNOWLEDGED critical  shop-api failing — acknowledged by alice: on it",
        ),
        (
            make_notice(NoticeEvent.RESOLVED, after=timedelta(minutes=2, seconds=10)),
            "✅ RESOLVED     critical  shop-api failing — recovered after 2m 10s",
        ),
        (
            make_notice(NoticeEvent.FLAPPING, severity="warning", flapping=True),
            "🔁 FLAPPING     warning   shop-api failing — changing state too often;"
            " no more pages until it is stable",
        ),
        (
            make_notice(
                NoticeEvent.ESCALATED,
                after=timedelta(seconds=40),
                actor="remediation",
                comment="restart-shop did not fix it: its circuit breaker opened (run #3)",
            ),
            "📣 ESCALATED    critical  shop-api failing — the automatic repair did not fix it"
            " after 40s: timed out after 1s: restart-shop did not fix it: its circuit breaker"
            " opened (run #3)",
        ),
        (
            make_notice(NoticeEvent.ESCALATED, after=timedelta(minutes=15)),
            "📣 ESCALATED    critical  shop-api failing — not acknowledged after 15m:"
            " timed out after 1s",
        ),
        (
            make_notice(NoticeEvent.APPROVAL, comment="fix-shop: POST /admin/fix").model_copy(
                update={"approval_run": 7}
            ),
            "🛠️ APPROVAL     critical  shop-api failing — a repair awaits approval (run #7):"
            " fix-shop: POST /admin/fix",
        ),
    ],
    ids=[
        "opened",
        "acknowledged",
        "resolved",
        "flapping",
        "repair-failed",
        "escalated",
        "approval",
    ],
)
async def test_one_line_per_notice(
    capsys: pytest.CaptureFixture[str], ctx: NotifyContext, notice: Notice, line: str
) -> None:
    delivery = await console.send(SPEC, notice, ctx)
    assert capsys.readouterr().out == line + "\n"
    assert delivery.detail == "printed"


async def test_stderr_can_be_chosen(capsys: pytest.CaptureFixture[str], ctx: NotifyContext) -> None:
    await console.send(ConsoleSpec(name="t", kind="console", stream="stderr"), make_notice(), ctx)
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("🔔 OPENED")


async def test_a_closed_stream_does_not_fail(
    monkeypatch: pytest.MonkeyPatch, ctx: NotifyContext
) -> None:
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)
    delivery = await console.send(SPEC, make_notice(), ctx)
    assert delivery.detail.startswith("not printed")


async def test_a_terminal_without_emoji_still_gets_the_words(
    monkeypatch: pytest.MonkeyPatch, ctx: NotifyContext
) -> None:
    buffer = io.BytesIO()
    ascii_out = io.TextIOWrapper(buffer, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    await console.send(SPEC, make_notice(), ctx)
    ascii_out.flush()
    assert buffer.getvalue() == b"? OPENED       critical  shop-api failing ? timed out after 1s\n"
