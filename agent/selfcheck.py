"""The agent watching itself: the `opsagent-self` probe and the heartbeat (dead man's switch).

Both ask the same question over their own window of time: did the probes run on time?
A window is healthy when no run was missed, runs started within `self_check_max_lag`
of their slot (p99), every probe due in the window ran, and the store is writing.

- The self-check records a result for the synthetic probe `opsagent-self` (kind `self`)
  through the normal pipeline, so it is stored, shown and alerted on like any probe.
- The heartbeat pings `heartbeat_url` only after a healthy window, so an outside service
  (healthchecks.io, a cron monitor) notices a stuck or dead agent by the silence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.results import ProbeResult, Status, utcnow
from agent.store import StoreStats

if TYPE_CHECKING:
    from agent.daemon import Agent
    from agent.dispatcher import Dispatcher

log = logging.getLogger(__name__)

SELF_PROBE = "opsagent-self"
SELF_KIND = "self"


@dataclass(frozen=True)
class Snapshot:
    """The dispatcher's counters at one moment."""

    at: float  # time.monotonic()
    runs: dict[str, int]
    missed: dict[str, int]
    every: dict[str, float]

    @classmethod
    def take(cls, dispatcher: Dispatcher) -> Snapshot:
        """The counters now."""
        schedules = dispatcher.schedules
        return cls(
            at=time.monotonic(),
            runs={n: s.runs for n, s in schedules.items()},
            missed={n: s.missed for n, s in schedules.items()},
            every={n: s.spec.every.total_seconds() for n, s in schedules.items()},
        )


@dataclass(frozen=True)
class Assessment:
    """The verdict on one window: problems (empty when healthy) and the numbers behind it."""

    problems: list[str]
    values: dict[str, float | int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def detail(self) -> str:
        """One line: the problems, or the numbers of a healthy window."""
        if self.problems:
            return "; ".join(self.problems)
        v = self.values
        return f"{v['runs']} runs on time in {v['window_s']:.0f}s, lag p99 {v['lag_p99_ms']:.0f} ms"


def assess(
    before: Snapshot,
    after: Snapshot,
    lags_ms: list[float],
    store: StoreStats,
    *,
    max_lag_s: float,
    api_problem: str | None = None,
) -> Assessment:
    """Judge the window between two snapshots. `lags_ms` is the dispatcher's recent lag list."""
    window = after.at - before.at
    runs = sum(max(0, n - before.runs.get(name, 0)) for name, n in after.runs.items())
    missed = sum(max(0, n - before.missed.get(name, 0)) for name, n in after.missed.items())
    recent = sorted(lags_ms[-runs:]) if runs else []
    p99 = recent[min(len(recent) - 1, int(0.99 * len(recent)))] if recent else 0.0
    problems: list[str] = []
    if missed:
        problems.append(f"{missed} scheduled runs missed (the scheduler fell behind)")
    if p99 > max_lag_s * 1000:
        problems.append(f"runs started late: lag p99 {p99 / 1000:.1f}s > {max_lag_s:g}s")
    silent = [
        name
        for name, every in after.every.items()
        # Only probes that existed for the whole window and were due at least twice in it.
        if name in before.runs and every * 2 <= window and after.runs[name] == before.runs[name]
    ]
    if silent:
        shown = ", ".join(sorted(silent)[:5]) + (" ..." if len(silent) > 5 else "")
        problems.append(f"{len(silent)} probes did not run in {window:.0f}s: {shown}")
    if not store.writer_alive:
        problems.append(f"the store's writer stopped: {store.last_error or 'unknown reason'}")
    elif store.retrying:
        problems.append(f"store writes are failing: {store.last_error}")
    if api_problem:
        problems.append(api_problem)
    values: dict[str, float | int] = {
        "window_s": round(window, 3),
        "runs": runs,
        "missed": missed,
        "lag_p99_ms": round(p99, 3),
        "lag_max_ms": round(recent[-1], 3) if recent else 0.0,
        "silent_probes": len(silent),
        "store_queue_depth": store.queue_depth,
    }
    return Assessment(problems, values)


class HealthWindow:
    """Assesses the time since its previous assessment (or since it was created)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._since = Snapshot.take(self._dispatcher())

    def _dispatcher(self) -> Dispatcher:
        assert self._agent.dispatcher is not None, "the agent is not running"
        return self._agent.dispatcher

    def assess(self) -> Assessment:
        """Judge the time since the last call, and start a new window."""
        dispatcher = self._dispatcher()
        now = Snapshot.take(dispatcher)
        assert self._agent.store is not None
        verdict = assess(
            self._since,
            now,
            dispatcher.stats().lag_ms,
            self._agent.store.stats(),
            max_lag_s=self._agent.config.agent.self_check_max_lag.total_seconds(),
            api_problem=self._agent.api_problem,
        )
        self._since = now
        return verdict


def self_result(verdict: Assessment) -> ProbeResult:
    """The `opsagent-self` result for a verdict: ok, or fail naming every problem."""
    return ProbeResult(
        probe=SELF_PROBE,
        kind=SELF_KIND,
        started_at=utcnow(),
        duration_ms=0.0,
        status=Status.OK if verdict.ok else Status.FAIL,
        values=dict(verdict.values),
        detail=verdict.detail,
        failed=list(verdict.problems),
    )


class Heartbeat:
    """Pings `heartbeat_url` after each healthy window; logs only when that changes."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._window = HealthWindow(agent)
        self._healthy = True  # as last logged
        self._delivered = True

    async def beat(self) -> bool:
        """Assess the window since the last beat; ping when healthy. True when pinged."""
        verdict = self._window.assess()
        if not verdict.ok:
            if self._healthy:
                log.warning("heartbeat withheld: %s", verdict.detail)
            self._healthy = False
            return False
        if not self._healthy:
            log.info("heartbeat resumed: %s", verdict.detail)
        self._healthy = True
        return await self._ping(verdict)

    async def _ping(self, verdict: Assessment) -> bool:
        agent = self._agent
        secret = agent.config.agent.heartbeat_url
        if secret is None or agent.ctx is None:
            return False
        method = agent.config.agent.heartbeat_method
        timeout = min(10.0, agent.config.agent.heartbeat_every.total_seconds() / 2)
        body = None
        if method == "POST":
            body = json.dumps({"agent": agent.config.agent.name, "ok": True, **verdict.values})
        try:
            # The probes' pooled aiohttp session; asyncio.timeout bounds the whole exchange.
            async with (
                asyncio.timeout(timeout),
                agent.ctx.http_session(verify=True).request(
                    method,
                    secret.get_secret_value(),
                    data=body,
                    headers={"Content-Type": "application/json"} if body else None,
                    allow_redirects=False,
                ) as response,
            ):
                await response.read()
            if response.status >= 400:
                raise RuntimeError(f"HTTP {response.status}")
        except Exception as exc:  # any failure to ping is logged, never raised into the scheduler
            if self._delivered:
                reason = agent.redactor.redact(f"{type(exc).__name__}: {exc}")
                log.warning("heartbeat ping failed: %s", reason)
            self._delivered = False
            return False
        if not self._delivered:
            log.info("heartbeat pings delivered again")
        self._delivered = True
        return True
