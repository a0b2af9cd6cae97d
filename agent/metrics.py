"""Prometheus metrics of the running agent, in a registry of its own.

A custom collector reads the agent's current state when scraped, so nothing is updated
per result except the scheduler-lag histogram and each probe's last success time (two
cheap operations a listener does). Names follow Prometheus conventions: base units
(`_seconds`), `_total` for counters, an `opsagent_` prefix.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from agent import __version__
from agent.results import ProbeResult

if TYPE_CHECKING:
    from agent.api.models import OutboxTotals
    from agent.daemon import Agent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEVERITIES = ("critical", "high", "warning", "info")
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
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_AgentCollector(agent, self))
        ProcessCollector(registry=self.registry)

    def __call__(self, result: ProbeResult) -> None:
        """The pipeline listener: lag of scheduled runs, time of each probe's last success."""
        if result.scheduled_at is not None:
            self.lag.observe(max(0.0, (result.started_at - result.scheduled_at).total_seconds()))
        if result.ok:
            self.last_success[result.probe] = result.started_at

    def render(self, outbox: OutboxTotals | None = None) -> bytes:
        """The exposition text; `outbox` holds the notification counts read for this scrape."""
        self.outbox = outbox
        return generate_latest(self.registry)


class _AgentCollector(Collector):
    def __init__(self, agent: Agent, metrics: AgentMetrics) -> None:
        self._agent = agent
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._agent_info()
        yield from self._probes()
        yield from self._scheduler()
        yield from self._store()
        yield from self._incidents()

    def _agent_info(self) -> Iterator[Metric]:
        agent = self._agent
        info = GaugeMetricFamily(
            "opsagent_info", "The agent's name and version.", labels=["name", "version"]
        )
        info.add_metric([agent.config.agent.name, __version__], 1)
        yield info
        if agent.started_at is not None:
            yield GaugeMetricFamily(
                "opsagent_start_time_seconds",
                "When the agent process started (Unix time).",
                value=agent.started_at.timestamp(),
            )
        yield CounterMetricFamily(
            "opsagent_config_reloads_total", "Config reloads applied.", value=agent.reloads
        )
        yield CounterMetricFamily(
            "opsagent_config_reload_failures_total",
            "Config reloads refused because the new file was invalid.",
            value=agent.reload_failures,
        )
        yield GaugeMetricFamily(
            "opsagent_events_subscribers",
            "Clients connected to the server-sent events stream.",
            value=agent.events.subscribers,
        )

    def _probes(self) -> Iterator[Metric]:
        agent = self._agent
        labels = ["probe", "kind"]
        up = GaugeMetricFamily(
            "opsagent_probe_up", "1 if the last run passed, else 0.", labels=labels
        )
        latency = GaugeMetricFamily(
            "opsagent_probe_latency_seconds", "Latency the last run measured.", labels=labels
        )
        duration = GaugeMetricFamily(
            "opsagent_probe_duration_seconds", "How long the last run took.", labels=labels
        )
        failures = GaugeMetricFamily(
            "opsagent_probe_consecutive_failures", "Failed runs since the last pass.", labels=labels
        )
        success = GaugeMetricFamily(
            "opsagent_probe_last_success_timestamp_seconds",
            "When the last passing run started (Unix time).",
            labels=labels,
        )
        runs = CounterMetricFamily(
            "opsagent_probe_runs_total", "Scheduled runs since the agent started.", labels=labels
        )
        missed = CounterMetricFamily(
            "opsagent_probe_missed_runs_total",
            "Runs skipped because the scheduler fell a whole interval behind.",
            labels=labels,
        )
        overlaps = CounterMetricFamily(
            "opsagent_probe_overlapping_runs_total",
            "Runs skipped because the previous run was still in flight.",
            labels=labels,
        )
        states = agent.pipeline.states if agent.pipeline else {}
        schedules = agent.dispatcher.schedules if agent.dispatcher else {}
        for name, kind in agent.probe_kinds():
            values = [name, kind]
            state = states.get(name)
            last = state.last if state else None
            if last is not None and state is not None:
                up.add_metric(values, 1 if last.ok else 0)
                duration.add_metric(values, last.duration_ms / 1000)
                failures.add_metric(values, state.consecutive_failures)
                if last.latency_ms is not None:
                    latency.add_metric(values, last.latency_ms / 1000)
            ok_at = self._metrics.last_success.get(name)
            if ok_at is not None:
                success.add_metric(values, ok_at.timestamp())
            schedule = schedules.get(name)
            if schedule is not None:
                runs.add_metric(values, schedule.runs)
                missed.add_metric(values, schedule.missed)
                overlaps.add_metric(values, schedule.overlaps)
        yield from (up, latency, duration, failures, success, runs, missed, overlaps)

    def _scheduler(self) -> Iterator[Metric]:
        lag = self._metrics.lag
        yield HistogramMetricFamily(
            "opsagent_scheduler_lag_seconds",
            "How late scheduled probe runs started against their slot.",
            buckets=lag.buckets(),
            sum_value=lag.total,
        )
        if self._agent.dispatcher is not None:
            yield GaugeMetricFamily(
                "opsagent_scheduler_in_flight",
                "Probe runs in flight now.",
                value=self._agent.dispatcher.stats().in_flight,
            )

    def _store(self) -> Iterator[Metric]:
        store = self._agent.store
        if store is None:
            return
        s = store.stats()
        yield GaugeMetricFamily(
            "opsagent_store_writer_up",
            "1 while the store's writer runs.",
            value=int(s.writer_alive),
        )
        yield GaugeMetricFamily(
            "opsagent_store_write_seconds",
            "How long the last batch write (append and flush) took.",
            value=s.last_flush_ms / 1000,
        )
        for stat, value in (
            ("p50", s.flush_p50_ms),
            ("p99", s.flush_p99_ms),
            ("max", s.max_flush_ms),
        ):
            yield GaugeMetricFamily(
                f"opsagent_store_write_{stat}_seconds",
                f"The {stat} batch write time over the last 1024 writes"
                if stat != "max"
                else "The longest batch write since start.",
                value=value / 1000,
            )
        yield GaugeMetricFamily(
            "opsagent_store_batch_size",
            "Results in the last batch written.",
            value=s.last_batch_size,
        )
        yield CounterMetricFamily(
            "opsagent_store_writes_total", "Batches written since start.", value=s.batches
        )
        yield CounterMetricFamily(
            "opsagent_store_rows_written_total",
            "Results written since start.",
            value=s.rows_written,
        )
        yield CounterMetricFamily(
            "opsagent_store_rows_rejected_total",
            "Results DuckDB refused (logged, not stored).",
            value=s.rows_rejected,
        )
        yield CounterMetricFamily(
            "opsagent_store_failed_writes_total",
            "Write attempts that failed and were retried.",
            value=s.failed_flushes,
        )
        yield GaugeMetricFamily(
            "opsagent_store_queue_depth",
            "Results appended but not yet on disk.",
            value=s.queue_depth,
        )

    def _incidents(self) -> Iterator[Metric]:
        service = self._agent.incidents
        if service is not None:
            open_ = GaugeMetricFamily(
                "opsagent_incidents_open",
                "Incidents open or acknowledged now (not pending, not resolved).",
                labels=["severity"],
            )
            counts = dict.fromkeys(SEVERITIES, 0)
            for incident in service.engine.active.values():
                if incident.state.value in ("open", "acknowledged"):
                    counts[incident.severity] = counts.get(incident.severity, 0) + 1
            for severity, count in counts.items():
                open_.add_metric([severity], count)
            yield open_
        outbox = self._metrics.outbox
        if outbox is None:
            return
        yield GaugeMetricFamily(
            "opsagent_notifications_pending",
            "Notifications waiting to be sent, being sent or retrying.",
            value=outbox.pending,
        )
        yield CounterMetricFamily(
            "opsagent_notifications_dead",
            "Notifications that failed for good (permanent error or too many attempts).",
            value=outbox.dead,
        )
        yield CounterMetricFamily(
            "opsagent_notifications_sent",
            "Notifications delivered (kept in the store: survives restarts).",
            value=outbox.sent,
        )
