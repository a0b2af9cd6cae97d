"""The guard's decisions, table-driven: one case per rule, plus the per-target lock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.errors import RemediationRefused
from remediations._base import AttemptLimit, Change, Plan, RemediationSpec, parse_attempt_limit
from remediations.guard import Approval, Decision, Guard, History, Request

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def spec(**fields: Any) -> RemediationSpec:
    return RemediationSpec.model_validate(
        {
            "name": "fix",
            "kind": "sql",
            "mode": "auto",
            "cooldown": "10m",
            "max_attempts": "3 per 1h",
            "backoff": "1m",
            "max_rows": 2,
            "max_targets": 1,
            "approval_expiry": "15m",
            **fields,
        }
    )


def plan(rows: int = 1, targets: int = 1) -> Plan:
    changes = [Change("s", "t", {"k": i}, {"v": 0}, {"v": 1}) for i in range(rows)]
    return Plan("fix", "sql", "probe-a", "x", changes=changes, targets=targets)


@dataclass
class Case:
    id: str
    expect: tuple[str, str]  # (outcome, guard)
    spec: dict[str, Any] = field(default_factory=dict)
    history: History = field(default_factory=History)
    guard: dict[str, Any] = field(default_factory=dict)
    rows: int = 1
    targets: int = 1
    approval: Approval | None = None
    requested_at: datetime | None = None


CASES = [
    Case("auto-runs", ("run", "mode")),
    Case("kill-switch", ("refused", "kill_switch"), guard={"kill_switch": True}),
    Case("mode-off", ("refused", "mode"), spec={"mode": "off"}),
    Case("global-off-wins", ("refused", "mode"), guard={"mode": "off"}),
    Case("shadow", ("shadow", "mode"), spec={"mode": "shadow"}),
    Case("global-shadow-wins", ("shadow", "mode"), guard={"mode": "shadow"}),
    Case(
        "breaker-open",
        ("refused", "breaker"),
        history=History(breaker_open=True, failures_in_a_row=3),
    ),
    Case("already-running", ("refused", "running"), history=History(running=True)),
    Case("cooldown", ("refused", "cooldown"), history=History(last_run_at=NOW - 5 * MIN)),
    Case("cooldown-over", ("run", "mode"), history=History(last_run_at=NOW - 11 * MIN)),
    Case(
        "attempts-used",
        ("refused", "attempts"),
        history=History(attempts=(NOW - 50 * MIN, NOW - 40 * MIN, NOW - 30 * MIN)),
    ),
    Case(
        "attempts-outside-window",
        ("run", "mode"),
        history=History(attempts=(NOW - 90 * MIN, NOW - 80 * MIN, NOW - 30 * MIN)),
    ),
    Case(
        "backoff-1st-failure",
        ("refused", "backoff"),
        spec={"cooldown": "0s"},
        history=History(failures_in_a_row=1, last_failure_at=NOW - 0.5 * MIN),
    ),
    Case(
        "backoff-1st-over",
        ("run", "mode"),
        spec={"cooldown": "0s"},
        history=History(failures_in_a_row=1, last_failure_at=NOW - 1.5 * MIN),
    ),
    Case(
        "backoff-doubles",
        ("refused", "backoff"),
        spec={"cooldown": "0s"},
        history=History(failures_in_a_row=3, last_failure_at=NOW - 3 * MIN),
    ),
    Case(
        "backoff-doubled-over",
        ("run", "mode"),
        spec={"cooldown": "0s"},
        history=History(failures_in_a_row=3, last_failure_at=NOW - 4 * MIN),
    ),
    Case("max-rows", ("refused", "max_rows"), rows=3),
    Case("max-rows-in-shadow-too", ("refused", "max_rows"), spec={"mode": "shadow"}, rows=3),
    Case("max-targets", ("refused", "max_targets"), targets=2),
    Case("global-rate", ("refused", "global_rate"), history=History(runs_last_hour=30)),
    Case("approval-waits", ("await_approval", "approval"), spec={"mode": "approval"}),
    Case(
        "approval-unanswered-expires",
        ("refused", "approval"),
        spec={"mode": "approval"},
        requested_at=NOW - 16 * MIN,
    ),
    Case(
        "approved",
        ("run", "approval"),
        spec={"mode": "approval"},
        requested_at=NOW - 5 * MIN,
        approval=Approval(True, "alice", NOW - MIN),
    ),
    Case(
        "approved-too-late",
        ("refused", "approval"),
        spec={"mode": "approval"},
        requested_at=NOW - 20 * MIN,
        approval=Approval(True, "alice", NOW - MIN),
    ),
    Case(
        "rejected",
        ("refused", "approval"),
        spec={"mode": "approval"},
        requested_at=NOW - 5 * MIN,
        approval=Approval(False, "bob", NOW - MIN),
    ),
    Case(
        "auto-spec-under-global-approval",
        ("await_approval", "approval"),
        guard={"mode": "approval"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_decisions(case: Case) -> None:
    guard = Guard(**case.guard)
    request = Request(
        spec(**case.spec),
        plan(case.rows, case.targets),
        "test",
        NOW,
        requested_at=case.requested_at,
        approval=case.approval,
    )
    decision = guard.check(request, case.history)
    assert (decision.outcome, decision.guard) == case.expect, decision.reason
    assert decision.allowed == (decision.outcome == "run")
    assert decision.reason


def test_refusal_reasons_are_readable() -> None:
    decision = Guard().check(Request(spec(), plan(), "t", NOW), History(last_run_at=NOW - 4 * MIN))
    assert decision == Decision(False, "cooldown: 6m left of 10m", "cooldown", "refused")


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("3 per 1h", AttemptLimit(3, timedelta(hours=1))),
        (" 10 per 30m ", AttemptLimit(10, 30 * MIN)),
    ],
)
def test_attempt_limits_parse(text: str, limit: AttemptLimit) -> None:
    assert parse_attempt_limit(text) == limit
    assert spec(max_attempts=text).max_attempts == limit


@pytest.mark.parametrize("text", ["3", "0 per 1h", "three per 1h", "3 per hour", "3/1h"])
def test_bad_attempt_limits_are_config_errors(text: str) -> None:
    with pytest.raises(ValueError, match="invalid attempt limit"):
        spec(max_attempts=text)


async def test_the_lock_refuses_a_second_run_on_the_same_target() -> None:
    guard = Guard()
    ran: list[str] = []
    entered = asyncio.Event()

    async def attempt(who: str) -> None:
        async with guard.lock("fix", "probe-a"):
            entered.set()
            ran.append(who)
            await asyncio.sleep(0.05)

    first = asyncio.create_task(attempt("incident"))
    await entered.wait()
    with pytest.raises(RemediationRefused, match="already running on probe-a"):
        await attempt("cli")
    async with guard.lock("fix", "probe-b"):  # another target is independent
        pass
    await first
    assert ran == ["incident"]
    async with guard.lock("fix", "probe-a"):  # released afterwards
        assert guard.locked("fix", "probe-a")
