"""Request and response models of the remediation endpoints (`/v1/remediations...`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from agent.api.models import PathId, PathParams, QueryParams, RequestBody
from agent.api.models import _json_number as json_number
from agent.store_remediations import RunRow, StepRow
from remediations._base import RemediationSpec
from remediations.flow import Outcome
from remediations.guard import Guard

RUN_STATES = (
    "running, succeeded, failed, ineffective, refused, shadow, awaiting_approval, rejected, "
    "interrupted"
)


class RemediationInfo(BaseModel):
    """A configured remediation and the mode that applies to it."""

    name: str
    kind: str
    mode: str = Field(description="Its own mode.")
    effective_mode: str = Field(description="The stricter of its mode and the global guard's.")
    probes: list[str] = Field(description="Probes that request it when their incident opens.")
    description: str = ""

    @classmethod
    def of(cls, spec: RemediationSpec, guard: Guard, probes: list[str]) -> RemediationInfo:
        return cls(
            name=spec.name,
            kind=spec.kind,
            mode=spec.mode,
            effective_mode="off" if guard.kill_switch else guard.effective_mode(spec),
            probes=probes,
            description=spec.description,
        )


class RemediationsResponse(BaseModel):
    """`GET /v1/remediations`."""

    kill_switch: bool
    global_mode: str
    max_runs_per_hour: int
    remediations: list[RemediationInfo]


class RunInfo(BaseModel):
    """One remediation run: what was planned, what the guard said, what happened."""

    id: int = Field(description="Run id; 0 for a dry run (nothing was recorded).")
    remediation: str
    kind: str
    target: str
    incident_id: int | None
    actor: str
    state: str = Field(description=f"One of: {RUN_STATES}.")
    reason: str = Field(description="The guard's or the run's last word.")
    guard: str | None = Field(description="The guard that refused it, if one did.")
    plan: dict[str, Any]
    result: dict[str, Any] | None
    verified: bool | None = Field(description="Did the re-probe pass after the run?")
    undo_of: int | None
    undone_by: int | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: RunRow) -> RunInfo:
        return cls(**row.__dict__)

    @classmethod
    def dry(cls, outcome: Outcome, actor: str, incident_id: int | None) -> RunInfo:
        """A dry run's plan and decision, shaped like a run (id 0, nothing stored)."""
        plan = outcome.plan
        return cls(
            id=0,
            remediation=plan.remediation,
            kind=plan.kind,
            target=plan.target,
            incident_id=incident_id,
            actor=actor,
            state=f"dry_run:{outcome.state}",
            reason=outcome.decision.reason,
            guard=None if outcome.decision.allowed else outcome.decision.guard,
            plan=plan.to_json(),
            result=None,
            verified=None,
            undo_of=None,
            undone_by=None,
            created_at=None,
            started_at=None,
            finished_at=None,
        )


class StepInfo(BaseModel):
    """One audit line of a run."""

    at: datetime
    step: str
    actor: str
    detail: str

    @classmethod
    def of(cls, row: StepRow) -> StepInfo:
        return cls(at=row.happened_at, step=row.step, actor=row.actor, detail=row.detail)


class RunDetail(BaseModel):
    """A run with its audit trail."""

    run: RunInfo
    steps: list[StepInfo]


class RunsResponse(BaseModel):
    """`GET /v1/remediation-runs`."""

    runs: list[RunInfo]


class RunsParams(QueryParams):
    """Query string of `GET /v1/remediation-runs`."""

    state: str | None = Field(default=None, description=f"Only runs in this state ({RUN_STATES}).")
    incident: int | None = Field(default=None, ge=1, description="Only runs for this incident.")
    limit: int = Field(default=50, ge=1, le=1000, description="Most runs returned.")


class RunPath(PathParams):
    """`{id}` of `/v1/remediation-runs/{id}/...`."""

    id: PathId = Field(description="Run id (as `opsagent remediations` lists it).")


class RemediationPath(PathParams):
    """`{name}` of `/v1/remediations/{name}/run`."""

    name: str = Field(description="Remediation name.")


class RemediateRequest(RequestBody):
    """`POST /v1/remediations/{name}/run`: ask for a remediation by hand."""

    # Field before the validator, or the schema says `ge` instead of `minimum`.
    incident: Annotated[int, Field(strict=False, ge=1), BeforeValidator(json_number)] | None = (
        Field(default=None, description="The incident it repairs.")
    )
    probe: str | None = Field(
        default=None,
        min_length=1,
        description="Without `incident`: the probe whose open incident or latest evidence "
        "it acts on (default: the one probe that names this remediation).",
    )
    dry_run: bool = Field(default=False, description="Plan and ask the guard; record nothing.")
    actor: str | None = Field(
        default=None, min_length=1, max_length=200, description='Who asks (default "api").'
    )


class ActorRequest(RequestBody):
    """Who approves, rejects, undoes or resets."""

    actor: str | None = Field(
        default=None, min_length=1, max_length=200, description='Who acts (default "api").'
    )


class SlackAck(BaseModel):
    """What the agent answers Slack for a button press."""

    ok: bool
    text: str = Field(description="What was done with each press.")
