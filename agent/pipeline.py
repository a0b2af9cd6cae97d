"""The spine: every probe result goes through `Pipeline.handle`, in one direction.

store → status → listeners → incidents (persisted, then the outbox is woken). Later
stages (remediate) are added here as further steps, each returning a value, none
calling the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.incidents.service import IncidentService
from agent.results import ProbeResult, Status
from agent.store import Store

log = logging.getLogger(__name__)

Listener = Callable[[ProbeResult], None]


@dataclass
class ProbeState:
    """What the agent remembers of a probe between runs (rebuilt from the store at start)."""

    last: ProbeResult | None = None
    consecutive_failures: int = 0


class Pipeline:
    """Stores each result first, then updates state and tells listeners."""

    def __init__(self, store: Store, incidents: IncidentService | None = None) -> None:
        self.store = store
        self.incidents = incidents
        self.states: dict[str, ProbeState] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(result)` for every result, after it is queued to the store."""
        self._listeners.append(listener)

    async def handle(self, result: ProbeResult) -> ProbeState:
        """Run one result through the spine; returns the probe's new state."""
        self.store.append(result)  # first: nothing is told before it is stored
        state = self.observe(result)
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:  # a broken listener must not break the spine
                log.exception("result listener %r failed", listener)
        if self.incidents is not None:
            try:
                await self.incidents.observe(result)
            except Exception:  # the store failing must not stop probing; it is logged
                log.exception("incident handling of %s failed", result.probe)
        return state

    def observe(self, result: ProbeResult) -> ProbeState:
        """Update the probe's state; log one line on a state change, none on steady state."""
        state = self.states.setdefault(result.probe, ProbeState())
        previous = state.last.status if state.last else None
        state.consecutive_failures = 0 if result.ok else state.consecutive_failures + 1
        state.last = result
        if previous is not None and (previous is Status.OK) != result.ok:
            if result.ok:
                log.info("probe %s recovered: %s", result.probe, result.detail)
            else:
                reason = result.error or "; ".join(result.failed) or result.detail
                log.warning("probe %s failing: %s", result.probe, reason)
        return state
