"""Reports inside the running agent: one scheduler job per configured report.

`sync()` (at start and after every reload) adds a job per report, a `CronTrigger` for
`cron` (UTC) or an interval for `every`, re-adds only those whose schedule changed and
removes those gone from the config. A job generates the report for `period` up to now
and queues its emails in the outbox; `generate()` does the same on demand (the API).
One more job keeps the hourly rollups (`agent.store_rollup`) that long reports read.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent import store_rollup
from agent.errors import StoreError
from agent.results import utcnow
from reports.data import Period
from reports.generate import period_ending
from reports.service import Produced, produce
from reports.settings import ReportSpec

if TYPE_CHECKING:
    from agent.daemon import Agent

log = logging.getLogger(__name__)

JOB_PREFIX = "report:"
ROLLUP_JOB = "report-rollups"
ROLLUP_EVERY_S = 600.0
ROLLUP_FIRST_S = 60.0  # after start: catch up without slowing the start itself
ROLLUP_HOURS_PER_CALL = 6  # a backlog is rolled up a few hours at a time: writes go between
# A report due while the agent was busy (or the loop stalled) still runs this late.
MISFIRE_GRACE_S = 3600


class ReportJobs:
    """The scheduled reports of one agent."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._schedules: dict[str, str] = {}  # report name -> its schedule, as scheduled
        self._scheduler: AsyncIOScheduler | None = None
        self.generated = 0
        self.failed = 0

    def sync(self, scheduler: AsyncIOScheduler, reports: list[ReportSpec]) -> None:
        """(Re)schedule the reports whose schedule is new or changed; drop removed ones."""
        if self._scheduler is None:
            scheduler.add_job(
                self.roll_up,
                "interval",
                seconds=ROLLUP_EVERY_S,
                id=ROLLUP_JOB,
                next_run_time=utcnow() + timedelta(seconds=ROLLUP_FIRST_S),
                coalesce=True,
                max_instances=1,
                misfire_grace_time=int(ROLLUP_EVERY_S),
            )
        self._scheduler = scheduler
        wanted = {spec.name: spec for spec in reports}
        for name in set(self._schedules) - set(wanted):
            scheduler.remove_job(JOB_PREFIX + name)
            del self._schedules[name]
        for name, spec in wanted.items():
            schedule = spec.schedule
            if self._schedules.get(name) == schedule:
                continue  # other fields are read when the job runs; keep its next run
            trigger = (
                CronTrigger.from_crontab(spec.cron, timezone="UTC")
                if spec.cron is not None
                else IntervalTrigger(seconds=spec.every.total_seconds() if spec.every else 86400)
            )
            scheduler.add_job(
                self._scheduled,
                trigger,
                args=[name],
                id=JOB_PREFIX + name,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=MISFIRE_GRACE_S,
            )
            self._schedules[name] = schedule
            log.info("report %s scheduled (%s)", name, schedule)

    def schedule_of(self, name: str) -> tuple[str, datetime | None]:
        """A report's schedule as text and its next run (None when not scheduled)."""
        job = self._scheduler.get_job(JOB_PREFIX + name) if self._scheduler else None
        next_run: datetime | None = getattr(job, "next_run_time", None)
        return self._schedules.get(name, ""), next_run

    async def roll_up(self) -> int:
        """Bring the hourly rollups up to date and prune them with the results' retention.

        Returns the hours rolled up. Failures are logged: reports then read `results`.
        """
        agent = self._agent
        store, now = agent.running_store(), utcnow()
        hours = 0
        try:
            while True:
                done = await store.run(
                    lambda con: store_rollup.roll_up(con, now, max_hours=ROLLUP_HOURS_PER_CALL),
                    write=True,
                )
                hours += done
                if done < ROLLUP_HOURS_PER_CALL:
                    break
            await store.run(
                lambda con: store_rollup.prune(con, now - agent.config.agent.retention),
                write=True,
            )
        except Exception:
            log.exception("rolling up results by hour failed; reports read the results instead")
        if hours > 1:
            log.info("rolled up %d hours of results for reports", hours)
        return hours

    async def _scheduled(self, name: str) -> None:
        spec = next((r for r in self._agent.config.reports if r.name == name), None)
        if spec is None:  # removed by a reload racing the timer
            return
        now = utcnow()
        try:
            done = await self.generate(spec, period_ending(spec, now), now=now, send=True)
        except Exception:  # the store or a bug: log it, the next run tries again
            self.failed += 1
            log.exception("report %s failed", name)
            return
        log.info(
            "report %s #%d written to %s; %d emails queued",
            name,
            done.report.id,
            done.report.html_path,
            len(done.notices),
        )

    async def generate(
        self,
        spec: ReportSpec,
        period: Period,
        *,
        now: datetime | None = None,
        send: bool,
        trigger: str = "schedule",
    ) -> Produced:
        """Generate `spec` for `period` now; with `send`, queue its emails and wake the outbox."""
        agent = self._agent
        store, incidents = agent.running_store(), agent.incidents
        if incidents is None:
            raise StoreError("the agent is not running")
        done = await produce(
            store,
            agent.config,
            spec,
            period=period,
            now=now or utcnow(),
            trigger=trigger,
            send=send,
            notice_ids=incidents.next_notice_id,
        )
        self.generated += 1
        if done.notices and agent.outbox is not None:
            agent.outbox.wake()
        return done


__all__ = ["ReportJobs"]
