"""Run one probe safely: hard timeout, nothing escapes, expectations evaluated.

A probe can hang, raise or return garbage; none of that may reach the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from agent.durations import format_duration
from agent.probe_spec import ProbeSpec, RunContext
from agent.redaction import Redactor
from agent.results import Observation, ProbeResult, Status, utcnow
from probes import runner_for

log = logging.getLogger(__name__)


async def run_probe(
    spec: ProbeSpec,
    ctx: RunContext,
    *,
    redactor: Redactor | None = None,
    scheduled_at: datetime | None = None,
) -> ProbeResult:
    """Run `spec` once and return its result; never raises (except cancellation)."""
    redactor = redactor or Redactor()
    started_at = utcnow()
    t0 = time.perf_counter()
    status = Status.OK
    try:
        async with asyncio.timeout(spec.timeout.total_seconds()):
            observation = await runner_for(spec.kind)(spec, ctx)
        if not isinstance(observation, Observation):
            raise TypeError(f"probe returned {type(observation).__name__}, not Observation")
    except TimeoutError:
        observation = Observation(error=f"timed out after {format_duration(spec.timeout)}")
    except Exception as exc:  # a bug in a probe must not stop the scheduler
        status = Status.ERROR
        message = redactor.redact(f"{type(exc).__name__}: {exc}".strip())
        log.warning("probe %s raised %s", spec.name, message)
        observation = Observation(error=f"probe error: {message}")
    duration_ms = (time.perf_counter() - t0) * 1000

    failed: list[str] = []
    if observation.error is not None:
        if status is Status.OK:
            status = Status.FAIL
        detail = redactor.redact(observation.error)
    else:
        if spec.expect:
            names = namespace(observation)
            failed = [reason for e in spec.expect if (reason := e.check(names))]
        if failed:
            status = Status.FAIL
        detail = redactor.redact(observation.detail)
    return ProbeResult(
        probe=spec.name,
        kind=spec.kind,
        started_at=started_at,
        scheduled_at=scheduled_at,
        duration_ms=round(duration_ms, 3),
        status=status,
        latency_ms=observation.latency_ms,
        values=observation.values,
        detail=detail,
        error=redactor.redact(observation.error) if observation.error else None,
        failed=failed,
        evidence=observation.evidence,
    )


def namespace(observation: Observation) -> dict[str, Any]:
    """The names an expectation can read: the values, `latency_ms` and the `json` body."""
    names: dict[str, Any] = dict(observation.values)
    if observation.latency_ms is not None:
        names.setdefault("latency_ms", observation.latency_ms)
    if observation.body is not None:
        names["json"] = observation.body
    return names
