"""Generate a report, store its files and its row, and queue its emails: one call.

The scheduler inside the agent, the control API and the CLI (agent stopped) all go
through `produce`. It never blocks the event loop: the SQL runs on the store's worker
thread (`Store.run`) and rendering in a thread. The report row and one outbox row per
email are written in one transaction, before anything is sent; the outbox sends them
(retried, never twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from agent import store_reports
from agent.config import Config
from agent.notices import ReportNotice
from agent.notifiers.email import EmailSpec
from agent.store import Store
from reports.data import Period, collect
from reports.deliver import message_id
from reports.generate import policies, request_for, write
from reports.render import subject
from reports.settings import ReportSpec


class UnknownReport(LookupError):
    """No report of that name in the config."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) or "none configured"
        super().__init__(f"no report named {name!r} (reports: {listed})")


@dataclass(frozen=True)
class Produced:
    """A report just generated: its stored row and the emails queued for it."""

    report: store_reports.StoredReport
    notices: list[ReportNotice]


def find_spec(config: Config, name: str | None) -> ReportSpec:
    """The report named `name`, or the only/first one when None; UnknownReport otherwise."""
    known = [r.name for r in config.reports]
    if name is None:
        if not config.reports:
            raise UnknownReport("", known)
        return config.reports[0]
    for spec in config.reports:
        if spec.name == name:
            return spec
    raise UnknownReport(name, known)


async def produce(
    store: Store,
    config: Config,
    spec: ReportSpec,
    *,
    period: Period,
    now: datetime,
    trigger: str,
    send: bool,
    notice_ids: Callable[[], int] | None = None,
) -> Produced:
    """Compute, render, write and record one report; queue its emails when `send`.

    `notice_ids` hands out outbox ids (the agent's incident service owns the counter).
    """
    request = request_for(spec, config, period)
    policy_for = policies(config)
    data = await store.run(lambda con: collect(con, request, now=now, policy_for=policy_for))
    agent_name = config.agent.name
    html_path, text_path = await asyncio.to_thread(
        write, data, spec, config.agent.data_dir, agent_name
    )
    title = subject(data, spec.name, agent_name)
    emails = {n.name: n for n in config.notify if isinstance(n, EmailSpec)}
    # The config's cross-checks make every target an email notifier; skip any other.
    targets = tuple(t for t in spec.notify if t in emails) if send else ()

    def make(report_id: int, next_id: Callable[[], int]) -> list[ReportNotice]:
        return [
            ReportNotice(
                id=next_id(),
                target=target,
                agent_name=agent_name,
                report_id=report_id,
                name=spec.name,
                subject=title,
                html_path=str(html_path),
                text_path=str(text_path),
                message_id=message_id(emails[target], spec.name, report_id, now),
                created_at=now,
            )
            for target in targets
        ]

    new = store_reports.NewReport(
        name=spec.name,
        period_start=period.start,
        period_end=period.end,
        created_at=now,
        trigger=trigger,
        subject=title,
        html_path=str(html_path),
        text_path=str(text_path),
        availability=data.availability,
        notify=targets,
    )
    stored, notices = await store.run(
        lambda con: store_reports.record(con, new, make, notice_ids), write=True
    )
    return Produced(stored, notices)
