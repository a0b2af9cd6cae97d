"""Probe kinds: one module each, registered once in `KINDS`.

Every module holds a `<Kind>Spec(ProbeSpec)` with `kind: Literal["<module name>"]`,
an `async def run(spec, ctx) -> Observation` and `SPEC = <Kind>Spec`. To add a kind,
add its module and one entry below; the config's union of probe specs and the
runner's lookup are both built from this tuple. Modules starting with `_` are
helpers, not kinds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from types import ModuleType
from typing import cast, get_args

from agent.errors import ProbeError
from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation
from probes import command, host, http, process, reconcile, redis, sql, tcp, tls

KINDS: tuple[ModuleType, ...] = (command, host, http, process, reconcile, redis, sql, tcp, tls)

Runner = Callable[[ProbeSpec, RunContext], Awaitable[Observation]]


def kind_of(spec_type: type[ProbeSpec]) -> str:
    """The value of a spec class's `kind: Literal[...]` field."""
    (kind,) = get_args(spec_type.model_fields["kind"].annotation)
    return cast(str, kind)


def spec_types() -> tuple[type[ProbeSpec], ...]:
    """Every probe kind's spec class, in registry order."""
    return tuple(cast(type[ProbeSpec], module.SPEC) for module in KINDS)


# Each `run` takes its own spec type; the config's discriminated union guarantees a
# spec only ever reaches the runner of its kind, hence the cast.
_RUNNERS: dict[str, Runner] = {kind_of(module.SPEC): cast(Runner, module.run) for module in KINDS}
_PREPARERS: dict[str, Callable[[ProbeSpec, RunContext], None]] = {
    kind_of(module.SPEC): module.prepare for module in KINDS if hasattr(module, "prepare")
}


def prepare(specs: Iterable[ProbeSpec], ctx: RunContext) -> None:
    """Let each kind set up shared state before the first run (optional `prepare(spec, ctx)`).

    Runs outside any probe timeout, so one-time costs (an HTTP client's TLS context)
    never count against a run.
    """
    for spec in specs:
        hook = _PREPARERS.get(spec.kind)
        if hook is not None:
            hook(spec, ctx)


def runner_for(kind: str) -> Runner:
    """The `run` function of a probe kind; ProbeError for a kind that does not exist."""
    try:
        return _RUNNERS[kind]
    except KeyError:
        raise ProbeError(f"unknown probe kind {kind!r}") from None
