"""Remediations inside the running agent: incidents in, verified repairs (or escalations) out.

The flow itself (plan -> guard -> run -> audit) is `remediations.flow.Remediator`; this
module connects it to the agent:

- an incident opening on a probe with `remediation:` requests that remediation as
  `auto` (the guard decides whether it runs, waits for approval, or only plans);
- a run that succeeded is verified by re-running the incident's probe through the
  normal pipeline (stored, seen by every listener, judged by the incident engine); a
  pass resolves the incident as `auto-remediated`;
- an ineffective run is retried after the back-off the guard computes, until the
  attempt limit or the circuit breaker stops it; then the incident escalates, with the
  run's plan and output in the notice;
- at start-up, runs a crash left `running` are marked `interrupted` (never re-run) and
  their incidents escalate;
- people (API, CLI, Slack, TUI) ask through `remediate`, `approve`, `reject`, `undo`
  and `reset_breaker`, which go through the same flow and guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent import store_remediations as sql
from agent.config import Config, GuardSection
from agent.durations import format_duration
from agent.errors import RemediationRefused
from agent.incidents.engine import Outcome as IncidentOutcome
from agent.incidents.models import Incident
from agent.incidents.service import IncidentNotFound, IncidentService
from agent.probe_spec import ProbeSpec, RunContext
from agent.redaction import Redactor
from agent.results import ProbeResult
from agent.store import Store
from remediations._base import RemediationSpec, Target
from remediations.flow import Outcome, Remediator, target_for
from remediations.guard import Guard

log = logging.getLogger(__name__)

AUTO = "auto"
# Refusals after which automation stops for this incident and a human must look.
_ESCALATE_ON = frozenset(
    {"breaker", "attempts", "max_rows", "max_targets", "global_rate", "plan", "kill_switch"}
)
# Refusals that mean someone else is on it (another incident, a person): stop quietly.
_SOMEONE_ELSE = frozenset({"lock", "running"})
_OUTPUT_IN_NOTICE = 1500


class RemediationNotFound(LookupError):
    """No remediation, run, probe or incident with that name or id; `field` names which."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Verdict:
    """What a verification found: did the probe pass, and did that open the breaker."""

    passed: bool
    breaker_opened: bool
    result: ProbeResult | None


class RemediationService:
    """Requests, verifies, retries and escalates remediations for one running agent."""

    def __init__(
        self,
        store: Store,
        incidents: IncidentService,
        ctx: RunContext,
        config: Config,
        rerun: Callable[[str], Awaitable[ProbeResult | None]],
        latest: Callable[[str], ProbeResult | None],
        *,
        redactor: Redactor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.incidents = incidents
        self._rerun = rerun  # runs a probe now through the pipeline
        self.latest = latest  # a probe's last result, from memory
        self.remediator = Remediator(
            store, _guard(config.guard), ctx, redactor or Redactor.from_model(config), clock
        )
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    # -- life --------------------------------------------------------------------------

    async def start(self) -> list[int]:
        """Mark runs a crash left running as interrupted, escalate them, then listen."""
        interrupted = await self.remediator.interrupted()
        for run_id in interrupted:
            run = await self._store.run(functools.partial(sql.get_run, run_id=run_id))
            if run is None:
                continue
            log.error(
                "remediation run #%d (%s on %s) was interrupted by an agent stop; not re-run",
                run.id,
                run.remediation,
                run.target,
            )
            if run.incident_id is not None:
                await self._escalate(
                    run.incident_id,
                    f"remediation run #{run.id} ({run.remediation}) was interrupted by an agent "
                    "stop and is not re-run: check what it did",
                    run_id=run.id,
                )
        self.incidents.watchers.append(self._on_outcome)
        return interrupted

    def configure(self, config: Config, redactor: Redactor) -> None:
        """Apply a reloaded config: the guard's global limits and the secrets to mask."""
        self.config = config
        guard = self.remediator.guard
        guard.kill_switch = config.guard.kill_switch
        guard.mode = config.guard.mode
        guard.max_runs_per_hour = config.guard.max_runs_per_hour
        self.remediator.redactor = redactor

    async def stop(self, grace: float = 0.0) -> None:
        """Stop automation: waits between attempts end at once; runs in progress get up
        to `grace` seconds to finish (and be verified), then are cut. A run cut here is
        marked `interrupted` at the next start and its incident escalates."""
        self._stopping.set()
        if self._tasks and grace > 0:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def expire_approvals(self) -> list[int]:
        """Reject runs whose approval was not given in time; their ids."""
        waiting = await self._store.run(
            lambda c: sql.list_runs(c, state="awaiting_approval", limit=1000)
        )
        now = self.remediator.clock()
        expired: list[int] = []
        for run in waiting:
            spec = self.config.remediation(run.remediation)
            expiry = spec.approval_expiry if spec is not None else None
            if expiry is None or now - run.created_at >= expiry:
                reason = (
                    f"approval expired after {format_duration(expiry)} unanswered"
                    if expiry is not None
                    else f"{run.remediation} is no longer configured"
                )
                reject = functools.partial(
                    sql.set_state, run_id=run.id, state="rejected", now=now, step="rejected",
                    actor="guard", reason=reason, redactor=self.remediator.redactor,
                )  # fmt: skip
                await self._store.run(reject, write=True)
                expired.append(run.id)
        return expired

    # -- automation --------------------------------------------------------------------

    def _on_outcome(self, out: IncidentOutcome) -> None:
        for transition in out.transitions:
            if transition.event != "opened":
                continue
            incident = self.incidents.find(transition.incident_id)
            probe = self._probe(incident.probe) if incident is not None else None
            if incident is None or probe is None or probe.remediation is None:
                continue
            if incident.maintenance:
                log.info(
                    "incident #%d opened in a maintenance window: %s not requested",
                    incident.id,
                    probe.remediation,
                )
                continue
            task = asyncio.get_running_loop().create_task(
                self._automate(incident.id, probe.remediation)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _automate(self, incident_id: int, name: str) -> None:
        """Request, verify and retry `name` for one incident until fixed or handed to a human."""
        try:
            while True:
                incident = self.incidents.find(incident_id)
                spec = self.config.remediation(name)
                probe = self._probe(incident.probe) if incident is not None else None
                if incident is None or spec is None or probe is None:
                    return  # resolved meanwhile, or removed by a reload
                target = target_for(incident, probe, spec)
                wait = await self.remediator.wait_before(spec, target.key)
                if self._stopping.is_set():
                    return
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), wait)
                    continue  # look again: the incident may have resolved meanwhile
                outcome = await self.remediator.request(spec, target, actor=AUTO)
                if not await self._follow(spec, incident, outcome):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # automation must never take the agent down
            log.exception("remediation %s for incident #%d failed unexpectedly", name, incident_id)

    async def _follow(self, spec: RemediationSpec, incident: Incident, outcome: Outcome) -> bool:
        """Act on one outcome for an incident; True to try again (after the back-off)."""
        if outcome.state == "succeeded":
            verdict = await self.verify(spec, outcome.run_id, incident)
            if verdict.passed:
                return False
            if verdict.breaker_opened:
                await self._escalate_run(outcome.run_id, incident.id, "its circuit breaker opened")
                return False
            return True
        if outcome.state == "failed":
            failures = await self._failures_in_a_row(spec, outcome)
            if failures >= spec.breaker_after:
                await self.remediator.note(
                    outcome.run_id,
                    "breaker_opened",
                    "guard",
                    f"circuit opened after {failures} failed attempts; escalated",
                )
                await self._escalate_run(outcome.run_id, incident.id, "its circuit breaker opened")
                return False
            return True
        if outcome.state == "awaiting_approval":
            with contextlib.suppress(IncidentNotFound):  # resolved meanwhile
                await self.incidents.request_approval(
                    incident.id,
                    outcome.run_id,
                    reason=f"{spec.name}: {outcome.plan.summary} — approve with "
                    f"`opsagent approve {outcome.run_id}` (expires in "
                    f"{format_duration(spec.approval_expiry)})",
                )
            return False
        if outcome.state == "shadow":
            await self._note(
                incident.id,
                f"remediation run #{outcome.run_id} ({spec.name}) planned in shadow mode, not run: "
                f"{outcome.plan.summary}",
            )
            return False
        guard = outcome.decision.guard
        if guard in _SOMEONE_ELSE:
            return False
        if guard in _ESCALATE_ON:
            await self._escalate_run(
                outcome.run_id, incident.id, f"it was refused: {outcome.decision.reason}"
            )
        return False

    async def _failures_in_a_row(self, spec: RemediationSpec, outcome: Outcome) -> int:
        found = await self._store.run(
            lambda c: sql.facts(
                c, spec.name, outcome.plan.target, self.remediator.clock(), spec.max_attempts.window
            )
        )
        return found.failures_in_a_row

    async def verify(self, spec: RemediationSpec, run_id: int, incident: Incident) -> Verdict:
        """Re-run the incident's probe through the pipeline; record and act on the verdict."""
        await asyncio.sleep(spec.verify_after.total_seconds())
        engine = self.incidents.engine
        engine.verifying[incident.id] = f"remediation #{run_id}"
        try:
            result = await self._rerun(incident.probe)
        finally:
            engine.verifying.pop(incident.id, None)
        passed = result is not None and not engine.fails_for(incident, result)
        breaker = await self.remediator.verified(spec, run_id, passed=passed)
        if passed and self.incidents.find(incident.id) is not None:
            # The probe passes but the incident waits for more successes: the repair is proven.
            with contextlib.suppress(IncidentNotFound):  # resolved meanwhile
                await self.incidents.resolve(
                    incident.id, f"remediation #{run_id}", resolution="auto-remediated"
                )
        log.info(
            "remediation run #%d (%s) %s for incident #%d",
            run_id,
            spec.name,
            "verified: the probe passes" if passed else "ineffective: the probe still fails",
            incident.id,
        )
        return Verdict(passed, breaker, result)

    # -- people ------------------------------------------------------------------------

    async def remediate(
        self,
        name: str,
        *,
        actor: str,
        incident_id: int | None = None,
        probe: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Outcome, Verdict | None]:
        """A person asks for `name` (on an incident, or on a probe's latest result)."""
        spec = self._spec(name)
        incident: Incident | None = None
        if incident_id is not None:
            incident = self.incidents.find(incident_id)
            if incident is None:
                raise RemediationNotFound(f"no active incident #{incident_id}", field="incident")
            target = target_for(incident, self._probe(incident.probe), spec)
        else:
            target, incident = self._probe_target(spec, probe)
        if dry_run:
            return await self.remediator.dry_run(spec, target, actor=actor), None
        outcome = await self.remediator.request(spec, target, actor=actor)
        return outcome, await self._verify_if_ran(spec, outcome, incident)

    async def approve(self, run_id: int, *, by: str) -> tuple[Outcome, Verdict | None]:
        """Approve a run awaiting approval: it runs now (through the guard) and is verified."""
        run, spec = await self._run_and_spec(run_id)
        outcome = await self.remediator.answer(spec, run_id, by=by, approved=True)
        incident = self.incidents.find(run.incident_id) if run.incident_id is not None else None
        verdict = await self._verify_if_ran(spec, outcome, incident)
        if verdict is not None and not verdict.passed and verdict.breaker_opened and incident:
            await self._escalate_run(run_id, incident.id, "its circuit breaker opened")
        return outcome, verdict

    async def reject(self, run_id: int, *, by: str) -> Outcome:
        """Reject a run awaiting approval."""
        _, spec = await self._run_and_spec(run_id)
        return await self.remediator.answer(spec, run_id, by=by, approved=False)

    async def undo(self, run_id: int, *, by: str) -> Outcome:
        """Plan and run the reverse of a succeeded run, through the same guard."""
        _, spec = await self._run_and_spec(run_id)
        return await self.remediator.undo(spec, run_id, actor=by)

    async def reset_breaker(self, run_id: int, *, by: str) -> None:
        """Close the circuit breaker of the run's remediation on the run's target."""
        _, spec = await self._run_and_spec(run_id)
        await self.remediator.reset_breaker(spec, run_id, by=by)

    async def refuse_press(self, run_id: int, actor: str, why: str) -> None:
        """Audit a button press by someone who may not act (nothing else happens)."""
        log.warning("remediation run #%d: %s refused: %s", run_id, actor, why)
        run = await self._store.run(lambda c: sql.get_run(c, run_id))
        if run is None:
            return
        await self.remediator.note(run_id, "press_refused", actor, why)
        if run.incident_id is not None:
            await self._note(run.incident_id, f"run #{run_id}: {actor} refused: {why}")

    def spawn(self, work: Awaitable[object]) -> None:
        """Run `work` in the background (cancelled at stop; failures logged, never raised)."""

        async def guarded() -> None:
            try:
                await work
            except (RemediationNotFound, RemediationRefused) as exc:
                log.warning("remediation request refused: %s", exc)
            except Exception:
                log.exception("remediation request failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- internals ---------------------------------------------------------------------

    async def _verify_if_ran(
        self, spec: RemediationSpec, outcome: Outcome, incident: Incident | None
    ) -> Verdict | None:
        if outcome.state != "succeeded" or incident is None:
            return None
        return await self.verify(spec, outcome.run_id, incident)

    async def _run_and_spec(self, run_id: int) -> tuple[sql.RunRow, RemediationSpec]:
        run = await self._store.run(lambda c: sql.get_run(c, run_id))
        if run is None:
            raise RemediationNotFound(f"no remediation run #{run_id}", field="id")
        return run, self._spec(run.remediation)

    def _spec(self, name: str) -> RemediationSpec:
        spec = self.config.remediation(name)
        if spec is None:
            known = ", ".join(r.name for r in self.config.remediations) or "none configured"
            raise RemediationNotFound(
                f"no remediation named {name!r} (remediations: {known})", field="name"
            )
        return spec

    def _probe(self, name: str) -> ProbeSpec | None:
        return self.config.probe(name)

    def _probe_target(
        self, spec: RemediationSpec, probe_name: str | None
    ) -> tuple[Target, Incident | None]:
        """The target of a manual run without an incident id: a probe's open incident (if
        any) or its latest evidence; the remediation itself when no probe uses it."""
        if probe_name is None:
            users = [p.name for p in self.config.probes if p.remediation == spec.name]
            if len(users) > 1:
                raise RemediationRefused(
                    f"{spec.name} is used by probes {', '.join(users)}: say which with --probe"
                )
            probe_name = users[0] if users else None
        if probe_name is None:
            return Target(spec.name), None
        probe = self._probe(probe_name)
        if probe is None:
            raise RemediationNotFound(f"no probe named {probe_name!r}", field="probe")
        open_now = [
            i for i in self.incidents.engine.active.values()
            if i.probe == probe_name and i.entity is None and i.opened_at is not None
        ]  # fmt: skip
        if open_now:
            return target_for(open_now[0], probe, spec), open_now[0]
        last = self.latest(probe_name)
        evidence = list(last.evidence) if last is not None else []
        key = probe_name if spec.acts_on_evidence else spec.name
        return Target(key, None, evidence, probe), None

    async def _note(self, incident_id: int, reason: str) -> None:
        with contextlib.suppress(IncidentNotFound):  # resolved meanwhile: nothing to note on
            await self.incidents.note(incident_id, "remediation", "remediation", reason)

    async def _escalate_run(self, run_id: int, incident_id: int, why: str) -> None:
        run = await self._store.run(lambda c: sql.get_run(c, run_id))
        name = run.remediation if run is not None else "remediation"
        reason = f"remediation {name} did not fix it: {why} (run #{run_id})"
        comment = f"{reason}\n{_evidence_comment(run)}" if run is not None else reason
        await self._escalate(incident_id, reason, run_id=run_id, comment=comment)

    async def _escalate(
        self, incident_id: int, reason: str, *, run_id: int, comment: str | None = None
    ) -> None:
        try:
            await self.incidents.escalate(
                incident_id, "remediation", reason=reason, comment=comment or reason
            )
        except IncidentNotFound:
            log.info("incident #%d is no longer active: run #%d not escalated", incident_id, run_id)


def _guard(settings: GuardSection) -> Guard:
    return Guard(
        kill_switch=settings.kill_switch,
        mode=settings.mode,
        max_runs_per_hour=settings.max_runs_per_hour,
    )


def _evidence_comment(run: sql.RunRow) -> str:
    """Plan, output and outcome of a run, short enough for a notice (already redacted)."""
    plan = run.plan or {}
    result = run.result or {}
    lines = [f"run #{run.id} {run.remediation} ({run.kind}) on {run.target}: {run.state}"]
    if plan.get("summary"):
        lines.append(f"plan: {plan['summary']}")
    if result.get("detail"):
        lines.append(f"result: {result['detail']}")
    output = str(result.get("output") or "").strip()
    if output:
        lines.append("output:\n" + output[-_OUTPUT_IN_NOTICE:])
    return "\n".join(lines)
