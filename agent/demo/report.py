"""The demo's closing report: the first configured report, over the demo's own run."""

from __future__ import annotations

from datetime import datetime, timedelta

from agent.config import Config
from agent.errors import StoreError
from agent.results import utcnow
from agent.store import Store
from reports.data import Period
from reports.service import produce
from reports.settings import ReportSpec


async def write_report(config: Config, since: datetime) -> str:
    """Generate and store a report covering `since` to now (the agent has stopped).

    Uses the config's first report (its sections, SLOs...), else a default one; never
    sends it. Returns the line to print: the HTML file's path, or why there is none.
    """
    spec = (
        config.reports[0] if config.reports else ReportSpec(name="demo", every=timedelta(hours=1))
    )
    now = utcnow()
    try:
        store = Store.open(config.agent.store_path)
        try:
            await store.start()
            done = await produce(
                store,
                config,
                spec,
                period=Period(start=since, end=now),
                now=now,
                trigger="demo",
                send=False,
            )
        finally:
            await store.close()
    except (StoreError, OSError) as exc:
        return f"No report was written: {exc}"
    return (
        f"Report of this run: {done.report.html_path}\n"
        f"  (and {done.report.text_path}; try: opsagent reports; opsagent report --period 1h)"
    )
