"""The `/metrics` exposition: a prometheus_client collector over the agent's live state.

Loaded at the first scrape (see `AgentMetrics.render`), so an agent nobody scrapes never
imports prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from agent import __version__

if TYPE_CHECKING:
    from agent.daemon import Agent
    from agent.metrics import AgentMetrics

SEVERITIES = ("critical", "high", "warning", "info")
RUN_STATES = (
    "running", "succeeded", "failed", "ineffective", "refused", "shadow",
    "awaiting_approval", "rejected", "interrupted",
)  # fmt: skip


def build_registry(agent: Agent, metrics: AgentMetrics) -> CollectorRegistry:
    """A registry of the agent's own (not the global one): its collector and the process's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AgentCollector(agent, metrics))
    ProcessCollector(registry=registry)
    return registry


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
        yield from self._remediations()

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

    def _remediations(self) -> Iterator[Metric]:
        service = self._agent.remediations
        if service is not None:
            yield GaugeMetricFamily(
                "opsagent_remediation_kill_switch",
                "1 while the guard's kill switch stops every remediation.",
                value=int(service.remediator.guard.kill_switch),
            )
        counts = self._metrics.remediations
        if counts is None:
            return
        runs = GaugeMetricFamily(
            "opsagent_remediation_runs",
            "Remediation runs recorded, by their state now (kept in the store); "
            'state="awaiting_approval" is what waits for a person.',
            labels=["state"],
        )
        for state in RUN_STATES:
            runs.add_metric([state], counts.get(state, 0))
        yield runs
