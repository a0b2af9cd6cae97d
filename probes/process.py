"""Count the processes matching a name or command line, with their memory and CPU.

Values: `count`, `rss_mb` (sum of resident memory), `cpu_percent` (sum, since the
previous run; a process seen for the first time counts 0). Fewer than `min_count`
matches is an error. The agent's own process never matches.

```yaml
probes:
  - name: shop-workers
    kind: process
    # A regular expression searched in the process name (as `ps -o comm` shows it,
    # untruncated); anchor it (^gunicorn$) for an exact match. Not set by default.
    process_name: null
    # A regular expression searched in the full command line, arguments joined by
    # spaces. At least one of process_name and cmdline must be given.
    cmdline: "gunicorn .*shop[.]wsgi"
    # The run fails when fewer processes than this match.
    min_count: 1
    every: 30s
    timeout: 5s
    expect: [count >= 4, rss_mb < 2048]
```
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Literal

import psutil
from pydantic import Field, field_validator, model_validator

from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation

_MB = 2**20


class ProcessSpec(ProbeSpec):
    """Which processes must be running, matched by name and/or command line."""

    kind: Literal["process"]
    # Not `name`: every probe's `name` is already its own unique name.
    process_name: str | None = Field(
        default=None, description="Regular expression searched in the process name."
    )
    cmdline: str | None = Field(
        default=None, description="Regular expression searched in the joined command line."
    )
    min_count: int = Field(default=1, ge=0, description="Fewer matches than this is an error.")

    @field_validator("process_name", "cmdline")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something_to_match(self) -> ProcessSpec:
        if self.process_name is None and self.cmdline is None:
            raise ValueError("give process_name, cmdline or both")
        return self


async def run(spec: ProcessSpec, ctx: RunContext) -> Observation:
    """Scan the process table in a thread and sum what the matches use."""
    # Process objects survive between runs in ctx.state: cpu_percent() measures the
    # time since that same object's previous call.
    known: dict[int, psutil.Process] = ctx.state.get(spec.name) or {}
    matches, rss, cpu = await asyncio.to_thread(_scan, spec, known)
    ctx.state[spec.name] = matches
    count = len(matches)
    values = {"count": count, "rss_mb": round(rss / _MB, 1), "cpu_percent": round(cpu, 1)}
    detail = f"{count} {_noun(count)}, {values['rss_mb']} MB RSS, {values['cpu_percent']}% CPU"
    error = None
    if count == 0 and spec.min_count > 0:
        error = f"no process matches {_criteria(spec)}"
    elif count < spec.min_count:
        verb = "matches" if count == 1 else "match"
        error = f"{count} {_noun(count)} {verb}, expected at least {spec.min_count}"
    return Observation(values=values, detail=detail, error=error)


def _scan(
    spec: ProcessSpec, known: dict[int, psutil.Process]
) -> tuple[dict[int, psutil.Process], int, float]:
    """Match every process; blocking (/proc reads), so it runs in a thread."""
    by_name = re.compile(spec.process_name) if spec.process_name is not None else None
    by_cmdline = re.compile(spec.cmdline) if spec.cmdline is not None else None
    me = os.getpid()
    matches: dict[int, psutil.Process] = {}
    rss, cpu = 0, 0.0
    for listed in psutil.process_iter(["name", "cmdline", "status"]):
        info = listed.info
        if listed.pid == me or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if by_name is not None and not by_name.search(info["name"] or ""):
            continue
        if by_cmdline is not None and not by_cmdline.search(" ".join(info["cmdline"] or ())):
            continue
        # psutil.process_iter shares its objects with every caller; our own object keeps
        # this probe's CPU baseline. Equality checks the start time, so a recycled pid
        # gets a fresh object.
        proc = known.get(listed.pid)
        try:
            if proc is None or proc != listed:
                proc = psutil.Process(listed.pid)
            with proc.oneshot():
                rss += proc.memory_info().rss
                cpu += proc.cpu_percent(interval=None)
        except psutil.NoSuchProcess:
            continue  # it exited while we looked: not running
        except psutil.AccessDenied:
            pass  # another user's process: it counts, its usage is unknown
        matches[listed.pid] = proc if proc is not None else listed
    return matches, rss, cpu


def _criteria(spec: ProcessSpec) -> str:
    parts = []
    if spec.process_name is not None:
        parts.append(f"name ~ {spec.process_name!r}")
    if spec.cmdline is not None:
        parts.append(f"cmdline ~ {spec.cmdline!r}")
    return " and ".join(parts)


def _noun(count: int) -> str:
    return "process" if count == 1 else "processes"


SPEC = ProcessSpec
