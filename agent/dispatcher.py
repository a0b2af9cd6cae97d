"""Fires every probe on its own fixed-rate schedule, with jitter, bounded concurrency.

The dispatcher keeps its own heap of next runs, `(when, seq, slot, state)` tuples, and
one event-loop timer armed for the earliest. Measured cheaper per run than an
APScheduler job (see BENCHMARKS.md), and cheaper than one asyncio timer per probe: the
loop's heap compares its `TimerHandle`s in Python (~13 comparisons per push or pop at
5,000 probes), these tuples compare in C, and every other timer of the loop (each
run's timeouts) no longer shares a heap with thousands of probe timers. APScheduler
still runs the cron-like jobs (retention, compaction).

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
- Runs fire on a tick of `FIRE_TICK_S`: each run starts at most one tick after its
  slot (the delay shows in its lag), and the runs due within one tick share one
  wake-up of the loop. Measured with 500 probes every 1s: waking once per run cost
  ~30-40 % of a run's CPU (each wake-up of an idle loop is an epoll_wait return, a
  context switch and cold caches); see BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
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
# Runs are fired on this tick of the loop clock (see the module docstring).
FIRE_TICK_S = 0.01

Execute = Callable[[ProbeSpec, datetime], Awaitable[None]]


class Slot:
    """A probe's next run in the dispatcher's heap; reads like an `asyncio.TimerHandle`."""

    __slots__ = ("_cancelled", "_when")

    def __init__(self, when: float) -> None:
        self._when = when
        self._cancelled = False

    def when(self) -> float:
        """The loop time the run is due at."""
        return self._when

    def cancel(self) -> None:
        """Do not run (the heap entry is dropped when it comes up)."""
        self._cancelled = True

    def cancelled(self) -> bool:
        """Whether `cancel()` was called."""
        return self._cancelled


@dataclass
class ProbeSchedule:
    """Scheduling state and counters of one probe."""

    spec: ProbeSpec
    next_base: float = 0.0  # loop time of the next un-jittered slot
    handle: Slot | None = None
    every_s: float = 0.0  # spec.every and spec.effective_jitter in seconds
    jitter_s: float = 0.0
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
        self._heap: list[tuple[float, int, Slot, ProbeSchedule]] = []
        self._seq = itertools.count()  # ties in `when` never compare slots
        self._timer: asyncio.TimerHandle | None = None  # armed for the heap's earliest
        self._timer_at = math.inf

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
            state.every_s = spec.every.total_seconds()
            state.jitter_s = spec.effective_jitter.total_seconds()
            self._arm(state)
        self._wake_at_earliest(loop)

    def first_offset(self, spec: ProbeSpec) -> float:
        """Seconds from now to a new probe's first (un-jittered) slot.

        Uniform over `min(every, FIRST_RUN_SPREAD_S)`, so that probes sharing an interval
        are spread over it rather than firing together every period; 0 with `jitter: 0s`.
        """
        if not spec.effective_jitter:
            return 0.0
        return self._rng.uniform(0, min(spec.every.total_seconds(), FIRST_RUN_SPREAD_S))

    def _arm(self, state: ProbeSchedule) -> None:
        """Put the probe's next run (its next slot plus a fresh jitter) on the heap."""
        due = state.next_base + self._rng.uniform(0, state.jitter_s)
        slot = state.handle = Slot(due)
        heapq.heappush(self._heap, (due, next(self._seq), slot, state))

    def _wake_at_earliest(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the loop timer for the earliest run on the heap, unless it already is."""
        heap = self._heap
        while heap and heap[0][2].cancelled():
            heapq.heappop(heap)
        when = math.inf
        if heap and not self._stopping:
            when = math.ceil(heap[0][0] / FIRE_TICK_S) * FIRE_TICK_S  # the tick at or after it
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when != math.inf:
            self._timer = loop.call_at(when, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fire every run that is due, then sleep until the next one."""
        self._timer, self._timer_at = None, math.inf
        heap, now = self._heap, loop.time()
        while heap and heap[0][0] <= now and not self._stopping:
            due, _, slot, state = heapq.heappop(heap)
            if not slot.cancelled():
                self._fire(state, due, loop)
        self._wake_at_earliest(loop)

    def _fire(self, state: ProbeSchedule, due: float, loop: asyncio.AbstractEventLoop) -> None:
        if self._probes.get(state.spec.name) is not state:
            return
        now = loop.time()
        every = state.every_s
        state.next_base += every
        if state.next_base <= now:
            # Fell behind by a whole interval or more: the slots already past are
            # counted as missed and skipped; this run stands in for them (coalesce).
            behind = int((now - state.next_base) // every) + 1
            state.missed += behind
            state.next_base += behind * every
            log.warning("probe %s missed %d runs (scheduler behind)", state.spec.name, behind)
        self._arm(state)

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        self._heap.clear()
        pending = set(self._tasks)
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
        return len(still)
