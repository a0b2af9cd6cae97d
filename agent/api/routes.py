"""The control API's endpoints: one handler each, listed once in `ROUTES`.

To add an endpoint (incidents, remediations, reports...), write a handler taking a
`Call` and returning a response model, and add a `Route` to a tuple that `ROUTES`
includes. Parsing, auth, errors and the OpenAPI document follow from the `Route`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from agent import __version__
from agent import store_incidents as sql
from agent import store_remediations as remediation_sql
from agent.api.app import JSON, ApiError, Call, Reply, Route, is_public
from agent.api.app import ROUTES as ROUTES_KEY
from agent.api.config_view import redacted
from agent.api.models import (
    MAX_SILENCE,
    AckRequest,
    AgentInfo,
    ConfigResponse,
    DispatcherTotals,
    EventsParams,
    Health,
    HistoryParams,
    HistoryResponse,
    IncidentCounts,
    IncidentDetail,
    IncidentEvent,
    IncidentInfo,
    IncidentPath,
    IncidentsParams,
    IncidentsResponse,
    NotificationInfo,
    OutboxTotals,
    ProbeInfo,
    ProbesResponse,
    QueryRequest,
    QueryResponse,
    ReloadResponse,
    ResolveRequest,
    SilenceInfo,
    SilencePath,
    SilenceRequest,
    SilencesParams,
    SilencesResponse,
    StatusResponse,
    duration_within,
)
from agent.api.openapi import build_openapi
from agent.api.remediation_routes import REMEDIATION_ROUTES
from agent.api.routes_reports import REPORT_ROUTES
from agent.api.sql import QueryTimeout, json_safe, run_query
from agent.errors import ConfigError, StoreError
from agent.incidents.models import Incident, Matcher, Transition
from agent.incidents.service import IncidentNotFound, IncidentService
from agent.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agent.reload import ReloadUnavailable
from agent.results import ProbeResult, utcnow
from agent.selfcheck import SELF_KIND, SELF_PROBE
from agent.status import build_status
from agent.store import Store

RUN_FLUSH_WAIT_S = 5.0  # how long `run` waits for its result to reach the disk
OUTBOX_COUNT_WAIT_S = 2.0  # status and metrics go on without the outbox counts after this
API_ACTOR = "api"  # who acts when a request does not say


async def healthz(call: Call) -> Health | Reply:
    """Liveness for load balancers and scripts; no token needed."""
    problems = call.agent.liveness_problems()
    health = Health(
        status="unhealthy" if problems else "ok", version=__version__, problems=problems
    )
    return Reply(health, 503) if problems else health


async def get_status(call: Call) -> StatusResponse:
    """Every probe's state (the rows of `opsagent status`), the store and the scheduler."""
    agent = call.agent
    store, dispatcher = agent.running_store(), agent.running_dispatcher()
    latest = agent.latest_results()  # from memory: polling status never scans the store
    now = utcnow()
    stats = dispatcher.stats()
    lags = sorted(stats.lag_ms)
    assert agent.started_at is not None
    return StatusResponse(
        agent=AgentInfo(
            name=agent.config.agent.name,
            version=__version__,
            pid=os.getpid(),
            started_at=agent.started_at,
            uptime_s=round((now - agent.started_at).total_seconds(), 3),
            config_path=str(agent.config_path) if agent.config_path else None,
            reloads=agent.reloads,
            api_url=agent.api_url,
        ),
        probes=build_status(agent.probe_kinds(), latest, agent.live_counters(), now),
        store=store.stats(),
        dispatcher=DispatcherTotals(
            runs=stats.runs,
            missed=stats.missed,
            overlaps=stats.overlaps,
            in_flight=stats.in_flight,
            lag_p50_ms=round(_percentile(lags, 0.50), 3),
            lag_p99_ms=round(_percentile(lags, 0.99), 3),
        ),
        incidents=_incident_counts(_service(call)),
        notifications=await _outbox_totals(store),
        remediations=await _remediation_totals(store, now),
    )


def _incident_counts(service: IncidentService) -> IncidentCounts:
    """Counts of the incidents not resolved yet, from memory."""
    now, engine = utcnow(), service.engine
    return IncidentCounts.of(
        engine.active.values(),
        lambda incident: engine.suppressed_by(incident, now),
        silences=sum(s.active_at(now) for s in engine.silences.values()),
    )


async def _outbox_totals(store: Store) -> OutboxTotals | None:
    """The outbox's depth (one small query); None when the store cannot answer now."""
    try:
        async with asyncio.timeout(OUTBOX_COUNT_WAIT_S):
            counts = await store.run(sql.counts)
    except (TimeoutError, StoreError):
        return None
    return OutboxTotals(pending=counts.pending, dead=counts.dead, sent=counts.sent)


async def _remediation_totals(store: Store, now: datetime | None) -> dict[str, int] | None:
    """Remediation runs of the day before `now` (ever, for None) by state, and those awaiting
    approval; None when the store cannot answer now."""
    since = now - timedelta(hours=24) if now is not None else None
    try:
        async with asyncio.timeout(OUTBOX_COUNT_WAIT_S):
            return await store.run(lambda c: remediation_sql.totals(c, since))
    except (TimeoutError, StoreError):
        return None


async def list_probes(call: Call) -> ProbesResponse:
    """Configured probes and `opsagent-self`, with schedule, counters and last result."""
    agent = call.agent
    schedules = agent.running_dispatcher().schedules
    states = agent.pipeline.states if agent.pipeline else {}
    out: list[ProbeInfo] = []
    for spec in agent.config.probes:
        schedule, state = schedules.get(spec.name), states.get(spec.name)
        out.append(
            ProbeInfo(
                name=spec.name,
                kind=spec.kind,
                builtin=False,
                every_s=spec.every.total_seconds(),
                timeout_s=spec.timeout.total_seconds(),
                severity=spec.severity,
                description=spec.description,
                labels=dict(spec.labels),
                expect=[e.source for e in spec.expect],
                runs=schedule.runs if schedule else 0,
                missed=schedule.missed if schedule else 0,
                overlaps=schedule.overlaps if schedule else 0,
                consecutive_failures=state.consecutive_failures if state else 0,
                last=state.last if state else None,
            )
        )
    own = states.get(SELF_PROBE)
    out.append(
        ProbeInfo(
            name=SELF_PROBE,
            kind=SELF_KIND,
            builtin=True,
            every_s=agent.config.agent.self_check_every.total_seconds(),
            timeout_s=0.0,
            severity="critical",
            description="The agent's own check that probes run on time and the store writes.",
            labels={},
            expect=[],
            runs=0,
            missed=0,
            overlaps=0,
            consecutive_failures=own.consecutive_failures if own else 0,
            last=own.last if own else None,
        )
    )
    return ProbesResponse(probes=out)


async def probe_history(call: Call) -> HistoryResponse:
    """A probe's last results; 404 for a name neither configured nor stored."""
    agent, name = call.agent, call.path("name")
    store = agent.running_store()
    known = name in {n for n, _ in agent.probe_kinds()}
    if not known and await store.count_results(name) == 0:
        raise _unknown_probe(call)
    limit = call.query_as(HistoryParams).limit
    return HistoryResponse(probe=name, results=await store.history(name, limit))


async def run_probe_now(call: Call) -> ProbeResult:
    """Run a probe now through the pipeline; its result, once stored."""
    result = await call.agent.run_now(call.path("name"))
    if result is None:
        raise _unknown_probe(call)
    # Wait (briefly) for the result to be on disk, so a history read right after sees it.
    with contextlib.suppress(TimeoutError, StoreError):
        async with asyncio.timeout(RUN_FLUSH_WAIT_S):
            await call.agent.running_store().flush()
    return result


async def get_config(call: Call) -> ConfigResponse:
    """The config in force, secrets masked."""
    agent = call.agent
    return ConfigResponse(
        path=str(agent.config_path) if agent.config_path else None,
        config=redacted(agent.config, agent.redactor),
    )


async def query(call: Call) -> QueryResponse:
    """Read-only SQL over the store; 400 for a refused, failing or too slow query."""
    request = call.body_as(QueryRequest)
    started = time.perf_counter()
    try:
        result = await run_query(
            call.agent.running_store(),
            request.sql,
            max_rows=request.max_rows,
            timeout_s=request.timeout_s,
        )
    except QueryTimeout as exc:
        raise ApiError(400, str(exc), field="timeout_s") from None
    except StoreError as exc:
        raise ApiError(400, str(exc), field="sql") from None
    return QueryResponse(
        columns=result.columns,
        rows=[[json_safe(v) for v in row] for row in result.rows],
        truncated=result.truncated,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
    )


async def reload(call: Call) -> ReloadResponse:
    """Reload the config file; 422 with every problem when it is invalid."""
    try:
        plan = await call.agent.reload()
    except ReloadUnavailable as exc:
        raise ApiError(409, str(exc)) from None
    except ConfigError as exc:
        raise ApiError(
            422,
            f"the config file is invalid ({len(exc.problems)} problems); the running config is kept",
            problems=[str(p) for p in exc.problems],
        ) from None
    return ReloadResponse(
        changed=plan.changed,
        added=plan.added,
        removed=plan.removed,
        rescheduled=plan.rescheduled,
        not_applied=plan.not_applied,
    )


async def events(call: Call) -> web.StreamResponse:
    """Server-sent events until the client leaves or the agent stops."""
    probe = call.query_as(EventsParams).probe
    hub = call.agent.events
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a reverse proxy must not buffer the stream
        }
    )
    subscription = hub.subscribe(probe)
    try:
        await response.prepare(call.request)
        await response.write(b"retry: 3000\n\n")
        async for chunk in subscription.frames():
            await response.write(chunk)
    except (ConnectionError, RuntimeError):
        pass  # the client went away (aiohttp raises ClientConnectionResetError/RuntimeError)
    finally:
        hub.unsubscribe(subscription)
    return response


async def metrics(call: Call) -> web.Response:
    """Prometheus text exposition."""
    store = call.agent.store
    outbox = await _outbox_totals(store) if store is not None else None
    repairs = await _remediation_totals(store, None) if store is not None else None
    return web.Response(
        body=call.agent.metrics.render(outbox, repairs),
        headers={"Content-Type": METRICS_CONTENT_TYPE},
    )


async def openapi(call: Call) -> web.Response:
    """The OpenAPI document, as seen under the config in force (which routes are public)."""
    routes = call.request.app[ROUTES_KEY]
    public: set[tuple[str, str]] = {(r.method, r.path) for r in routes if is_public(r, call.agent)}
    return web.json_response(build_openapi(routes, public=public))


# -- incidents and silences ---------------------------------------------------------------


async def list_incidents(call: Call) -> IncidentsResponse:
    """Open and acknowledged incidents (or all), newest first."""
    params = call.query_as(IncidentsParams)
    service, store = _service(call), call.agent.running_store()
    rows = await store.run(
        lambda con: sql.listing(con, include_resolved=params.all, limit=params.limit)
    )
    now = utcnow()
    return IncidentsResponse(
        incidents=[IncidentInfo.of(i, service.engine.suppressed_by(i, now)) for i in rows]
    )


async def get_incident(call: Call) -> IncidentDetail:
    """One incident with its timeline and its notifications; 404 when unknown."""
    incident_id = call.path_as(IncidentPath).id
    service, store = _service(call), call.agent.running_store()

    def read(con: Any) -> tuple[Incident | None, list[Transition], list[tuple[Any, ...]]]:
        return (
            sql.get(con, incident_id),
            sql.events(con, incident_id),
            sql.notifications(con, incident_id),
        )

    incident, transitions, notices = await store.run(read)
    if incident is None:
        raise _no_incident(incident_id)
    return IncidentDetail(
        incident=IncidentInfo.of(incident, service.engine.suppressed_by(incident, utcnow())),
        events=[IncidentEvent.of(t) for t in transitions],
        notifications=[NotificationInfo.of_row(row) for row in notices],
    )


async def acknowledge_incident(call: Call) -> IncidentInfo:
    """Acknowledge an open incident: reminders and escalation stop (until `expires_in`)."""
    incident_id = call.path_as(IncidentPath).id
    request = call.body_as(AckRequest)
    service = _service(call)
    try:
        incident = await service.acknowledge(
            incident_id,
            request.actor or API_ACTOR,
            comment=request.comment,
            expires_after=request.expiry(),
        )
    except IncidentNotFound:
        raise await _not_active(call, incident_id, "acknowledged") from None
    except ValueError:  # the engine refuses a pending incident
        raise ApiError(
            409,
            f"incident #{incident_id} is still pending: it has not opened yet, so nobody "
            "was alerted and there is nothing to acknowledge",
            field="id",
        ) from None
    return IncidentInfo.of(incident, service.engine.suppressed_by(incident, utcnow()))


async def resolve_incident(call: Call) -> IncidentInfo:
    """Resolve an active incident by hand; the comment goes into its timeline."""
    incident_id = call.path_as(IncidentPath).id
    request = call.body_as(ResolveRequest)
    service, actor = _service(call), request.actor or API_ACTOR
    try:
        incident = await service.resolve(incident_id, actor, resolution="manual")
    except IncidentNotFound:
        raise await _not_active(call, incident_id, "resolved") from None
    if request.comment:
        note = Transition(incident_id, utcnow(), "comment", actor, request.comment)
        await call.agent.running_store().run(
            lambda con: sql.save(con, [], [note], [], note.at), write=True
        )
    return IncidentInfo.of(incident)


async def list_silences(call: Call) -> SilencesResponse:
    """Silences in force (or all), oldest first."""
    params = call.query_as(SilencesParams)
    service, store = _service(call), call.agent.running_store()
    stored = await store.run(lambda con: sql.silences(con))
    # The engine's copy is the truth for the silences it knows (ended by a resolve).
    merged = {s.id: s for s in stored} | service.engine.silences
    now = utcnow()
    shown = [s for _, s in sorted(merged.items()) if params.all or s.active_at(now)]
    return SilencesResponse(silences=[SilenceInfo.of(s, now) for s in shown])


async def create_silence(call: Call) -> SilenceInfo:
    """Start a silence now; 422 naming the field for a bad matcher or duration."""
    request = call.body_as(SilenceRequest)
    silence = await _service(call).silence(
        Matcher.parse(request.matcher),
        duration_within(request.duration, MAX_SILENCE),
        reason=request.reason,
        created_by=request.created_by or API_ACTOR,
        end_on_resolve=request.end_on_resolve,
    )
    return SilenceInfo.of(silence, utcnow())


async def end_silence(call: Call) -> SilenceInfo:
    """End a silence now; 404 when unknown, 409 when it has already ended."""
    silence_id = call.path_as(SilencePath).id
    service, now = _service(call), utcnow()
    known = service.engine.silences.get(silence_id)
    if known is None:
        stored = await call.agent.running_store().run(lambda con: sql.silences(con))
        known = next((s for s in stored if s.id == silence_id), None)
        if known is None:
            raise ApiError(404, f"no silence #{silence_id}", field="id")
    if not known.active_at(now):
        ended = known.ended_at or known.ends_at
        raise ApiError(
            409, f"silence #{silence_id} already ended at {ended:%Y-%m-%d %H:%M:%S} UTC", field="id"
        )
    try:
        silence = await service.unsilence(silence_id)
    except LookupError:
        raise ApiError(404, f"no silence #{silence_id}", field="id") from None
    return SilenceInfo.of(silence, utcnow())


def _service(call: Call) -> IncidentService:
    service = call.agent.incidents
    if service is None:
        raise StoreError("the agent is not running")
    return service


def _no_incident(incident_id: int) -> ApiError:
    return ApiError(404, f"no incident #{incident_id}", field="id")


async def _not_active(call: Call, incident_id: int, verb: str) -> ApiError:
    """404 for an unknown incident, 409 for one that is already resolved."""
    stored = await call.agent.running_store().run(lambda con: sql.get(con, incident_id))
    if stored is None:
        return _no_incident(incident_id)
    how = f" ({stored.resolution})" if stored.resolution else ""
    return ApiError(
        409,
        f"incident #{incident_id} is already {stored.state.value}{how}: only an open "
        f"incident can be {verb}",
        field="id",
    )


def _unknown_probe(call: Call) -> ApiError:
    known = ", ".join(n for n, _ in call.agent.probe_kinds())
    return ApiError(404, f"no probe named {call.path('name')!r} (probes: {known})", field="name")


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


_NAME = {"name": "Probe name."}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, "Liveness (no token)", Health, also=(503,), auth="public"),
    Route("GET", "/openapi.json", openapi, "This document", tag="meta"),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        media_type="text/plain",
        auth="metrics",
        tag="meta",
        description="Prometheus text format. Needs the token unless "
        "`agent.api.metrics_public: true`.",
    ),
    Route("GET", "/v1/status", get_status, "Every probe's state", StatusResponse, errors=(503,)),
    Route("GET", "/v1/probes", list_probes, "Probes, schedules, last results", ProbesResponse),
    Route(
        "GET",
        "/v1/probes/{name}/history",
        probe_history,
        "A probe's recent results, newest first",
        HistoryResponse,
        query=HistoryParams,
        errors=(404, 503),
        path_params=_NAME,
    ),
    Route(
        "POST",
        "/v1/probes/{name}/run",
        run_probe_now,
        "Run a probe now",
        ProbeResult,
        errors=(404,),
        path_params=_NAME,
        description="Runs the probe at once through the normal pipeline: the result is "
        "stored and seen by every listener, like a scheduled run.",
    ),
    Route("GET", "/v1/config", get_config, "The config in force, secrets masked", ConfigResponse),
    Route(
        "POST",
        "/v1/query",
        query,
        "Read-only SQL over the store",
        QueryResponse,
        body=QueryRequest,
        errors=(400, 503),
        description="One SELECT/WITH/FROM/SHOW/DESCRIBE/SUMMARIZE/EXPLAIN statement. A "
        "statement that writes, fails, or runs past `timeout_s` answers 400.",
    ),
    Route(
        "POST",
        "/v1/reload",
        reload,
        "Reload the config file",
        ReloadResponse,
        errors=(409, 422),
        description="Like SIGHUP. An invalid file answers 422 listing every problem, and "
        "the running config stays.",
    ),
    Route(
        "GET",
        "/v1/events",
        events,
        "Live results and status changes (server-sent events)",
        query=EventsParams,
        media_type="text/event-stream",
        description="Events: `result` (a ProbeResult), `state` (a StateChange), `dropped` "
        '(`{"dropped": N}`: this client was too slow and lost N events).',
    ),
    Route(
        "GET",
        "/v1/incidents",
        list_incidents,
        "Incidents, newest first",
        IncidentsResponse,
        query=IncidentsParams,
        errors=(503,),
        tag="incidents",
        description="Open and acknowledged incidents; `all=true` adds pending and resolved ones. "
        "Failures that cleared before the threshold never become listed incidents.",
    ),
    Route(
        "GET",
        "/v1/incidents/{id}",
        get_incident,
        "An incident, its timeline and its notifications",
        IncidentDetail,
        path_model=IncidentPath,
        errors=(404, 503),
        tag="incidents",
    ),
    Route(
        "POST",
        "/v1/incidents/{id}/ack",
        acknowledge_incident,
        "Acknowledge an open incident",
        IncidentInfo,
        body=AckRequest,
        path_model=IncidentPath,
        errors=(404, 409, 503),
        tag="incidents",
        description="Reminders and escalation stop; with `expires_in` the acknowledgement "
        "lapses and the incident is open again. 409 for a pending or resolved incident.",
    ),
    Route(
        "POST",
        "/v1/incidents/{id}/resolve",
        resolve_incident,
        "Resolve an incident by hand",
        IncidentInfo,
        body=ResolveRequest,
        path_model=IncidentPath,
        errors=(404, 409, 503),
        tag="incidents",
        description="Resolved with resolution `manual` (a pending one is `cleared`); the "
        "comment is kept in its timeline. If the probe still fails, a new incident opens "
        "after the usual threshold. 409 for one already resolved.",
    ),
    Route(
        "GET",
        "/v1/silences",
        list_silences,
        "Silences, oldest first",
        SilencesResponse,
        query=SilencesParams,
        errors=(503,),
        tag="incidents",
    ),
    Route(
        "POST",
        "/v1/silences",
        create_silence,
        "Silence matching incidents for a while",
        SilenceInfo,
        body=SilenceRequest,
        errors=(503,),
        status=201,
        tag="incidents",
        description="Notices of matching incidents are suppressed (never their transitions) "
        "until the silence ends; an incident whose opening was suppressed is announced then.",
    ),
    Route(
        "DELETE",
        "/v1/silences/{id}",
        end_silence,
        "End a silence now",
        SilenceInfo,
        path_model=SilencePath,
        errors=(404, 409, 503),
        tag="incidents",
    ),
    *REPORT_ROUTES,
)
ROUTES = ROUTES + REMEDIATION_ROUTES
assert all(r.media_type == JSON or r.response is None for r in ROUTES)
