"""One entry point for every remediation request: plan -> guard -> run -> record.

Automation (an incident), the CLI, Slack and the TUI all call `Remediator.request`
(or `approve`, `undo`); none runs a kind directly. Each request takes the per-target
lock, plans, asks the guard with the store's facts, records the run and its steps,
and only then acts. Verification is not done here: the incident's probe runs again
through the normal pipeline, whose outcome comes back as `verified(run_id, passed)`;
a failed verification counts against the back-off and opens the breaker after
`breaker_after` in a row (the caller escalates the incident).

Everything stored passes through the redactor given here (every secret of the
config), so neither a plan nor an output can carry a password into the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from agent import store_remediations as sql
from agent.errors import RemediationRefused
from agent.incidents.models import Incident
from agent.probe_spec import ProbeSpec, RunContext
from agent.redaction import Redactor
from agent.store import Store
from remediations import planner_for, runner_for, undo
from remediations._base import ActionResult, Plan, RemediationSpec, Target
from remediations.guard import Approval, Decision, Guard, History, Request

_STATE = {
    "run": "running",
    "shadow": "shadow",
    "await_approval": "awaiting_approval",
    "refused": "refused",
}


def target_for(incident: Incident, probe: ProbeSpec | None, spec: RemediationSpec) -> Target:
    """The target of an incident for `spec`: what the lock, cooldown and breaker count on.

    A remediation that acts on the incident's evidence (a resync, a per-row statement)
    targets the incident's probe (and entity): two drifted tables are two targets. One
    that acts on a fixed thing (a unit, a URL, a command) targets that thing, so two
    incidents of two probes watching one service restart it once, not twice.
    """
    if spec.acts_on_evidence:
        key = incident.probe if incident.entity is None else f"{incident.probe}/{incident.entity}"
    else:
        key = spec.name
    return Target(key, incident.id, list(incident.evidence), probe)


@dataclass(frozen=True)
class Outcome:
    """What became of one request: the stored run, the guard's decision, the result if it ran."""

    run_id: int
    state: str
    decision: Decision
    plan: Plan
    result: ActionResult | None = None
    breaker_opened: bool = False


@dataclass
class Remediator:
    """The remediation flow over one store, guard and run context."""

    store: Store
    guard: Guard
    ctx: RunContext
    redactor: Redactor = field(default_factory=Redactor)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    async def request(self, spec: RemediationSpec, target: Target, *, actor: str) -> Outcome:
        """Plan, guard and (if allowed) run `spec` on `target`; every step recorded."""
        try:
            async with self.guard.lock(spec.name, target.key):
                try:
                    plan = await planner_for(spec.kind)(spec, target, self.ctx)
                except RemediationRefused as exc:
                    plan = Plan(spec.name, spec.kind, target.key, f"no plan: {exc}")
                    return await self._record(
                        spec, target, plan, actor, Decision.refuse("plan", str(exc))
                    )
                decision = self.guard.check(
                    Request(spec, plan, actor, self.clock()), await self._history(spec, target.key)
                )
                outcome = await self._record(spec, target, plan, actor, decision)
                if decision.allowed:
                    return await self._execute(spec, outcome, actor)
                return outcome
        except RemediationRefused as exc:  # the lock: someone runs it right now
            plan = Plan(spec.name, spec.kind, target.key, "not planned: already running")
            return await self._record(spec, target, plan, actor, Decision.refuse("lock", str(exc)))

    async def answer(
        self, spec: RemediationSpec, run_id: int, *, by: str, approved: bool
    ) -> Outcome:
        """A human's approval or rejection of a run awaiting approval."""
        row = await self.store.run(lambda c: sql.get_run(c, run_id))
        if row is None or row.state != "awaiting_approval":
            raise RemediationRefused(f"run {run_id} is not awaiting approval")
        plan = Plan.from_json(row.plan)
        now = self.clock()
        async with self.guard.lock(spec.name, row.target):
            request = Request(
                spec,
                plan,
                by,
                now,
                requested_at=row.created_at,
                approval=Approval(approved, by, now),
            )
            history = await self._history(spec, row.target)
            decision = self.guard.check(request, history)
            if not decision.allowed:
                state = "rejected" if decision.guard == "approval" else "refused"
                await self._set(run_id, state, state, by, decision.reason)
                return Outcome(run_id, state, decision, plan)
            await self._set(run_id, "running", "approved", by, decision.reason)
            return await self._execute(spec, Outcome(run_id, "running", decision, plan), by)

    async def undo(self, spec: RemediationSpec, run_id: int, *, actor: str) -> Outcome:
        """Plan the reverse of run `run_id` and send it through the same guard."""
        row = await self.store.run(lambda c: sql.get_run(c, run_id))
        if row is None or row.state != "succeeded" or row.undone_by is not None:
            raise RemediationRefused(
                f"run {run_id} cannot be undone (not a succeeded run, or undone)"
            )
        done = Plan.from_json(row.plan)
        applied = (row.result or {}).get("changes") or []
        if applied:  # what the run actually changed (sql captures it while running)
            done = Plan.from_json({**row.plan, "changes": applied})
        reverse = undo.reverse(done, run_id=run_id)
        decision = self.guard.check(
            Request(spec, reverse, actor, self.clock(), undo=True),
            await self._history(spec, row.target),
        )
        if decision.guard in ("cooldown", "attempts", "backoff"):  # an undo is not a new attempt
            decision = Decision(True, "undo: attempt limits do not apply", "mode", "run")
        target = Target(row.target, row.incident_id)
        async with self.guard.lock(spec.name, row.target):
            outcome = await self._record(spec, target, reverse, actor, decision, undo_of=run_id)
            if not decision.allowed:
                return outcome
            now = self.clock()
            try:
                async with asyncio.timeout(spec.timeout.total_seconds()):
                    result = await undo.run(
                        reverse,
                        self.ctx,
                        max_rows=spec.max_rows,
                        timeout=spec.timeout.total_seconds(),
                    )
            except TimeoutError:
                result = ActionResult(False, "timed out", error="timed out")
            state = "succeeded" if result.ok else "failed"
            await self._set(outcome.run_id, state, "executed", actor, result.detail, result=result)
            if result.ok:
                await self.store.run(
                    lambda c: sql.mark_undone(c, run_id, outcome.run_id), write=True
                )
                await self._step(run_id, "undone", actor, f"undone by run {outcome.run_id}", now)
            return Outcome(outcome.run_id, state, decision, reverse, result)

    async def verified(self, spec: RemediationSpec, run_id: int, *, passed: bool) -> bool:
        """Record the re-probe's verdict; True when this opened the breaker (escalate)."""
        if passed:
            await self._set(
                run_id, "succeeded", "verified", "pipeline", "the probe passes again", verified=True
            )
            return False
        await self._set(
            run_id,
            "ineffective",
            "ineffective",
            "pipeline",
            "the probe still fails",
            verified=False,
        )
        row = await self.store.run(lambda c: sql.get_run(c, run_id))
        assert row is not None
        history = await self._history(spec, row.target)
        if history.failures_in_a_row >= spec.breaker_after:
            reason = f"circuit opened after {history.failures_in_a_row} failed attempts; escalated"
            await self._step(run_id, "breaker_opened", "guard", reason, self.clock())
            return True
        return False

    async def reset_breaker(self, spec: RemediationSpec, run_id: int, *, by: str) -> None:
        """A human closes the breaker of the run's target."""
        await self._step(run_id, "breaker_reset", by, "breaker reset", self.clock())

    async def note(self, run_id: int, step: str, actor: str, detail: str) -> None:
        """Add an audit step to a run (e.g. a refused button press)."""
        await self._step(run_id, step, actor, detail, self.clock())

    async def interrupted(self) -> list[int]:
        """At start-up: mark runs a crash left `running` as interrupted; their ids (escalate them)."""
        rows = await self.store.run(
            lambda c: sql.interrupt_running(c, self.clock(), redactor=self.redactor), write=True
        )
        return [r.id for r in rows]

    async def wait_before(self, spec: RemediationSpec, target: str) -> float:
        """Seconds until cooldown and back-off let `spec` run on `target` again (0: now).

        Automation sleeps this long before its next attempt instead of asking early and
        filling the audit with refusals.
        """
        history, now = await self._history(spec, target), self.clock()
        waits = [0.0]
        if history.last_run_at is not None:
            waits.append((history.last_run_at + spec.cooldown - now).total_seconds())
        if history.failures_in_a_row and history.last_failure_at is not None:
            backoff = spec.backoff * (2 ** (history.failures_in_a_row - 1))
            waits.append((history.last_failure_at + backoff - now).total_seconds())
        return max(waits)

    async def dry_run(self, spec: RemediationSpec, target: Target, *, actor: str) -> Outcome:
        """The plan and the guard's decision for `spec` on `target`, recording and running nothing."""
        try:
            plan = await planner_for(spec.kind)(spec, target, self.ctx)
        except RemediationRefused as exc:
            plan = Plan(spec.name, spec.kind, target.key, f"no plan: {exc}")
            return Outcome(0, "refused", Decision.refuse("plan", str(exc)), plan)
        decision = self.guard.check(
            Request(spec, plan, actor, self.clock()), await self._history(spec, target.key)
        )
        return Outcome(0, _STATE[decision.outcome], decision, plan)

    # -- internals ------------------------------------------------------------------------

    async def _history(self, spec: RemediationSpec, target: str) -> History:
        now = self.clock()
        found = await self.store.run(
            lambda c: sql.facts(c, spec.name, target, now, spec.max_attempts.window)
        )
        breaker = found.failures_in_a_row >= spec.breaker_after
        return History(
            last_run_at=found.last_run_at,
            attempts=found.attempts,
            failures_in_a_row=found.failures_in_a_row,
            last_failure_at=found.last_failure_at,
            breaker_open=breaker,
            running=found.running,
            runs_last_hour=found.runs_last_hour,
        )

    async def _record(
        self,
        spec: RemediationSpec,
        target: Target,
        plan: Plan,
        actor: str,
        decision: Decision,
        *,
        undo_of: int | None = None,
    ) -> Outcome:
        state = _STATE[decision.outcome]
        now = self.clock()
        run_id = await self.store.run(
            lambda c: sql.create_run(
                c,
                remediation=spec.name,
                kind=spec.kind,
                target=target.key,
                incident_id=target.incident_id,
                actor=actor,
                state=state,
                reason=decision.reason,
                guard=None if decision.allowed else decision.guard,
                plan=plan.to_json(),
                now=now,
                redactor=self.redactor,
                undo_of=undo_of,
            ),
            write=True,
        )
        return Outcome(run_id, state, decision, plan)

    async def _execute(self, spec: RemediationSpec, outcome: Outcome, actor: str) -> Outcome:
        try:
            async with asyncio.timeout(spec.timeout.total_seconds()):
                result = await runner_for(spec.kind)(spec, outcome.plan, self.ctx)
        except TimeoutError:
            result = ActionResult(False, f"timed out after {spec.timeout}", error="timed out")
        except Exception as exc:  # a bug in a kind: a failed run, never a crash of the flow
            reason = self.redactor.redact(f"{type(exc).__name__}: {exc}")
            result = ActionResult(False, reason, error=reason)
        state = "succeeded" if result.ok else "failed"
        await self._set(outcome.run_id, state, "executed", actor, result.detail, result=result)
        return Outcome(outcome.run_id, state, outcome.decision, outcome.plan, result)

    async def _set(
        self,
        run_id: int,
        state: str,
        step: str,
        actor: str,
        reason: str,
        *,
        result: ActionResult | None = None,
        verified: bool | None = None,
    ) -> None:
        now = self.clock()
        data = asdict(result) if result is not None else None
        await self.store.run(
            lambda c: sql.set_state(
                c, run_id, state, now=now, step=step, actor=actor, reason=reason,
                redactor=self.redactor, result=data, verified=verified,
            ),
            write=True,
        )  # fmt: skip

    async def _step(self, run_id: int, step: str, actor: str, detail: str, now: datetime) -> None:
        await self.store.run(
            lambda c: sql.add_step(c, run_id, step, actor, detail, now, redactor=self.redactor),
            write=True,
        )
