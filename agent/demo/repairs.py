"""The demo's view of the agent's self-healing: remediation steps on the timeline, breaker resets.

`RepairFeed.follow()` polls the running agent's store (two small queries every
`POLL_S`) for new `remediation_steps` rows and for incidents the agent escalated, and
prints each as it appears: the timeline then shows plan -> executed -> verified, or
ineffective -> back-off -> breaker opened -> escalated, next to the probe results that
caused them. Polling keeps the agent untouched (no demo hook in the daemon); a step is
printed at most `POLL_S` after it was stored.

`reset_breaker(name)` is what an on-call human does with `opsagent reset-breaker RUN`:
the fault timeline calls it after "fixing" the bug the remediation could not fix, and
`follow()` calls it at start for breakers an earlier demo run left open (the store
outlives a demo run), so every run starts with closed breakers.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from agent import store_remediations
from agent.daemon import Agent
from agent.demo.timeline import ConsoleTimeline, RunSummary, escalation_line, repair_line
from agent.errors import StoreError
from agent.store import Store

POLL_S = 0.25


@dataclass
class RepairFeed:
    """Prints the agent's remediation steps and escalations on the demo's timeline."""

    agent: Agent
    console: ConsoleTimeline
    last_step: int = -1  # -1: not yet positioned (steps of earlier demo runs are skipped)
    last_event: int = -1
    printed: int = 0

    async def follow(self) -> None:
        """Poll until cancelled; waits for the agent's store and remediations to be up."""
        while self.agent.store is None or self.agent.remediations is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the agent has no "started" event to wait on
        store = self.agent.store
        self.last_step, self.last_event = await store.run(_positions)
        for name in [r.name for r in self.agent.config.remediations]:
            found = await self.reset_breaker(name, quiet=True)
            if found:
                self.console.fault(f"↺ demo: {found} (left open by an earlier demo)")
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.poll()
            except StoreError:
                return  # the agent is stopping: its store is closed

    async def poll(self) -> None:
        """Print the steps and escalations stored since the last poll."""
        store = self.agent.running_store()
        steps, events = await store.run(
            functools.partial(_since, step=self.last_step, event=self.last_event)
        )
        for step_id, run_id, remediation, step, detail in steps:
            self.last_step = step_id
            self.console.repair(repair_line(run_id, remediation, step, detail))
            self.printed += 1
        for event_id, incident_id, probe, reason in events:
            self.last_event = event_id
            self.console.repair(escalation_line(incident_id, probe, reason))
            self.printed += 1

    async def reset_breaker(self, name: str, *, quiet: bool = False) -> str:
        """Close every open breaker of remediation `name`; a line saying what was done.

        Empty when `quiet` and nothing was open. Raises LookupError for an unknown name.
        """
        service, spec = self.agent.remediations, self.agent.config.remediation(name)
        if service is None:
            raise RuntimeError("the agent is not running")
        if spec is None:
            raise LookupError(f"no remediation named {name!r}")
        now = datetime.now(UTC)
        runs = await self.agent.running_store().run(
            functools.partial(
                _open_breakers,
                name=name,
                breaker_after=spec.breaker_after,
                now=now,
                window=spec.max_attempts.window,
            )
        )
        for run_id in runs:
            await service.reset_breaker(run_id, by="demo")
        if runs:
            return "; ".join(f"opsagent reset-breaker {run_id}" for run_id in runs)
        return "" if quiet else f"the breaker of {name} was not open"


def read_runs(store_path: Path, since: datetime) -> list[RunSummary] | None:
    """Remediation runs created since `since`, read from the stopped agent's store file."""
    try:
        with Store.open(store_path, read_only=True) as store:
            rows = store.run_read_only(
                lambda con: con.execute(
                    "SELECT remediation, state, verified FROM remediation_runs "
                    "WHERE created_at >= ? ORDER BY id",
                    [since.astimezone(UTC).replace(tzinfo=None)],
                ).fetchall()
            )
    except (StoreError, duckdb.Error, OSError):
        return None
    return [RunSummary(str(r[0]), str(r[1]), r[2]) for r in rows]


def _positions(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """The newest step and incident-event ids now: what came before is not this run's."""
    step = con.execute("SELECT coalesce(max(id), 0) FROM remediation_steps").fetchall()[0][0]
    event = con.execute("SELECT coalesce(max(id), 0) FROM incident_events").fetchall()[0][0]
    return int(step), int(event)


def _since(
    con: duckdb.DuckDBPyConnection, *, step: int, event: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    steps = con.execute(
        "SELECT id, run_id, remediation, step, detail FROM remediation_steps WHERE id > ? "
        "ORDER BY id",
        [step],
    ).fetchall()
    events = con.execute(
        "SELECT e.id, e.incident_id, i.probe, coalesce(e.reason, '') FROM incident_events e "
        "JOIN incidents i ON i.id = e.incident_id WHERE e.id > ? AND e.event = 'escalated' "
        "ORDER BY e.id",
        [event],
    ).fetchall()
    return steps, events


def _open_breakers(
    con: duckdb.DuckDBPyConnection,
    *,
    name: str,
    breaker_after: int,
    now: datetime,
    window: timedelta,
) -> list[int]:
    """The latest run of `name` on each target whose circuit breaker is open."""
    targets = con.execute(
        "SELECT target, max(id) FROM remediation_runs WHERE remediation = ? GROUP BY target",
        [name],
    ).fetchall()
    return [
        int(run_id)
        for target, run_id in targets
        if store_remediations.facts(con, name, target, now, window).failures_in_a_row
        >= breaker_after
    ]
