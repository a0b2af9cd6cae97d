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

from aiohttp import web

from agent import __version__
from agent.api.app import JSON, ApiError, Call, Reply, Route, is_public
from agent.api.app import ROUTES as ROUTES_KEY
from agent.api.config_view import redacted
from agent.api.models import (
    AgentInfo,
    ConfigResponse,
    DispatcherTotals,
    EventsParams,
    Health,
    HistoryParams,
    HistoryResponse,
    ProbeInfo,
    ProbesResponse,
    QueryRequest,
    QueryResponse,
    ReloadResponse,
    StatusResponse,
)
from agent.api.openapi import build_openapi
from agent.api.sql import QueryTimeout, json_safe, run_query
from agent.errors import ConfigError, StoreError
from agent.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agent.reload import ReloadUnavailable
from agent.results import ProbeResult, utcnow
from agent.selfcheck import SELF_KIND, SELF_PROBE
from agent.status import build_status

RUN_FLUSH_WAIT_S = 5.0  # how long `run` waits for its result to reach the disk


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
    )


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
    return web.Response(
        body=call.agent.metrics.render(),
        headers={"Content-Type": METRICS_CONTENT_TYPE},
    )


async def openapi(call: Call) -> web.Response:
    """The OpenAPI document, as seen under the config in force (which routes are public)."""
    routes = call.request.app[ROUTES_KEY]
    public: set[tuple[str, str]] = {(r.method, r.path) for r in routes if is_public(r, call.agent)}
    return web.json_response(build_openapi(routes, public=public))


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
)
assert all(r.media_type == JSON or r.response is None for r in ROUTES)
