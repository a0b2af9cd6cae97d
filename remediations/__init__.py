"""Remediation kinds, registered once in `KINDS`, and the safety guard (`guard.py`).

Every kind module holds a `<Kind>Spec(RemediationSpec)` with `kind: Literal["<module
name>"]`, `async def plan(spec, target, ctx) -> Plan` (what would change, no side
effects), `async def run(spec, plan, ctx) -> ActionResult` and `SPEC = <Kind>Spec`.
To add a kind, add its module and one entry below. Modules starting with `_`, and
`guard` and `undo`, are not kinds.

A run is plan -> guard (`guard.Guard.check`, under `Guard.lock`) -> run -> verify
(the incident's probe, through the normal pipeline) -> audit (`agent/store_remediations`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import cast, get_args

from agent.errors import RemediationRefused
from agent.probe_spec import RunContext
from remediations import command, http, python, restart, resync, sql
from remediations._base import ActionResult, Plan, RemediationSpec, Target

KINDS: tuple[ModuleType, ...] = (command, http, python, restart, resync, sql)
NOT_KINDS = frozenset({"flow", "guard", "undo"})

Planner = Callable[[RemediationSpec, Target, RunContext], Awaitable[Plan]]
Runner = Callable[[RemediationSpec, Plan, RunContext], Awaitable[ActionResult]]


def kind_of(spec_type: type[RemediationSpec]) -> str:
    """The value of a spec class's `kind: Literal[...]` field."""
    (kind,) = get_args(spec_type.model_fields["kind"].annotation)
    return cast(str, kind)


def spec_types() -> tuple[type[RemediationSpec], ...]:
    """Every remediation kind's spec class, in registry order."""
    return tuple(cast(type[RemediationSpec], module.SPEC) for module in KINDS)


_BY_KIND: dict[str, ModuleType] = {kind_of(module.SPEC): module for module in KINDS}


def planner_for(kind: str) -> Planner:
    """The `plan` function of a kind; RemediationRefused for a kind that does not exist."""
    return cast(Planner, _module(kind).plan)


def runner_for(kind: str) -> Runner:
    """The `run` function of a kind; RemediationRefused for a kind that does not exist."""
    return cast(Runner, _module(kind).run)


def _module(kind: str) -> ModuleType:
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise RemediationRefused(f"unknown remediation kind {kind!r}") from None
