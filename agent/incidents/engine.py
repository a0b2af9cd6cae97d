"""The incident state machine. Pure: no I/O, no clock of its own.

Inputs: probe results (`observe`), the clock (`tick`), and people (`acknowledge`,
`resolve`, silences). Outputs: an `Outcome` of changed incidents, transitions and
notice requests, which the caller writes to DuckDB (in one transaction) before any
notice is sent. Rules, in one place:

- A failing result starts a *pending* incident (no notice). It opens after `failures`
  consecutive failures, or, when `for_` is set, once it has failed for that long.
- It resolves after `successes` consecutive passes. A pending incident that passes
  `successes` times is *cleared*: it never opened and nobody was told.
- Flapping: `flap_threshold` result flips within `flap_window` mark the incident
  flapping; one FLAPPING notice goes out (it opens if still pending), and no further
  opened/resolved notice until no flip has happened for a whole window. Then it
  resolves if passing, or stays open if failing.
- Silences and maintenance windows suppress notices, never transitions. An incident
  whose opened notice was suppressed is announced when the suppression ends.
- Reminders repeat for open, unacknowledged incidents every `remind_every`, at most
  `max_reminders` times; escalation notifies `escalate_to` once after `escalate_after`.
- An acknowledgement may expire; the incident is then open again and a reminder goes out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.incidents.models import (
    Incident,
    IncidentState,
    NoticeRequest,
    Policy,
    Silence,
    Transition,
)
from agent.notices import NoticeEvent
from agent.results import ProbeResult

AGENT = "opsagent"
MaintenanceCheck = Callable[[Incident, datetime], bool]


@dataclass
class Outcome:
    """What one engine call changed; persist all of it before sending anything."""

    incidents: list[Incident] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    notices: list[NoticeRequest] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)  # silences that ended

    def touch(self, incident: Incident) -> None:
        """Record that `incident` changed (once)."""
        if all(i is not incident for i in self.incidents):
            self.incidents.append(incident)

    def extend(self, other: Outcome) -> None:
        """Merge another outcome into this one."""
        for incident in other.incidents:
            self.touch(incident)
        self.transitions += other.transitions
        self.notices += other.notices
        self.silences += other.silences


@dataclass
class _Tracker:
    """Streaks and flips of one fingerprint (memory only; rebuilt as results arrive)."""

    failures: int = 0
    successes: int = 0
    failing_since: datetime | None = None
    last_failed: bool | None = None
    flips: deque[datetime] = field(default_factory=deque)


class IncidentEngine:
    """Turns results into incident transitions and notice requests."""

    def __init__(
        self,
        policy_for: Callable[[str], Policy],
        next_id: Callable[[], int],
        *,
        in_maintenance: MaintenanceCheck | None = None,
    ) -> None:
        self._policy_for = policy_for
        self._next_id = next_id
        self._in_maintenance = in_maintenance or (lambda _i, _t: False)
        self.active: dict[str, Incident] = {}
        self.silences: dict[int, Silence] = {}
        self._trackers: dict[str, _Tracker] = {}
        # Incidents whose repair is being verified right now: a recovery seen meanwhile
        # resolves them as `auto-remediated` (the re-probe is a normal result).
        self.verifying: dict[int, str] = {}  # incident id -> who repaired it

    def reconfigure(
        self, policy_for: Callable[[str], Policy], in_maintenance: MaintenanceCheck | None
    ) -> None:
        """New policies after a reload; incidents and streaks are kept, nothing re-alerts."""
        self._policy_for = policy_for
        self._in_maintenance = in_maintenance or (lambda _i, _t: False)

    # -- state from the store ----------------------------------------------------------

    def load(self, incidents: Iterable[Incident], silences: Iterable[Silence] = ()) -> None:
        """Adopt the active incidents and silences found in the store at start or reload.

        Streaks restart from the stored incident: an open incident keeps counting
        towards resolution, so a restart neither re-opens nor re-alerts it.
        """
        for incident in incidents:
            if incident.active:
                self.active[incident.fingerprint] = incident
                self._trackers[incident.fingerprint] = _Tracker(
                    failures=1, failing_since=incident.pending_since, last_failed=True
                )
        for silence in silences:
            self.silences[silence.id] = silence

    # -- results -----------------------------------------------------------------------

    def observe(self, result: ProbeResult) -> Outcome:
        """Feed one probe result; returns what changed."""
        policy = self._policy_for(result.probe)
        out = Outcome()
        for fingerprint, entity, failed in self._signals(result, policy):
            self._signal(fingerprint, entity, failed, result, policy, out)
        return out

    def fails_for(self, incident: Incident, result: ProbeResult) -> bool:
        """Does `result` still count as a failure for `incident` (its probe, or its entity)?"""
        signals = self._signals(result, self._policy_for(result.probe))
        return any(fp == incident.fingerprint and failed for fp, _, failed in signals)

    def _signals(self, result: ProbeResult, policy: Policy) -> list[tuple[str, str | None, bool]]:
        """(fingerprint, entity, failed) for each thing this result speaks about."""
        if policy.incident_per is None:
            return [(result.probe, None, not result.ok)]
        key = policy.incident_per
        failing = (
            {str(row[key]) for row in result.evidence if row.get(key) is not None}
            if not result.ok
            else set()
        )
        signals: list[tuple[str, str | None, bool]] = [
            (f"{result.probe}/{e}", e, True) for e in sorted(failing)
        ]
        if not result.ok and not failing:
            signals.append((result.probe, None, True))  # failed without per-entity evidence
        known = {fp for fp, inc in self.active.items() if inc.probe == result.probe}
        known |= {
            fp for fp in self._trackers if fp.startswith(f"{result.probe}/") or fp == result.probe
        }
        reported = {fp for fp, _, _ in signals}
        for fp in sorted(known - reported):
            entity = fp.split("/", 1)[1] if "/" in fp else None
            signals.append((fp, entity, False))
        return signals

    def _signal(
        self,
        fingerprint: str,
        entity: str | None,
        failed: bool,
        result: ProbeResult,
        policy: Policy,
        out: Outcome,
    ) -> None:
        at = result.started_at
        # A fingerprint without a tracker was healthy (trackers are dropped only when
        # passing), so its first failure after a quiet spell is a flip like any other.
        tracker = self._trackers.setdefault(fingerprint, _Tracker(last_failed=False))
        if tracker.last_failed is not None and tracker.last_failed != failed:
            tracker.flips.append(at)
        tracker.last_failed = failed
        while tracker.flips and tracker.flips[0] <= at - policy.flap_window:
            tracker.flips.popleft()

        incident = self.active.get(fingerprint)
        if failed:
            tracker.failures += 1
            tracker.successes = 0
            tracker.failing_since = tracker.failing_since or at
            if incident is None:
                incident = self._new_incident(fingerprint, entity, result, policy, at)
                out.touch(incident)
                self._transition(out, incident, at, "pending", reason=_reason(result))
            incident.summary = _reason(result)
            incident.values = dict(result.values)
            if result.evidence:
                incident.evidence = [
                    r
                    for r in result.evidence
                    if entity is None or str(r.get(policy.incident_per or "")) == entity
                ][:50]
            out.touch(incident)
            if incident.state is IncidentState.PENDING and self._threshold_met(tracker, policy, at):
                self._open(incident, policy, at, out, reason=incident.summary)
        else:
            tracker.successes += 1
            tracker.failures = 0
            tracker.failing_since = None
            if (
                incident is not None
                and tracker.successes >= policy.successes
                and not incident.flapping
            ):
                self._resolve(incident, policy, at, out, resolution=_recovery(result), actor=AGENT)

        incident = self.active.get(fingerprint)
        if incident is None:
            if not tracker.failures and not tracker.flips:
                self._trackers.pop(fingerprint, None)
            return
        if not incident.flapping and len(tracker.flips) >= policy.flap_threshold:
            incident.flapping = True
            out.touch(incident)
            self._transition(
                out,
                incident,
                at,
                "flapping",
                reason=f"{len(tracker.flips)} changes within {_fmt(policy.flap_window)}",
            )
            if incident.state is IncidentState.PENDING:
                self._set_state(incident, IncidentState.OPEN, at, out, "opened", "flapping")
                incident.opened_at = at
            self._notify(incident, NoticeEvent.FLAPPING, policy.notify, at, out)
        elif incident.flapping and not tracker.flips:
            incident.flapping = False
            out.touch(incident)
            self._transition(
                out, incident, at, "stable", reason=f"no change for {_fmt(policy.flap_window)}"
            )
            if not failed and tracker.successes >= policy.successes:
                self._resolve(incident, policy, at, out, resolution="recovered", actor=AGENT)

    def _threshold_met(self, tracker: _Tracker, policy: Policy, at: datetime) -> bool:
        if policy.for_ is not None:
            return tracker.failing_since is not None and at - tracker.failing_since >= policy.for_
        return tracker.failures >= policy.failures

    def _new_incident(
        self,
        fingerprint: str,
        entity: str | None,
        result: ProbeResult,
        policy: Policy,
        at: datetime,
    ) -> Incident:
        title = (
            f"{result.probe} failing" if entity is None else f"{result.probe} failing for {entity}"
        )
        incident = Incident(
            id=self._next_id(),
            fingerprint=fingerprint,
            probe=result.probe,
            entity=entity,
            severity=policy.severity,
            state=IncidentState.PENDING,
            title=title,
            summary=_reason(result),
            pending_since=at,
            labels=dict(policy.labels),
        )
        self.active[fingerprint] = incident
        return incident

    # -- transitions -------------------------------------------------------------------

    def _open(
        self, incident: Incident, policy: Policy, at: datetime, out: Outcome, *, reason: str
    ) -> None:
        incident.opened_at = at
        incident.maintenance = self._in_maintenance(incident, at)
        self._set_state(incident, IncidentState.OPEN, at, out, "opened", reason)
        if not incident.flapping:
            self._notify(incident, NoticeEvent.OPENED, policy.notify, at, out)

    def _resolve(
        self,
        incident: Incident,
        policy: Policy,
        at: datetime,
        out: Outcome,
        *,
        resolution: str,
        actor: str,
    ) -> None:
        was_pending = incident.state is IncidentState.PENDING
        if not was_pending and incident.id in self.verifying and actor == AGENT:
            resolution, actor = "auto-remediated", self.verifying[incident.id]
        incident.resolved_at = at
        incident.resolution = "cleared" if was_pending else resolution
        self._set_state(
            incident,
            IncidentState.RESOLVED,
            at,
            out,
            "cleared" if was_pending else "resolved",
            incident.resolution,
            actor=actor,
        )
        self.active.pop(incident.fingerprint, None)
        if incident.notified:
            self._notify(incident, NoticeEvent.RESOLVED, policy.notify, at, out, actor=actor)
        for silence in list(self.silences.values()):
            if (
                silence.end_on_resolve
                and silence.active_at(at)
                and self._silence_covers(silence, incident)
            ):
                ended = Silence(**{**silence.__dict__, "ended_at": at})
                self.silences[silence.id] = ended
                out.silences.append(ended)

    def _set_state(
        self,
        incident: Incident,
        state: IncidentState,
        at: datetime,
        out: Outcome,
        event: str,
        reason: str,
        *,
        actor: str = AGENT,
    ) -> None:
        before = incident.state
        incident.state = state
        out.touch(incident)
        self._transition(
            out,
            incident,
            at,
            event,
            reason=reason,
            actor=actor,
            before=before.value,
            after=state.value,
        )

    def _transition(
        self,
        out: Outcome,
        incident: Incident,
        at: datetime,
        event: str,
        *,
        reason: str,
        actor: str = AGENT,
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        out.transitions.append(Transition(incident.id, at, event, actor, reason, before, after))

    def _notify(
        self,
        incident: Incident,
        event: NoticeEvent,
        targets: tuple[str, ...],
        at: datetime,
        out: Outcome,
        *,
        actor: str | None = None,
        comment: str | None = None,
        approval_run: int | None = None,
    ) -> None:
        """Request a notice, unless silenced or in maintenance (recorded as a transition)."""
        suppressed = self.suppressed_by(incident, at)
        if suppressed is not None and event is not NoticeEvent.ACKNOWLEDGED:
            self._transition(
                out,
                incident,
                at,
                "suppressed",
                reason=f"{event.value} notice suppressed: {suppressed}",
            )
            return
        if event in (NoticeEvent.OPENED, NoticeEvent.FLAPPING):
            incident.notified = True
        if not incident.notified and event is not NoticeEvent.ESCALATED:
            return  # never tell anyone an update about an incident they never heard of
        incident.last_notified_at = at
        out.touch(incident)
        if targets:
            out.notices.append(
                NoticeRequest(incident.id, event, targets, at, actor, comment, approval_run)
            )

    def suppressed_by(self, incident: Incident, at: datetime) -> str | None:
        """Why notices for `incident` are suppressed now (None when they are not)."""
        for silence in self.silences.values():
            if silence.active_at(at) and self._silence_covers(silence, incident):
                return f"silence #{silence.id} ({silence.reason})"
        if self._in_maintenance(incident, at):
            return "maintenance window"
        return None

    def _silence_covers(self, silence: Silence, incident: Incident) -> bool:
        return silence.matcher.matches(incident.probe, incident.labels, incident.severity)

    # -- the clock ---------------------------------------------------------------------

    def tick(self, now: datetime) -> Outcome:
        """Time-driven changes: ack expiry, late announcements, reminders, escalation."""
        out = Outcome()
        for incident in list(self.active.values()):
            policy = self._policy_for(incident.probe)
            if (
                incident.state is IncidentState.ACKNOWLEDGED
                and incident.ack_expires_at is not None
                and incident.ack_expires_at <= now
            ):
                incident.acknowledged_by = incident.acknowledged_at = incident.ack_expires_at = None
                self._set_state(
                    incident, IncidentState.OPEN, now, out, "ack_expired", "acknowledgement expired"
                )
                incident.reminders_sent = 0
                self._notify(
                    incident,
                    NoticeEvent.REMINDER,
                    policy.notify,
                    now,
                    out,
                    comment="acknowledgement expired",
                )
                continue
            if incident.state is not IncidentState.OPEN:
                continue
            if (
                not incident.notified
                and not incident.flapping
                and self.suppressed_by(incident, now) is None
            ):
                self._transition(out, incident, now, "announced", reason="suppression ended")
                self._notify(incident, NoticeEvent.OPENED, policy.notify, now, out)
                continue
            if (
                policy.escalate_after is not None
                and incident.escalated_at is None
                and incident.opened_at is not None
                and now - incident.opened_at >= policy.escalate_after
                and policy.escalate_to
                and self.suppressed_by(incident, now) is None
            ):
                incident.escalated_at = now
                self._transition(
                    out,
                    incident,
                    now,
                    "escalated",
                    reason=f"unacknowledged for {_fmt(policy.escalate_after)}",
                )
                self._notify(incident, NoticeEvent.ESCALATED, policy.escalate_to, now, out)
            if (
                incident.notified
                and not incident.flapping
                and policy.remind_every is not None
                and incident.reminders_sent < policy.max_reminders
                and incident.last_notified_at is not None
                and now - incident.last_notified_at >= policy.remind_every
            ) and self.suppressed_by(incident, now) is None:
                incident.reminders_sent += 1
                self._transition(
                    out,
                    incident,
                    now,
                    "reminder",
                    reason=f"reminder {incident.reminders_sent} of {policy.max_reminders}",
                )
                self._notify(incident, NoticeEvent.REMINDER, policy.notify, now, out)
        for silence in list(self.silences.values()):
            if silence.ended_at is None and silence.ends_at <= now:
                ended = Silence(**{**silence.__dict__, "ended_at": silence.ends_at})
                self.silences[silence.id] = ended
                out.silences.append(ended)
        return out

    # -- people ------------------------------------------------------------------------

    def acknowledge(
        self,
        incident_id: int,
        actor: str,
        now: datetime,
        *,
        comment: str | None = None,
        expires_after: timedelta | None = None,
    ) -> Outcome:
        """Acknowledge an open incident: reminders and escalation stop.

        Raises KeyError for an unknown or resolved incident, ValueError for a pending one.
        """
        incident = self._find(incident_id)
        if incident.state is IncidentState.PENDING:
            raise ValueError(f"incident {incident_id} is still pending (not opened yet)")
        out = Outcome()
        incident.acknowledged_by = actor
        incident.acknowledged_at = now
        incident.ack_comment = comment
        incident.ack_expires_at = now + expires_after if expires_after else None
        self._set_state(
            incident,
            IncidentState.ACKNOWLEDGED,
            now,
            out,
            "acknowledged",
            comment or "",
            actor=actor,
        )
        policy = self._policy_for(incident.probe)
        self._notify(
            incident,
            NoticeEvent.ACKNOWLEDGED,
            policy.notify,
            now,
            out,
            actor=actor,
            comment=comment,
        )
        return out

    def resolve(
        self, incident_id: int, actor: str, now: datetime, *, resolution: str = "manual"
    ) -> Outcome:
        """Resolve an incident by hand (or after a verified repair: `auto-remediated`)."""
        incident = self._find(incident_id)
        out = Outcome()
        self._resolve(
            incident, self._policy_for(incident.probe), now, out, resolution=resolution, actor=actor
        )
        self._trackers.pop(incident.fingerprint, None)
        return out

    def escalate(
        self,
        incident_id: int,
        actor: str,
        now: datetime,
        *,
        reason: str,
        comment: str | None = None,
    ) -> Outcome:
        """Escalate an active incident now (e.g. a repair failed): `escalate_to`, else `notify`.

        KeyError when no active incident has this id.
        """
        incident = self._find(incident_id)
        policy = self._policy_for(incident.probe)
        out = Outcome()
        incident.escalated_at = now
        out.touch(incident)
        self._transition(out, incident, now, "escalated", reason=reason, actor=actor)
        targets = policy.escalate_to or policy.notify
        self._notify(
            incident, NoticeEvent.ESCALATED, targets, now, out, actor=actor, comment=comment
        )
        return out

    def request_approval(
        self, incident_id: int, run_id: int, now: datetime, *, reason: str
    ) -> Outcome:
        """A remediation run for the incident awaits approval: tell its `notify` targets.

        KeyError when no active incident has this id.
        """
        incident = self._find(incident_id)
        policy = self._policy_for(incident.probe)
        out = Outcome()
        out.touch(incident)
        self._transition(out, incident, now, "approval_requested", reason=reason)
        self._notify(
            incident, NoticeEvent.APPROVAL, policy.notify, now, out, comment=reason,
            approval_run=run_id,
        )  # fmt: skip
        return out

    def add_silence(self, silence: Silence, now: datetime) -> Outcome:
        """Start a silence; the incidents it covers get a `silenced` transition and notice."""
        self.silences[silence.id] = silence
        out = Outcome()
        if not silence.active_at(now):
            return out
        for incident in self.active.values():
            if incident.state is not IncidentState.PENDING and self._silence_covers(
                silence, incident
            ):
                self._transition(
                    out,
                    incident,
                    now,
                    "silenced",
                    reason=f"silence #{silence.id}: {silence.reason}",
                    actor=silence.created_by,
                )
                if incident.notified:
                    # The one message people see changes to "silenced"; nothing pages.
                    incident.last_notified_at = now
                    out.touch(incident)
                    policy = self._policy_for(incident.probe)
                    if policy.notify:
                        out.notices.append(
                            NoticeRequest(
                                incident.id,
                                NoticeEvent.SILENCED,
                                policy.notify,
                                now,
                                silence.created_by,
                                silence.reason,
                            )
                        )
        return out

    def end_silence(self, silence_id: int, now: datetime) -> Silence:
        """End a silence now; returns it. KeyError when unknown."""
        silence = self.silences[silence_id]
        ended = Silence(**{**silence.__dict__, "ended_at": silence.ended_at or now})
        self.silences[silence_id] = ended
        return ended

    def _find(self, incident_id: int) -> Incident:
        for incident in self.active.values():
            if incident.id == incident_id:
                return incident
        raise KeyError(incident_id)


def _reason(result: ProbeResult) -> str:
    return result.error or "; ".join(result.failed) or result.detail or "failed"


def _recovery(result: ProbeResult) -> str:
    return "recovered"


def _fmt(delta: timedelta) -> str:
    from agent.durations import format_duration

    return format_duration(delta)
