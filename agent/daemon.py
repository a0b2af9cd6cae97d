"""The long-running agent: owns the store, schedules probes, serves the control API.

Signals: SIGTERM/SIGINT stop it cleanly (probes in flight finish within the grace, the
store is flushed); SIGHUP reloads the config file. Under systemd (`Type=notify`) it
reports READY/RELOADING/STOPPING and pings the watchdog only while the scheduler's
timers fire and the store's writer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.api.app import build_app
from agent.api.auth import ADDR_FILE, ensure_token
from agent.api.events import EventHub
from agent.api.routes import ROUTES
from agent.api.server import ApiServer
from agent.config import Config
from agent.config_loader import load_config
from agent.dispatcher import Dispatcher
from agent.errors import ConfigError, StoreError
from agent.incidents.models import Incident, Matcher, Policy
from agent.incidents.service import IncidentService
from agent.incidents.settings import policy_for
from agent.metrics import AgentMetrics
from agent.notifiers.targets import Targets
from agent.outbox import Outbox
from agent.pipeline import Listener, Pipeline, ProbeState
from agent.probe_spec import ProbeSpec, RunContext
from agent.redaction import Redactor
from agent.reload import ReloadPlan, ReloadUnavailable, plan_reload
from agent.remediation_service import RemediationService
from agent.report_jobs import ReportJobs
from agent.results import ProbeResult, utcnow
from agent.runner import run_probe
from agent.selfcheck import SELF_KIND, SELF_PROBE, HealthWindow, Heartbeat, self_result
from agent.store import LatestResult, ProbeCounters, Store
from agent.systemd import Notifier
from probes import prepare as prepare_probes

log = logging.getLogger(__name__)

# Cron-like housekeeping jobs: a run may start up to this late and still run once.
JOB_MISFIRE_GRACE_S = 300
JOB_TIMEOUT_S = 600.0
COUNTERS_EVERY_S = 5
APPROVALS_EVERY_S = 10.0  # how often runs awaiting approval are checked for expiry
RESTORE_TIMEOUT_S = 60.0
# A probe timer this far past due means the loop no longer fires timers.
TIMER_OVERDUE_S = 5.0


class Agent:
    """One agent process: `await Agent(config).run(stop)` until `stop` is set or SIGTERM."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.redactor = Redactor.from_model(config)
        self.notifier = notifier  # None: read NOTIFY_SOCKET/WATCHDOG_USEC when run
        self._listeners: list[Listener] = []
        # Probe specs by name for the config in force, rebuilt when a reload replaces it.
        self._probes_by_name: tuple[Config | None, dict[str, ProbeSpec]] = (None, {})
        self.events = EventHub()
        self.metrics = AgentMetrics(self)
        self.pipeline: Pipeline | None = None
        self.incidents: IncidentService | None = None
        self.remediations: RemediationService | None = None
        self.outbox: Outbox | None = None
        self.targets: Targets | None = None
        self.dispatcher: Dispatcher | None = None
        self.store: Store | None = None
        self.ctx: RunContext | None = None
        self.started_at: datetime | None = None
        self.reloads = 0
        self.reload_failures = 0
        # Results recorded per probe, kept in memory so /v1/status never scans the store.
        self.stored_counts: dict[str, int] = {}
        self.api_url: str | None = None
        self.api_problem: str | None = None  # why the API is not listening, if it is not
        self._api: ApiServer | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._job_seconds: dict[str, float] = {}
        self._self_window: HealthWindow | None = None
        self._heartbeat: Heartbeat | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.reports = ReportJobs(self)

    def subscribe(self, listener: Callable[[ProbeResult], None]) -> None:
        """Call `listener(result)` for every result once it is queued to the store."""
        self._listeners.append(listener)
        if self.pipeline is not None:
            self.pipeline.subscribe(listener)

    # -- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None, *, install_signals: bool = True) -> int:
        """Run until `stop` is set (or SIGTERM/SIGINT when `install_signals`); returns 0.

        With `install_signals`, SIGHUP reloads the config file.
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        notifier = self.notifier = self.notifier or Notifier.from_env()
        store = self.store = Store.open(self.config.agent.store_path)
        await store.start()
        targets = self.targets = Targets(self.config.notify, agent_name=self.config.agent.name)
        outbox = self.outbox = Outbox(store, targets.deliver)
        incidents = self.incidents = IncidentService(
            store,
            self._policy,
            agent_name=self.config.agent.name,
            on_notices=outbox.wake,
            in_maintenance=self._in_maintenance,
        )
        await incidents.start()
        await outbox.start()
        pipeline = self.pipeline = Pipeline(store, incidents)
        await self._restore_state(pipeline, store)
        listeners: list[Listener] = [self._count, self.events, self.metrics, *self._listeners]
        for listener in listeners:
            pipeline.subscribe(listener)
        ctx = self.ctx = RunContext(base_dir=self._base_dir(), sources=dict(self.config.sources))
        remediations = self.remediations = RemediationService(
            store,
            incidents,
            ctx,
            self.config,
            self.run_now,
            self._latest,
            redactor=self.redactor,
        )
        await remediations.start()
        dispatcher = self.dispatcher = Dispatcher(
            self._execute, max_in_flight=self.config.agent.max_in_flight
        )
        scheduler = self._scheduler = AsyncIOScheduler(event_loop=loop)
        handled: list[signal.Signals] = []
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig, stop)
                handled.append(sig)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            handled.append(signal.SIGHUP)
        try:
            scheduler.start()
            self.started_at = utcnow()
            prepare_probes(self.config.probes, ctx)
            dispatcher.set_probes(list(self.config.probes))
            self._self_window = HealthWindow(self)
            self._sync_jobs()
            await self._start_api()
            log.info(
                "agent %s started: %d probes, store %s, API %s",
                self.config.agent.name,
                len(self.config.probes),
                self.config.agent.store_path,
                self.api_url or "not listening",
            )
            notifier.ready(self._status_line())
            interval = notifier.watchdog_interval
            if interval is not None:
                self._spawn(self._watchdog(interval))
            await stop.wait()
        finally:
            notifier.stopping()
            log.info(
                "agent stopping: waiting up to %s for probes in flight",
                self.config.agent.shutdown_grace,
            )
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self._stop_api()
            scheduler.shutdown(wait=False)
            await remediations.stop(self.config.agent.shutdown_grace.total_seconds())
            cut = await dispatcher.stop(self.config.agent.shutdown_grace.total_seconds())
            if cut:
                log.warning("cut %d probe runs still in flight at shutdown", cut)
            await self._save_counters(store)
            await outbox.stop()  # unsent notices stay in the store for the next start
            try:
                await store.close()
            finally:
                await ctx.aclose()
                await targets.aclose()
                for sig in handled:
                    loop.remove_signal_handler(sig)
            log.info("agent stopped; store flushed")
        return 0

    async def _execute(self, spec: ProbeSpec, scheduled_at: datetime) -> None:
        """One scheduled run: probe, then the spine."""
        assert self.ctx is not None and self.pipeline is not None
        result = await run_probe(spec, self.ctx, redactor=self.redactor, scheduled_at=scheduled_at)
        await self.pipeline.handle(result)

    async def run_now(self, name: str) -> ProbeResult | None:
        """Run probe `name` once now through the pipeline (stored, listeners told).

        None when there is no such probe. `opsagent-self` runs the self-check.
        """
        pipeline = self.pipeline
        if pipeline is None or self.ctx is None or self._self_window is None:
            raise StoreError("the agent is not running")
        if name == SELF_PROBE:
            result = self_result(self._self_window.assess())
        else:
            spec = self.config.probe(name)
            if spec is None:
                return None
            result = await run_probe(spec, self.ctx, redactor=self.redactor)
        await pipeline.handle(result)
        return result

    async def _restore_state(self, pipeline: Pipeline, store: Store) -> None:
        """Seed each probe's last state from the store, so a restart does not look like a change."""
        try:
            async with asyncio.timeout(RESTORE_TIMEOUT_S):
                rows = await store.latest_per_probe()
        except (TimeoutError, StoreError) as exc:
            log.error("could not restore probe states from the store: %s", exc)
            return
        for row in rows:
            name = row.result.probe
            pipeline.states[name] = ProbeState(row.result, row.consecutive_failures)
            if row.last_ok_at is not None:
                self.metrics.last_success[name] = row.last_ok_at
        self.stored_counts = {row.result.probe: row.runs for row in rows}
        self.events.seed({row.result.probe: row.result.status.value for row in rows})

    def _count(self, result: ProbeResult) -> None:
        self.stored_counts[result.probe] = self.stored_counts.get(result.probe, 0) + 1

    # -- what the API and the metrics read ------------------------------------------------

    def probe_kinds(self) -> list[tuple[str, str]]:
        """(name, kind) of every probe the agent runs: the configured ones and its own."""
        return [(p.name, p.kind) for p in self.config.probes] + [(SELF_PROBE, SELF_KIND)]

    def latest_results(self) -> list[LatestResult]:
        """Each probe's last result and failure streak, from memory: cheap enough to poll.

        The same rows `Store.latest_per_probe()` gives, without scanning the results table.
        """
        states = self.pipeline.states if self.pipeline else {}
        return [
            LatestResult(
                result=state.last,
                consecutive_failures=state.consecutive_failures,
                last_ok_at=self.metrics.last_success.get(name),
                runs=self.stored_counts.get(name, 0),
            )
            for name, state in sorted(states.items())
            if state.last is not None
        ]

    def live_counters(self) -> list[ProbeCounters]:
        """The dispatcher's per-probe counters now."""
        if self.dispatcher is None or self.started_at is None:
            return []
        now = utcnow()
        return [
            ProbeCounters(name, s.runs, s.missed, s.overlaps, self.started_at, now)
            for name, s in self.dispatcher.schedules.items()
        ]

    def running_store(self) -> Store:
        """The open store; StoreError when the agent is not running."""
        if self.store is None:
            raise StoreError("the agent is not running")
        return self.store

    def running_dispatcher(self) -> Dispatcher:
        """The dispatcher; StoreError when the agent is not running."""
        if self.dispatcher is None:
            raise StoreError("the agent is not running")
        return self.dispatcher

    def liveness_problems(self) -> list[str]:
        """Why the agent is not alive and well (empty when it is): feeds the watchdog and /healthz."""
        problems: list[str] = []
        if self.store is None or not self.store.stats().writer_alive:
            problems.append("the store's writer is not running")
        if self.dispatcher is None:
            problems.append("the scheduler is not running")
        else:
            now = asyncio.get_running_loop().time()
            for name, state in self.dispatcher.schedules.items():
                handle = state.handle
                if handle is not None and not handle.cancelled():
                    overdue = now - handle.when()
                    if overdue > TIMER_OVERDUE_S:
                        problems.append(
                            f"probe timers stopped firing ({name} {overdue:.0f}s overdue)"
                        )
                        break
        return problems

    # -- reload ----------------------------------------------------------------------------

    async def reload(self) -> ReloadPlan:
        """Re-read and re-validate the config file and apply it without a restart.

        Raises ConfigError (every problem logged, the running config kept) or
        ReloadUnavailable (started without a config file).
        """
        if self.config_path is None:
            raise ReloadUnavailable(
                "the agent was started without a config file: nothing to reload"
            )
        path = self.config_path
        async with self._reload_lock:
            if self.notifier is not None:
                self.notifier.reloading()
            try:
                try:
                    new = await asyncio.to_thread(load_config, path)
                except ConfigError as exc:
                    self.reload_failures += 1
                    count = len(exc.problems)
                    log.error(
                        "reload refused: %s has %d problem%s; the running config is kept",
                        path,
                        count,
                        "s" * (count != 1),
                    )
                    for problem in exc.problems:
                        log.error("reload: %s", problem)
                    raise
                plan = plan_reload(self.config, new)
                self._apply(plan)
                return plan
            finally:
                if self.notifier is not None:
                    self.notifier.ready(self._status_line())

    def _apply(self, plan: ReloadPlan) -> None:
        self.config = plan.config
        self.redactor = Redactor.from_model(plan.config)
        self.reloads += 1
        if self.ctx is not None:
            self.ctx.sources.clear()
            self.ctx.sources.update(plan.config.sources)
            prepare_probes(plan.config.probes, self.ctx)
        if self.dispatcher is not None:
            self.dispatcher.set_probes(list(plan.config.probes))
        if self.incidents is not None:
            self.incidents.set_policy(self._policy, self._in_maintenance)  # no re-alerting
        if self.targets is not None:
            self.targets.update(plan.config.notify)
        if self.remediations is not None:
            self.remediations.configure(plan.config, self.redactor)
        self._sync_jobs()
        for line in plan.not_applied:
            log.warning("reload: %s", line)
        log.info("config reloaded from %s: %s", self.config_path, plan.summary())

    def _on_sighup(self) -> None:
        log.info("received SIGHUP: reloading %s", self.config_path)
        self._spawn(self._reload_from_signal())

    async def _reload_from_signal(self) -> None:
        try:
            await self.reload()
        except ConfigError:
            pass  # reload() logged every problem
        except ReloadUnavailable as exc:
            log.error("reload: %s", exc)

    # -- jobs ------------------------------------------------------------------------------

    def _sync_jobs(self) -> None:
        """(Re)schedule the periodic jobs whose interval is new or changed."""
        agent = self.config.agent
        heartbeat = agent.heartbeat_url is not None
        if heartbeat and self._heartbeat is None:
            self._heartbeat = Heartbeat(self)
        wanted: dict[str, tuple[float, Callable[[], Any]]] = {
            "retention": (3600.0, self._prune),
            "compaction": (agent.compact_every.total_seconds(), self._compact),
            "probe-counters": (float(COUNTERS_EVERY_S), self._save_counters_job),
            "self-check": (agent.self_check_every.total_seconds(), self._self_check),
            "incidents": (self.config.incidents.tick_every.total_seconds(), self._incidents_tick),
            "approvals": (APPROVALS_EVERY_S, self._expire_approvals),
        }
        if heartbeat:
            wanted["heartbeat"] = (agent.heartbeat_every.total_seconds(), self._beat)
        scheduler = self._scheduler
        assert scheduler is not None
        for job_id in set(self._job_seconds) - set(wanted):
            scheduler.remove_job(job_id)
            del self._job_seconds[job_id]
        for job_id, (seconds, job) in wanted.items():
            if self._job_seconds.get(job_id) == seconds:
                continue  # re-adding would restart its interval: a reload must not postpone it
            scheduler.add_job(
                job,
                "interval",
                seconds=seconds,
                id=job_id,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(1, min(JOB_MISFIRE_GRACE_S, int(seconds))),
            )
            self._job_seconds[job_id] = seconds
        self.reports.sync(scheduler, self.config.reports)

    async def _prune(self) -> None:
        store, retention = self.running_store(), self.config.agent.retention
        async with asyncio.timeout(JOB_TIMEOUT_S):
            deleted = await store.prune(retention)
        if deleted:
            log.info("retention: deleted %d results older than %s", deleted, retention)
            async with asyncio.timeout(JOB_TIMEOUT_S):
                rows = await store.latest_per_probe()
            self.stored_counts = {row.result.probe: row.runs for row in rows}

    async def _compact(self) -> None:
        async with asyncio.timeout(JOB_TIMEOUT_S):
            await self.running_store().compact()

    async def _save_counters_job(self) -> None:
        await self._save_counters(self.running_store())

    async def _save_counters(self, store: Store) -> None:
        """Persist the dispatcher's per-probe counters so `status` can show them."""
        if self.dispatcher is None or self.started_at is None:
            return
        counters = self.live_counters()
        try:
            async with asyncio.timeout(JOB_TIMEOUT_S):
                await store.save_probe_counters(counters)
        except Exception:
            log.exception("saving probe counters failed")

    async def _self_check(self) -> None:
        """Record an `opsagent-self` result: did the probes run on time since the last one?"""
        if self._self_window is not None and self.pipeline is not None:
            await self.pipeline.handle(self_result(self._self_window.assess()))

    async def _incidents_tick(self) -> None:
        if self.incidents is not None:
            async with asyncio.timeout(JOB_TIMEOUT_S):
                await self.incidents.tick()

    async def _expire_approvals(self) -> None:
        if self.remediations is not None:
            async with asyncio.timeout(JOB_TIMEOUT_S):
                for run_id in await self.remediations.expire_approvals():
                    log.info("remediation run #%d rejected: its approval expired", run_id)

    def _latest(self, probe: str) -> ProbeResult | None:
        state = self.pipeline.states.get(probe) if self.pipeline is not None else None
        return state.last if state is not None else None

    def _policy(self, probe: str) -> Policy:
        """How incidents of `probe` behave, from the current config (looked up per result)."""
        if self._probes_by_name[0] is not self.config:
            self._probes_by_name = (self.config, {p.name: p for p in self.config.probes})
        spec = self._probes_by_name[1].get(probe)
        settings = self.config.incidents
        if spec is None:  # the agent's own self-check, or a probe removed by a reload
            return policy_for_unknown(settings)
        return policy_for(spec, settings)

    def _in_maintenance(self, incident: Incident, at: datetime) -> bool:
        return any(
            window.active_at(at)
            and Matcher.parse(window.match).matches(
                incident.probe, incident.labels, incident.severity
            )
            for window in self.config.maintenance
        )

    async def _beat(self) -> None:
        if self._heartbeat is not None:
            await self._heartbeat.beat()

    # -- systemd and the API ---------------------------------------------------------------

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog every `interval` while the agent is alive and well.

        This task runs on the agent's own loop, so a blocked loop stops the pings too.
        """
        assert self.notifier is not None
        withheld = False
        status = ""
        while True:
            await asyncio.sleep(interval)
            problems = self.liveness_problems()
            if problems:
                if not withheld:
                    log.error("systemd watchdog: not pinging: %s", "; ".join(problems))
                withheld = True
                continue
            if withheld:
                log.info("systemd watchdog: pinging again")
            withheld = False
            self.notifier.watchdog()
            line = self._status_line()
            if line != status:
                self.notifier.status(line)
                status = line

    def _status_line(self) -> str:
        states = self.pipeline.states if self.pipeline else {}
        failing = sum(1 for s in states.values() if s.last is not None and not s.last.ok)
        return f"{len(self.config.probes)} probes, {failing} failing"

    async def _start_api(self) -> None:
        """Listen for the control API. A failure to bind is logged and reported by the self-check.

        Not fatal on purpose: monitoring matters more than the API, and the CLI falls
        back to reading the store. The `opsagent-self` probe fails while it lasts.
        """
        settings, data_dir = self.config.agent.api, self.config.agent.data_dir
        try:
            token = ensure_token(data_dir)
            server = ApiServer(build_app(self, token, ROUTES), settings, data_dir)
            await server.start()
        except OSError as exc:
            self.api_problem = (
                f"the control API is not listening on {settings.listen}: {exc.strerror or exc}"
            )
            log.error("%s; the agent runs without it", self.api_problem)
            # api.addr can only be stale here (one agent per data_dir): clients must not follow it.
            with contextlib.suppress(OSError):
                (data_dir / ADDR_FILE).unlink()
            return
        self._api, self.api_url = server, server.url
        if server.unix_socket is not None:
            log.info("control API also on %s", server.unix_socket)

    async def _stop_api(self) -> None:
        self.events.close()
        if self._api is not None:
            await self._api.stop()
            self._api = None

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_signal(self, sig: signal.Signals, stop: asyncio.Event) -> None:
        log.info("received %s", sig.name)
        stop.set()

    def _base_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()


def policy_for_unknown(settings: Any) -> Policy:
    """Policy for results of probes not in the config (the self-check): global defaults."""
    return Policy(
        severity="high",
        failures=settings.failures,
        successes=settings.successes,
        flap_window=settings.flap_window,
        flap_threshold=settings.flap_threshold,
        notify=tuple(settings.notify),
        remind_every=settings.remind_every,
        max_reminders=settings.max_reminders,
        escalate_after=settings.escalate_after,
        escalate_to=tuple(settings.escalate_to),
    )
