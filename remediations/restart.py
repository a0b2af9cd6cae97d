"""Restart a service: a systemd unit through `systemctl restart`, or a process.

For a unit the argv is `[systemctl, restart, UNIT]` (no shell). For a process, the
processes whose command line contains `process` are sent `signal`, given up to
`timeout` to exit (then killed), and `start` is run detached in its own session.
The plan names the unit or the processes found (pid and command line).

```yaml
remediations:
  - name: restart-shop-api
    kind: restart
    # A systemd unit to restart; or `process` (+ `start`) below.
    systemd_unit: shop-api.service
    # The systemctl program (e.g. with sudo: [sudo, -n, systemctl]).
    systemctl: [systemctl]
    # A substring of the command line of the processes to stop.
    process: null
    # The signal that asks them to stop.
    signal: TERM
    # The argv that starts the service again, run detached.
    start: null
    mode: auto
    max_attempts: 3 per 30m
```
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as signals
from typing import Literal

import psutil
from pydantic import Field, model_validator

from agent.probe_spec import RunContext
from remediations._base import ActionResult, Plan, RemediationSpec, Target
from remediations._process import run_argv


class RestartSpec(RemediationSpec):
    """A systemd unit or a process to restart."""

    kind: Literal["restart"]
    systemd_unit: str | None = Field(default=None, description="The systemd unit to restart.")
    systemctl: list[str] = Field(
        default_factory=lambda: ["systemctl"], min_length=1, description="The systemctl argv."
    )
    process: str | None = Field(
        default=None, description="Command-line substring of the processes."
    )
    signal: Literal["TERM", "INT", "HUP", "QUIT", "KILL"] = Field(
        default="TERM", description="The stop signal."
    )
    start: list[str] | None = Field(default=None, description="The argv that starts it again.")

    @model_validator(mode="after")
    def _one_way(self) -> RestartSpec:
        if (self.systemd_unit is None) == (self.process is None):
            raise ValueError("give exactly one of `systemd_unit` or `process`")
        if self.process is not None and not self.start:
            raise ValueError("restarting a `process` needs `start`")
        return self


def _matching(pattern: str) -> list[psutil.Process]:
    own = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if proc.pid != own and pattern in cmdline:
            found.append(proc)
    return found


async def plan(spec: RestartSpec, target: Target, ctx: RunContext) -> Plan:
    """What would be restarted; nothing is signalled."""
    if spec.systemd_unit is not None:
        argv = [*spec.systemctl, "restart", spec.systemd_unit]
        return Plan(
            spec.name, "restart", target.key, f"restart {spec.systemd_unit}", detail={"argv": argv}
        )
    assert spec.process is not None and spec.start is not None
    procs = await asyncio.to_thread(_matching, spec.process)
    listed = [{"pid": p.pid, "cmdline": " ".join(p.info.get("cmdline") or [])} for p in procs]
    return Plan(
        spec.name,
        "restart",
        target.key,
        f"signal {len(listed)} processes matching {spec.process!r} with SIG{spec.signal}, then start",
        detail={"processes": listed, "start": spec.start},
    )


async def run(spec: RestartSpec, plan: Plan, ctx: RunContext) -> ActionResult:
    """Restart the unit, or stop the processes and start the service again."""
    if spec.systemd_unit is not None:
        done = await run_argv(
            [*spec.systemctl, "restart", spec.systemd_unit],
            env={},
            cwd=ctx.base_dir,
            limit_s=spec.timeout.total_seconds(),
            max_output=4096,
        )
        if done.error is not None:
            return ActionResult(False, done.error, done.output, error=done.error)
        return ActionResult(True, f"restarted {spec.systemd_unit}", done.output)
    assert spec.process is not None and spec.start is not None
    procs = await asyncio.to_thread(_matching, spec.process)
    sig = signals.Signals[f"SIG{spec.signal}"]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
    _, alive = await asyncio.to_thread(psutil.wait_procs, procs, spec.timeout.total_seconds() / 2)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    try:
        started = await asyncio.create_subprocess_exec(
            *spec.start,
            cwd=ctx.base_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # the service outlives this call (and the agent)
        )
    except OSError as exc:
        return ActionResult(False, f"cannot start {spec.start[0]}: {exc}", error=str(exc))
    detail = f"stopped {len(procs)} processes ({len(alive)} killed), started pid {started.pid}"
    return ActionResult(True, detail)


SPEC = RestartSpec
