"""The one safety guard every remediation passes, whoever asked (automation, Slack, TUI, CLI).

`Guard.check(request, history)` is pure: given the request, the remediation's policy
and the facts from the store (`History`), it returns a `Decision` and never acts. The
checks run in this order; the first that says no decides:

    kill_switch   the global switch is on: nothing runs
    mode          off: refused; shadow: plan and record only; approval: wait for a human
    breaker       N failed verifications on this target opened the circuit (a human resets it)
    running       a run on this target is already in progress (the store's view)
    cooldown      the last run on this target was less than `cooldown` ago
    attempts      `max_attempts` (e.g. 3 per 1h) already used on this target
    backoff       after k failed attempts, wait backoff * 2**(k-1) since the last one
    max_rows      the plan changes more rows than `max_rows`
    max_targets   the plan touches more targets than `max_targets`
    global_rate   more than `max_runs_per_hour` runs across all remediations
    approval      approval mode: approved and not expired, else awaiting (or expired = rejected)

`Guard.lock(remediation, target)` is the in-process half of "never twice at once": a
non-blocking asyncio lock per (remediation, target); the second caller is refused, not
queued. The store's `running` fact is the other half (a run recorded by another entry
path or before a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from agent.durations import format_duration
from agent.errors import RemediationRefused
from remediations._base import Mode, Plan, RemediationSpec

Outcome = Literal["run", "shadow", "await_approval", "refused"]


@dataclass(frozen=True)
class Decision:
    """The guard's answer: allowed or not, why, and which guard decided."""

    allowed: bool
    reason: str
    guard: str
    outcome: Outcome = "refused"

    @classmethod
    def refuse(cls, guard: str, reason: str) -> Decision:
        return cls(False, reason, guard, "refused")


@dataclass(frozen=True)
class Approval:
    """A human's answer to a run awaiting approval."""

    approved: bool
    by: str
    at: datetime


@dataclass(frozen=True)
class History:
    """What the store knows about this remediation on this target (and globally)."""

    last_run_at: datetime | None = None
    attempts: tuple[datetime, ...] = ()  # start times of attempts on this target
    failures_in_a_row: int = 0  # consecutive failed (or ineffective) attempts
    last_failure_at: datetime | None = None
    breaker_open: bool = False
    running: bool = False
    runs_last_hour: int = 0  # across every remediation and target


@dataclass(frozen=True)
class Request:
    """One ask to run `spec` with `plan`, by `actor`, at `now`."""

    spec: RemediationSpec
    plan: Plan
    actor: str
    now: datetime
    requested_at: datetime | None = None  # when approval was first asked
    approval: Approval | None = None
    undo: bool = False


@dataclass
class Guard:
    """The guard's global settings and its in-process per-target locks."""

    kill_switch: bool = False
    mode: Mode = "auto"  # the global mode: the stricter of it and the remediation's wins
    max_runs_per_hour: int = 30
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def effective_mode(self, spec: RemediationSpec) -> Mode:
        order: list[Mode] = ["off", "shadow", "approval", "auto"]
        return min(self.mode, spec.mode, key=order.index)

    def check(self, request: Request, history: History) -> Decision:
        """The decision for `request`; pure (no I/O, no clock of its own)."""
        spec, plan, now = request.spec, request.plan, request.now
        if self.kill_switch:
            return Decision.refuse("kill_switch", "the global kill switch is on")
        mode = self.effective_mode(spec)
        if mode == "off":
            return Decision.refuse("mode", f"{spec.name} is off")
        if history.breaker_open:
            return Decision.refuse(
                "breaker",
                f"circuit open after {history.failures_in_a_row} failed attempts on {plan.target}; "
                "a human must reset it",
            )
        if history.running:
            return Decision.refuse("running", f"{spec.name} is already running on {plan.target}")
        if mode != "shadow":
            if history.last_run_at is not None and now - history.last_run_at < spec.cooldown:
                left = spec.cooldown - (now - history.last_run_at)
                return Decision.refuse(
                    "cooldown", f"cooldown: {_d(left)} left of {_d(spec.cooldown)}"
                )
            limit = spec.max_attempts
            recent = [t for t in history.attempts if now - t < limit.window]
            if len(recent) >= limit.count:
                return Decision.refuse(
                    "attempts",
                    f"{len(recent)} attempts in the last {_d(limit.window)} (limit {limit})",
                )
            if history.failures_in_a_row and history.last_failure_at is not None:
                wait = spec.backoff * (2 ** (history.failures_in_a_row - 1))
                if now - history.last_failure_at < wait:
                    left = wait - (now - history.last_failure_at)
                    return Decision.refuse(
                        "backoff",
                        f"back-off after {history.failures_in_a_row} failed attempts: {_d(left)} left",
                    )
        if plan.rows > spec.max_rows:
            return Decision.refuse(
                "max_rows", f"plan changes {plan.rows} rows, more than max_rows {spec.max_rows}"
            )
        if plan.targets > spec.max_targets:
            return Decision.refuse(
                "max_targets",
                f"plan touches {plan.targets} targets, more than max_targets {spec.max_targets}",
            )
        if mode == "shadow":
            return Decision(False, "shadow mode: planned and recorded, not run", "mode", "shadow")
        if history.runs_last_hour >= self.max_runs_per_hour:
            return Decision.refuse(
                "global_rate",
                f"{history.runs_last_hour} runs in the last hour (limit {self.max_runs_per_hour})",
            )
        if mode == "approval":
            return _approval(request)
        return Decision(True, "auto mode: all guards passed", "mode", "run")

    @contextlib.asynccontextmanager
    async def lock(self, remediation: str, target: str) -> AsyncIterator[None]:
        """Hold the per-target lock; RemediationRefused at once if someone else holds it."""
        key = (remediation, target)
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            raise RemediationRefused(f"lock: {remediation} is already running on {target}")
        async with lock:
            yield

    def locked(self, remediation: str, target: str) -> bool:
        lock = self._locks.get((remediation, target))
        return lock is not None and lock.locked()


def _approval(request: Request) -> Decision:
    spec, approval = request.spec, request.approval
    asked = request.requested_at or request.now
    if approval is None:
        if request.now - asked >= spec.approval_expiry:
            return Decision.refuse(
                "approval", f"approval expired after {_d(spec.approval_expiry)} unanswered"
            )
        return Decision(False, "awaiting approval", "approval", "await_approval")
    if not approval.approved:
        return Decision.refuse("approval", f"rejected by {approval.by}")
    if approval.at - asked >= spec.approval_expiry:
        return Decision.refuse(
            "approval",
            f"approval by {approval.by} came after the {_d(spec.approval_expiry)} expiry",
        )
    return Decision(True, f"approved by {approval.by}", "approval", "run")


def _d(value: timedelta) -> str:
    return format_duration(timedelta(seconds=max(0, round(value.total_seconds()))))
