"""Fires every probe on its own fixed-rate schedule, with jitter, bounded concurrency.

One asyncio timer per probe (the event loop's own heap does the ordering): measured
cheaper per run than an APScheduler job (see BENCHMARKS.md), which matters at
thousands of probes. APScheduler still runs the cron-like jobs (retention, compaction).

Rules, stated once:
- A probe is due at `start + k * every`, plus a fresh random jitter each run, so the
  schedule never drifts. `start` is spread at random over the first interval (at most
  `FIRST_RUN_SPREAD_S`), so 5,000 probes every 10s run ~500 a second rather than in
  one burst per period; a probe with `jitter: 0s` starts at once and stays on its grid.
  A reload keeps the phase of a changed probe whose `every` did not change.
- A run that is still in flight when the next one is due is not doubled: the new run
  is skipped and counted as an overlap (the in-flight one is cut by its timeout anyway).
- If the loop falls a whole interval or more behind (machine suspended, loop blocked),
  the runs that were missed are counted and skipped; one run fires now (coalesce).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.probe_spec import ProbeSpec
from agent.results import utcnow

log = logging.getLogger(__name__)

# First runs are spread over `min(every, FIRST_RUN_SPREAD_S)`: an interval of an hour
# should not hide a new probe's first result for up to an hour.
FIRST_RUN_SPREAD_S = 60.0

Execute = Callable[[ProbeSpec, datetime], Awaitable[None]]


@dataclass
class ProbeSchedule:
    """Scheduling state and counters of one probe."""

    spec: ProbeSpec
    next_base: float = 0.0  # loop time of the next un-jittered slot
    handle: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None
    runs: int = 0
    missed: int = 0
    overlaps: int = 0
    last_lag_ms: float = 0.0


@dataclass
class DispatcherStats:
    """Totals across probes."""

    runs: int = 0
    missed: int = 0
    overlaps: int = 0
    in_flight: int = 0
    lag_ms: list[float] = field(default_factory=list)


class Dispatcher:
    """Schedules probe runs; `execute(spec, scheduled_at)` does the work of one run."""

    def __init__(
        self, execute: Execute, *, max_in_flight: int = 2000, rng: random.Random | None = None
    ) -> None:
        self._execute = execute
        self._slots = asyncio.Semaphore(max_in_flight)
        self._rng = rng or random.Random()
        self._probes: dict[str, ProbeSchedule] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._lag_window: list[float] = []

    @property
    def schedules(self) -> dict[str, ProbeSchedule]:
        """Per-probe schedule state, by probe name."""
        return self._probes

    def set_probes(self, specs: list[ProbeSpec]) -> None:
        """Start scheduling `specs`; probes no longer listed stop, changed ones are rescheduled.

        Counters of a probe that stays are kept, so a reload does not reset them.
        """
        loop = asyncio.get_running_loop()
        wanted = {s.name: s for s in specs}
        for name in list(self._probes):
            if name not in wanted:
                gone = self._probes.pop(name)
                if gone.handle:
                    gone.handle.cancel()
        for name, spec in wanted.items():
            existing = self._probes.get(name)
            if existing is not None and existing.spec == spec:
                continue
            if existing is None:
                state = self._probes[name] = ProbeSchedule(spec)
                state.next_base = loop.time() + self.first_offset(spec)
            else:
                state = existing
                if state.handle:
                    state.handle.cancel()
                if spec.every != state.spec.every:
                    state.next_base = loop.time() + self.first_offset(spec)
                # else: same interval, keep the phase (no burst, no postponed run)
            state.spec = spec
            self._arm(state, loop)

    def first_offset(self, spec: ProbeSpec) -> float:
        """Seconds from now to a new probe's first (un-jittered) slot.

        Uniform over `min(every, FIRST_RUN_SPREAD_S)`, so that probes sharing an interval
        are spread over it rather than firing together every period; 0 with `jitter: 0s`.
        """
        if not spec.effective_jitter:
            return 0.0
        return self._rng.uniform(0, min(spec.every.total_seconds(), FIRST_RUN_SPREAD_S))

    def _arm(self, state: ProbeSchedule, loop: asyncio.AbstractEventLoop) -> None:
        jitter = self._rng.uniform(0, state.spec.effective_jitter.total_seconds())
        due = state.next_base + jitter
        state.handle = loop.call_at(due, self._fire, state, due)

    def _fire(self, state: ProbeSchedule, due: float) -> None:
        if self._stopping or self._probes.get(state.spec.name) is not state:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        every = state.spec.every.total_seconds()
        state.next_base += every
        if state.next_base <= now:
            # Fell behind by a whole interval or more: the slots already past are
            # counted as missed and skipped; this run stands in for them (coalesce).
            behind = int((now - state.next_base) // every) + 1
            state.missed += behind
            state.next_base += behind * every
            log.warning("probe %s missed %d runs (scheduler behind)", state.spec.name, behind)
        self._arm(state, loop)

        if state.task is not None and not state.task.done():
            state.overlaps += 1
            return
        task = asyncio.create_task(self._run(state, due, loop), name=f"probe:{state.spec.name}")
        state.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, state: ProbeSchedule, due: float, loop: asyncio.AbstractEventLoop) -> None:
        async with self._slots:
            late = loop.time() - due  # seconds since the slot, waiting for a free slot included
            scheduled_at = utcnow() - timedelta(seconds=late)
            lag = late * 1000
            state.last_lag_ms = lag
            self._lag_window.append(lag)
            if len(self._lag_window) > 10_000:
                del self._lag_window[:5_000]
            state.runs += 1
            try:
                await self._execute(state.spec, scheduled_at)
            except Exception:  # execute() is the agent's own code; log and keep scheduling
                log.exception("handling a result of probe %s failed", state.spec.name)

    def stats(self) -> DispatcherStats:
        """Totals and the recent scheduling lags (ms)."""
        return DispatcherStats(
            runs=sum(s.runs for s in self._probes.values()),
            missed=sum(s.missed for s in self._probes.values()),
            overlaps=sum(s.overlaps for s in self._probes.values()),
            in_flight=len(self._tasks),
            lag_ms=list(self._lag_window),
        )

    async def stop(self, grace: float) -> int:
        """Stop firing, wait up to `grace` seconds for runs in flight, cancel the rest.

        Returns how many runs had to be cancelled.
        """
        self._stopping = True
        for state in self._probes.values():
            if state.handle:
                state.handle.cancel()
        pending = set(self._tasks)
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
        return len(still)
