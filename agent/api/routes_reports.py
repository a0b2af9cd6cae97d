"""The control API's report endpoints: generate one now, list those generated.

Listed in `REPORT_ROUTES`, which `agent.api.routes.ROUTES` includes.
"""

from __future__ import annotations

from agent import store_reports
from agent.api.app import ApiError, Call, Route
from agent.api.models import (
    ReportInfo,
    ReportPath,
    ReportRunRequest,
    ReportsParams,
    ReportsResponse,
    ScheduledReport,
)
from agent.results import utcnow
from reports.generate import parse_period, period_ending
from reports.service import UnknownReport, find_spec


async def generate_report(call: Call) -> ReportInfo:
    """Generate a report now; with `send`, queue its emails. 404 for an unknown name."""
    agent, name = call.agent, call.path_as(ReportPath).name
    request = call.body_as(ReportRunRequest)
    try:
        spec = find_spec(agent.config, name)
    except UnknownReport as exc:
        raise ApiError(404, str(exc), field="name") from None
    if request.send and not spec.notify:
        raise ApiError(
            422, f"report {name!r} has no `notify:` notifiers to send it to", field="send"
        )
    now = utcnow()
    try:
        period = parse_period(request.period, now) if request.period else period_ending(spec, now)
    except ValueError as exc:
        raise ApiError(422, str(exc), field="period") from None
    done = await agent.reports.generate(spec, period, now=now, send=request.send, trigger="api")
    return ReportInfo.of(done.report)


async def list_reports(call: Call) -> ReportsResponse:
    """Generated reports, newest first, and the configured ones with their next run."""
    params = call.query_as(ReportsParams)
    agent = call.agent
    rows = await agent.running_store().run(
        lambda con: store_reports.listing(con, name=params.name, limit=params.limit)
    )
    configured = []
    for spec in agent.config.reports:
        schedule, next_run = agent.reports.schedule_of(spec.name)
        configured.append(
            ScheduledReport(
                name=spec.name,
                schedule=schedule,
                period_s=spec.period.total_seconds(),
                notify=list(spec.notify),
                next_run=next_run,
            )
        )
    return ReportsResponse(reports=[ReportInfo.of(r) for r in rows], configured=configured)


REPORT_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/reports",
        list_reports,
        "Reports generated, newest first, and those configured",
        ReportsResponse,
        query=ReportsParams,
        errors=(503,),
        tag="reports",
    ),
    Route(
        "POST",
        "/v1/reports/{name}",
        generate_report,
        "Generate a report now",
        ReportInfo,
        body=ReportRunRequest,
        path_model=ReportPath,
        errors=(404, 503),
        status=201,
        tag="reports",
        description="Computes the report for `period` (default: its configured period ending "
        "now), stores its HTML and text under `<data_dir>/reports/` and lists it in the store. "
        "With `send`, its emails are queued in the outbox first, then sent (retried, never "
        "twice). 404 for a name not in `reports:`; 422 for a bad period.",
    ),
)
