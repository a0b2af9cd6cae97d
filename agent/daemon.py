"""The long-running agent: owns the store, schedules probes, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.config import Config
from agent.dispatcher import Dispatcher
from agent.pipeline import Listener, Pipeline
from agent.probe_spec import ProbeSpec, RunContext
from agent.redaction import Redactor
from agent.results import ProbeResult, utcnow
from agent.runner import run_probe
from agent.store import ProbeCounters, Store
from probes import prepare as prepare_probes

log = logging.getLogger(__name__)

# Cron-like housekeeping jobs: a run may start up to this late and still run once.
JOB_MISFIRE_GRACE_S = 300
JOB_TIMEOUT_S = 600.0
COUNTERS_EVERY_S = 5


class Agent:
    """One agent process: `await Agent(config).run(stop)` until `stop` is set or SIGTERM."""

    def __init__(self, config: Config, *, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.redactor = Redactor.from_model(config)
        self._listeners: list[Listener] = []
        self.pipeline: Pipeline | None = None
        self.dispatcher: Dispatcher | None = None
        self.started_at: datetime | None = None

    def subscribe(self, listener: Callable[[ProbeResult], None]) -> None:
        """Call `listener(result)` for every result once it is queued to the store."""
        self._listeners.append(listener)
        if self.pipeline is not None:
            self.pipeline.subscribe(listener)

    async def run(self, stop: asyncio.Event | None = None, *, install_signals: bool = True) -> int:
        """Run until `stop` is set (or SIGTERM/SIGINT when `install_signals`); returns 0."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        store = Store.open(self.config.agent.store_path)
        await store.start()
        pipeline = self.pipeline = Pipeline(store)
        for listener in self._listeners:
            pipeline.subscribe(listener)
        ctx = RunContext(base_dir=self._base_dir(), sources=dict(self.config.sources))

        async def execute(spec: ProbeSpec, scheduled_at: datetime) -> None:
            result = await run_probe(spec, ctx, redactor=self.redactor, scheduled_at=scheduled_at)
            pipeline.handle(result)

        dispatcher = self.dispatcher = Dispatcher(
            execute, max_in_flight=self.config.agent.max_in_flight
        )
        scheduler = AsyncIOScheduler(event_loop=loop)
        self._add_housekeeping(scheduler, store)
        scheduler.add_job(
            self._save_counters,
            "interval",
            args=[store],
            seconds=COUNTERS_EVERY_S,
            id="probe-counters",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=COUNTERS_EVERY_S,
        )
        handled: list[signal.Signals] = []
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig, stop)
                handled.append(sig)
        try:
            scheduler.start()
            self.started_at = utcnow()
            prepare_probes(self.config.probes, ctx)
            dispatcher.set_probes(list(self.config.probes))
            log.info(
                "agent %s started: %d probes, store %s",
                self.config.agent.name,
                len(self.config.probes),
                self.config.agent.store_path,
            )
            await stop.wait()
        finally:
            log.info(
                "agent stopping: waiting up to %s for probes in flight",
                self.config.agent.shutdown_grace,
            )
            scheduler.shutdown(wait=False)
            cut = await dispatcher.stop(self.config.agent.shutdown_grace.total_seconds())
            if cut:
                log.warning("cut %d probe runs still in flight at shutdown", cut)
            await self._save_counters(store)
            await store.close()
            await ctx.aclose()
            for sig in handled:
                loop.remove_signal_handler(sig)
            log.info("agent stopped; store flushed")
        return 0

    async def _save_counters(self, store: Store) -> None:
        """Persist the dispatcher's per-probe counters so `status` can show them."""
        if self.dispatcher is None or self.started_at is None:
            return
        now = utcnow()
        counters = [
            ProbeCounters(name, s.runs, s.missed, s.overlaps, self.started_at, now)
            for name, s in self.dispatcher.schedules.items()
        ]
        try:
            async with asyncio.timeout(JOB_TIMEOUT_S):
                await store.save_probe_counters(counters)
        except Exception:
            log.exception("saving probe counters failed")

    def _on_signal(self, sig: signal.Signals, stop: asyncio.Event) -> None:
        log.info("received %s", sig.name)
        stop.set()

    def _base_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    def _add_housekeeping(self, scheduler: AsyncIOScheduler, store: Store) -> None:
        retention = self.config.agent.retention

        async def prune() -> None:
            async with asyncio.timeout(JOB_TIMEOUT_S):
                deleted = await store.prune(retention)
            if deleted:
                log.info("retention: deleted %d results older than %s", deleted, retention)

        async def compact() -> None:
            async with asyncio.timeout(JOB_TIMEOUT_S):
                await store.compact()

        common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": JOB_MISFIRE_GRACE_S}
        scheduler.add_job(prune, "interval", hours=1, id="retention", **common)
        scheduler.add_job(
            compact,
            "interval",
            seconds=self.config.agent.compact_every.total_seconds(),
            id="compaction",
            **common,
        )
