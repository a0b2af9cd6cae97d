"""Prometheus metrics of the running agent, in a registry of its own.

A custom collector reads the agent's current state when scraped, so nothing is updated
per result except the scheduler-lag histogram and each probe's last success time (two
cheap operations a listener does). Names follow Prometheus conventions: base units
(`_seconds`), `_total` for counters, an `opsagent_` prefix.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from agent.results import ProbeResult

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from agent.api.models import OutboxTotals
    from agent.daemon import Agent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """A cumulative histogram without locks: observed on the event loop, read at scrape."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, as the exposition format wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class AgentMetrics:
    """The registry behind `/metrics`, and the pipeline listener feeding it."""

    def __init__(self, agent: Agent) -> None:
        self.lag = Histogram(LAG_BUCKETS)
        self.last_success: dict[str, datetime] = {}
        self.outbox: OutboxTotals | None = None  # read from the store just before a scrape
        self.remediations: dict[str, int] | None = None  # runs by state, read likewise
        self._agent = agent
        self._registry: CollectorRegistry | None = None  # built at the first scrape

    def __call__(self, result: ProbeResult) -> None:
        """The pipeline listener: lag of scheduled runs, time of each probe's last success."""
        if result.scheduled_at is not None:
            self.lag.observe(max(0.0, (result.started_at - result.scheduled_at).total_seconds()))
        if result.ok:
            self.last_success[result.probe] = result.started_at

    def render(
        self, outbox: OutboxTotals | None = None, remediations: dict[str, int] | None = None
    ) -> bytes:
        """The exposition text; `outbox` and `remediations` hold the counts read from the
        store for this scrape."""
        # prometheus_client (~1 MB) is loaded at the first scrape: not every agent is scraped.
        from prometheus_client import generate_latest

        from agent.metrics_export import build_registry

        self.outbox, self.remediations = outbox, remediations
        if self._registry is None:
            self._registry = build_registry(self._agent, self)
        return generate_latest(self._registry)
