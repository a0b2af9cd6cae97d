"""The remediation endpoints: list, run by hand (or dry-run), approve, reject, undo, reset.

Every handler goes through the agent's `RemediationService`, so a request from the API
(and the CLI, which calls it) passes the same guard, lock and audit as automation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from agent import store_remediations as sql
from agent.api.app import ApiError, Call, Route
from agent.api.remediation_models import (
    ActorRequest,
    RemediateRequest,
    RemediationInfo,
    RemediationPath,
    RemediationsResponse,
    RunDetail,
    RunInfo,
    RunPath,
    RunsParams,
    RunsResponse,
    SlackAck,
    StepInfo,
)
from agent.errors import RemediationRefused, StoreError
from agent.remediation_service import RemediationNotFound, RemediationService

T = TypeVar("T")
API_ACTOR = "api"
TAG = "remediations"


def _service(call: Call) -> RemediationService:
    service = call.agent.remediations
    if service is None:
        raise StoreError("the agent is not running")
    return service


async def list_remediations(call: Call) -> RemediationsResponse:
    """The configured remediations and the global guard settings."""
    service = _service(call)
    config, guard = service.config, service.remediator.guard
    return RemediationsResponse(
        kill_switch=guard.kill_switch,
        global_mode=guard.mode,
        max_runs_per_hour=guard.max_runs_per_hour,
        remediations=[
            RemediationInfo.of(
                spec, guard, [p.name for p in config.probes if p.remediation == spec.name]
            )
            for spec in config.remediations
        ],
    )


async def list_runs(call: Call) -> RunsResponse:
    """Remediation runs, newest first."""
    params = call.query_as(RunsParams)
    rows = await call.agent.running_store().run(
        lambda c: sql.list_runs(
            c, limit=params.limit, state=params.state, incident_id=params.incident
        )
    )
    return RunsResponse(runs=[RunInfo.of(r) for r in rows])


async def get_run(call: Call) -> RunDetail:
    """One run and its audit steps."""
    return await _detail(call, call.path_as(RunPath).id)


async def remediate(call: Call) -> RunDetail:
    """Request a remediation by hand (or plan it with `dry_run`)."""
    name = call.path_as(RemediationPath).name
    request = call.body_as(RemediateRequest)
    actor = request.actor or API_ACTOR
    try:
        outcome, _ = await _service(call).remediate(
            name,
            actor=actor,
            incident_id=request.incident,
            probe=request.probe,
            dry_run=request.dry_run,
        )
    except RemediationNotFound as exc:
        raise ApiError(404, str(exc), field=exc.field) from None
    except RemediationRefused as exc:
        raise ApiError(409, str(exc), field="probe") from None
    if request.dry_run:
        redact = _service(call).remediator.redactor
        info = RunInfo.dry(outcome, actor, request.incident)
        info = RunInfo.model_validate_json(redact.redact(info.model_dump_json()))
        return RunDetail(run=info, steps=[])
    return await _detail(call, outcome.run_id)


async def approve(call: Call) -> RunDetail:
    """Approve a run awaiting approval: it runs now, through the guard, and is verified."""
    run_id, actor = call.path_as(RunPath).id, _actor(call)
    await _act(call, run_id, lambda s: s.approve(run_id, by=actor))
    return await _detail(call, run_id)


async def reject(call: Call) -> RunDetail:
    """Reject a run awaiting approval."""
    run_id, actor = call.path_as(RunPath).id, _actor(call)
    await _act(call, run_id, lambda s: s.reject(run_id, by=actor))
    return await _detail(call, run_id)


async def undo(call: Call) -> RunDetail:
    """Undo a succeeded run that recorded before-values; answers the undo run."""
    run_id, actor = call.path_as(RunPath).id, _actor(call)
    outcome = await _act(call, run_id, lambda s: s.undo(run_id, by=actor))
    return await _detail(call, outcome.run_id)


async def reset_breaker(call: Call) -> RunDetail:
    """Close the circuit breaker this run's target tripped."""
    run_id, actor = call.path_as(RunPath).id, _actor(call)
    await _act(call, run_id, lambda s: s.reset_breaker(run_id, by=actor))
    return await _detail(call, run_id)


def _actor(call: Call) -> str:
    return call.body_as(ActorRequest).actor or API_ACTOR


async def _act(call: Call, run_id: int, action: Callable[[RemediationService], Awaitable[T]]) -> T:
    service = _service(call)
    try:
        return await action(service)
    except RemediationNotFound as exc:
        raise ApiError(404, str(exc), field=exc.field) from None
    except RemediationRefused as exc:
        raise ApiError(409, str(exc), field="id") from None


async def _detail(call: Call, run_id: int) -> RunDetail:
    store = call.agent.running_store()
    row = await store.run(lambda c: sql.get_run(c, run_id))
    if row is None:
        raise ApiError(404, f"no remediation run #{run_id}", field="id")
    steps = await store.run(lambda c: sql.steps(c, run_id))
    return RunDetail(run=RunInfo.of(row), steps=[StepInfo.of(s) for s in steps])


async def slack_actions(call: Call) -> SlackAck:
    """Approve/Reject button presses from Slack (signed with the app's signing secret)."""
    from agent.notifiers._slack_actions import BadRequest, allowed, verified_actions
    from agent.notifiers.slack import SlackSpec

    specs = {
        spec.name: spec
        for spec in call.agent.config.notify
        if isinstance(spec, SlackSpec) and spec.signing_secret is not None
    }
    if not specs:
        raise ApiError(404, "no slack notifier has a signing_secret: buttons are off")
    secrets = {
        name: s.signing_secret.get_secret_value() for name, s in specs.items() if s.signing_secret
    }
    body = await call.request.read()
    try:
        signer, presses = verified_actions(body, call.request.headers, secrets)
    except BadRequest as exc:
        raise ApiError(401, str(exc)) from None
    service = _service(call)
    answered: list[str] = []
    for press in presses:
        if not allowed(press, specs[signer].allowed_users):
            # Audited: the refusal is logged and noted on the run's incident.
            await service.refuse_press(press.run_id, press.actor, "not in allowed_users")
            answered.append(f"run #{press.run_id}: {press.actor} may not approve or reject")
            continue
        # Slack wants an answer within 3 s; the run (and its verification) goes on after.
        service.spawn(
            service.approve(press.run_id, by=press.actor)
            if press.approve
            else service.reject(press.run_id, by=press.actor)
        )
        answered.append(f"run #{press.run_id}: {'approved' if press.approve else 'rejected'}")
    return SlackAck(ok=True, text="; ".join(answered) or "nothing to do")


_ERRORS = (404, 409, 503)

SLACK_ROUTE = Route(
    "POST",
    "/v1/slack/actions",
    slack_actions,
    "Slack button presses (Approve/Reject)",
    SlackAck,
    auth="public",
    errors=(401, 404, 503),
    tag=TAG,
    description="Slack's Interactivity request URL. No bearer token: the request must be "
    "signed with a slack notifier's `signing_secret` (401 otherwise), and the person "
    "pressing must be in that notifier's `allowed_users` (refused and audited otherwise). "
    "Answers at once; the approved run goes on in the agent.",
)

REMEDIATION_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/remediations",
        list_remediations,
        "Configured remediations and the global guard",
        RemediationsResponse,
        errors=(503,),
        tag=TAG,
    ),
    Route(
        "POST",
        "/v1/remediations/{name}/run",
        remediate,
        "Request a remediation by hand",
        RunDetail,
        body=RemediateRequest,
        path_model=RemediationPath,
        errors=_ERRORS,
        tag=TAG,
        description="Plans, passes the guard (mode, cooldown, attempts, back-off, breaker, "
        "blast radius, approval, per-target lock) and runs, exactly like automation; a run "
        "on an incident is verified by re-running its probe. `dry_run` plans and asks the "
        "guard without recording or running anything. A refusal is a stored run in state "
        "`refused` (200), not an error.",
    ),
    Route(
        "GET",
        "/v1/remediation-runs",
        list_runs,
        "Remediation runs, newest first",
        RunsResponse,
        query=RunsParams,
        errors=(503,),
        tag=TAG,
    ),
    Route(
        "GET",
        "/v1/remediation-runs/{id}",
        get_run,
        "A run and its audit trail",
        RunDetail,
        path_model=RunPath,
        errors=(404, 503),
        tag=TAG,
    ),
    Route(
        "POST",
        "/v1/remediation-runs/{id}/approve",
        approve,
        "Approve a run awaiting approval",
        RunDetail,
        body=ActorRequest,
        path_model=RunPath,
        errors=_ERRORS,
        tag=TAG,
        description="The run goes through the guard again (an expired approval is "
        "rejected), runs, and is verified. 409 when it is not awaiting approval.",
    ),
    Route(
        "POST",
        "/v1/remediation-runs/{id}/reject",
        reject,
        "Reject a run awaiting approval",
        RunDetail,
        body=ActorRequest,
        path_model=RunPath,
        errors=_ERRORS,
        tag=TAG,
    ),
    Route(
        "POST",
        "/v1/remediation-runs/{id}/undo",
        undo,
        "Undo a run (restore its before-values)",
        RunDetail,
        body=ActorRequest,
        path_model=RunPath,
        errors=_ERRORS,
        tag=TAG,
        description="For runs that recorded before-values (sql with capture, resync): plans "
        "the reverse and sends it through the same guard. Answers the undo run.",
    ),
    Route(
        "POST",
        "/v1/remediation-runs/{id}/reset-breaker",
        reset_breaker,
        "Reset the circuit breaker of a run's target",
        RunDetail,
        body=ActorRequest,
        path_model=RunPath,
        errors=_ERRORS,
        tag=TAG,
    ),
    SLACK_ROUTE,
)
