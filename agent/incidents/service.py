"""Incidents inside the running agent: the engine, its store, and the outbox, together.

Each call runs the pure engine, writes what changed (incidents, events, notices) to
DuckDB in one transaction, and only then wakes the outbox: nobody is told about a
state change the store does not hold.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from agent import store_incidents as sql
from agent.incidents.engine import IncidentEngine, MaintenanceCheck, Outcome
from agent.incidents.models import Incident, Matcher, Policy, Silence, Transition
from agent.notices import Notice
from agent.results import ProbeResult, utcnow
from agent.store import Store

log = logging.getLogger(__name__)


class IncidentNotFound(LookupError):
    """No incident (or no active one) with that id."""


class IncidentService:
    """Feeds results to the engine and persists every outcome before notifying."""

    def __init__(
        self,
        store: Store,
        policy_for: Callable[[str], Policy],
        *,
        agent_name: str,
        on_notices: Callable[[], None] = lambda: None,
        in_maintenance: MaintenanceCheck | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._agent_name = agent_name
        self._on_notices = on_notices
        self._clock = clock
        self._incident_ids = itertools.count(1)
        self._silence_ids = itertools.count(1)
        self._notice_ids = itertools.count(1)
        # Told of every persisted outcome (after the store holds it): remediations start here.
        self.watchers: list[Callable[[Outcome], None]] = []
        self.engine = IncidentEngine(
            policy_for, lambda: next(self._incident_ids), in_maintenance=in_maintenance
        )

    async def start(self) -> None:
        """Adopt the active incidents and silences in the store (restart, reload)."""
        incident_id, silence_id, notice_id = await self._store.run(sql.next_ids)
        self._incident_ids = itertools.count(incident_id)
        self._silence_ids = itertools.count(silence_id)
        self._notice_ids = itertools.count(notice_id)
        active = await self._store.run(sql.active)
        silences = await self._store.run(lambda con: sql.silences(con))
        self.engine.load(active, [s for s in silences if s.ended_at is None])
        if active:
            log.info("incidents: %d active incidents carried over", len(active))

    def next_notice_id(self) -> int:
        """A fresh outbox id for a notice written elsewhere (a report's email)."""
        return next(self._notice_ids)

    def set_policy(
        self, policy_for: Callable[[str], Policy], in_maintenance: MaintenanceCheck | None
    ) -> None:
        """Apply a reloaded config without forgetting any incident."""
        self.engine.reconfigure(policy_for, in_maintenance)

    async def observe(self, result: ProbeResult) -> Outcome:
        """One probe result through the engine; persisted before it returns."""
        out = self.engine.observe(result)
        await self._persist(out)
        return out

    async def tick(self) -> Outcome:
        """Time-based rules (reminders, escalation, expiries, late announcements)."""
        out = self.engine.tick(self._clock())
        await self._persist(out)
        return out

    async def acknowledge(
        self,
        incident_id: int,
        actor: str,
        *,
        comment: str | None = None,
        expires_after: timedelta | None = None,
    ) -> Incident:
        """Acknowledge an open incident. IncidentNotFound / ValueError for bad requests."""
        try:
            out = self.engine.acknowledge(
                incident_id, actor, self._clock(), comment=comment, expires_after=expires_after
            )
        except KeyError:
            raise await self._not_found(incident_id) from None
        await self._persist(out)
        return out.incidents[0]

    async def resolve(
        self, incident_id: int, actor: str, *, resolution: str = "manual"
    ) -> Incident:
        """Resolve an active incident by hand or after a verified repair."""
        try:
            out = self.engine.resolve(incident_id, actor, self._clock(), resolution=resolution)
        except KeyError:
            raise await self._not_found(incident_id) from None
        await self._persist(out)
        return out.incidents[0]

    async def escalate(
        self, incident_id: int, actor: str, *, reason: str, comment: str | None = None
    ) -> Incident:
        """Escalate an active incident now (a failed repair); IncidentNotFound otherwise."""
        try:
            out = self.engine.escalate(
                incident_id, actor, self._clock(), reason=reason, comment=comment
            )
        except KeyError:
            raise await self._not_found(incident_id) from None
        await self._persist(out)
        return out.incidents[0]

    async def request_approval(self, incident_id: int, run_id: int, *, reason: str) -> None:
        """Tell the incident's notify targets that run `run_id` awaits approval."""
        try:
            out = self.engine.request_approval(incident_id, run_id, self._clock(), reason=reason)
        except KeyError:
            raise await self._not_found(incident_id) from None
        await self._persist(out)

    async def note(self, incident_id: int, event: str, actor: str, reason: str) -> None:
        """Add a line to an active incident's timeline (no notice); IncidentNotFound otherwise."""
        incident = self.find(incident_id)
        if incident is None:
            raise await self._not_found(incident_id)
        out = Outcome(transitions=[Transition(incident_id, self._clock(), event, actor, reason)])
        await self._persist(out)

    def find(self, incident_id: int) -> Incident | None:
        """The active incident with this id, if any."""
        return next((i for i in self.engine.active.values() if i.id == incident_id), None)

    async def silence(
        self,
        matcher: Matcher,
        duration: timedelta,
        *,
        reason: str,
        created_by: str,
        end_on_resolve: bool = False,
    ) -> Silence:
        """Start a silence now; stored before it takes effect."""
        now = self._clock()
        silence = Silence(
            next(self._silence_ids),
            matcher,
            now,
            now + duration,
            reason,
            created_by,
            end_on_resolve,
        )
        await self._store.run(lambda con: sql.save_silence(con, silence), write=True)
        await self._persist(self.engine.add_silence(silence, now))
        return silence

    async def unsilence(self, silence_id: int) -> Silence:
        """End a silence now. IncidentNotFound-like LookupError when unknown."""
        try:
            ended = self.engine.end_silence(silence_id, self._clock())
        except KeyError:
            raise LookupError(f"no silence #{silence_id}") from None
        await self._store.run(lambda con: sql.save_silence(con, ended), write=True)
        return ended

    async def _not_found(self, incident_id: int) -> Exception:
        stored = await self._store.run(lambda con: sql.get(con, incident_id))
        if stored is None:
            return IncidentNotFound(f"no incident #{incident_id}")
        return IncidentNotFound(f"incident #{incident_id} is {stored.state.value}")

    async def _persist(self, out: Outcome) -> None:
        for silence in out.silences:  # ended by their incident resolving, or by time
            await self._store.run(functools.partial(sql.save_silence, silence=silence), write=True)
        if not (out.incidents or out.transitions or out.notices):
            return
        now = self._clock()
        by_id = {i.id: i for i in out.incidents} | {i.id: i for i in self.engine.active.values()}
        notices: list[Notice] = []
        for request in out.notices:
            incident = by_id.get(request.incident_id)
            if incident is None:
                continue
            snapshot = incident.snapshot(
                silenced=self.engine.suppressed_by(incident, now) is not None
            )
            for target in request.targets:
                notices.append(
                    Notice(
                        id=next(self._notice_ids),
                        event=request.event,
                        target=target,
                        agent_name=self._agent_name,
                        incident=snapshot,
                        created_at=request.at,
                        actor=request.actor,
                        comment=request.comment,
                        approval_run=request.approval_run,
                    )
                )
        await self._store.run(
            lambda con: sql.save(con, out.incidents, out.transitions, notices, now), write=True
        )
        for t in out.transitions:
            if t.event in ("opened", "resolved", "acknowledged", "flapping", "stable", "escalated"):
                log.info("incident #%d %s (%s): %s", t.incident_id, t.event, t.actor, t.reason)
        if notices:
            self._on_notices()
        for watcher in self.watchers:
            watcher(out)
