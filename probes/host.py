"""Read this machine's CPU, memory, swap, load and disk usage.

Values are nested so expectations read naturally: `cpu.percent`, `memory.percent`,
`memory.available_mb`, `swap.percent`, `load.avg1` / `avg5` / `avg15`, and per mount
point `disk.percent["/"]` and `disk.free_gb["/"]`.

```yaml
probes:
  - name: this-host
    kind: host
    # Mount points whose disk usage is reported, e.g. ["/", /var/lib/postgresql].
    # The default (null) is every physical partition, without pseudo file systems.
    mounts: null
    every: 30s
    timeout: 5s
    expect: [cpu.percent < 95, memory.percent < 90, 'disk.percent["/"] < 90']
```
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

import psutil
from pydantic import Field

from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation

_FIRST_SAMPLE_S = 0.1  # on the first run, CPU use is measured over this interval
_MB, _GB = 2**20, 2**30


class HostSpec(ProbeSpec):
    """Resource usage of the machine the agent runs on."""

    kind: Literal["host"]
    mounts: list[str] | None = Field(
        default=None,
        description="Mount points to report disk usage for; default: every physical partition.",
    )


async def run(spec: HostSpec, ctx: RunContext) -> Observation:
    """Sample every resource in a worker thread (disk calls can block on a bad mount)."""
    # CPU % is a difference between two readings of the CPU times. The previous reading
    # is kept per probe in ctx.state rather than in psutil.cpu_percent()'s one global
    # baseline, which any other caller in the process would silently reset.
    previous = ctx.state.get(spec.name)
    if previous is None:
        previous = await asyncio.to_thread(psutil.cpu_times)
        await asyncio.sleep(_FIRST_SAMPLE_S)  # so the first run is never a meaningless 0
    values, errors, current = await asyncio.to_thread(_sample, spec.mounts)
    ctx.state[spec.name] = current
    values["cpu"] = {"percent": _busy_percent(previous, current)}
    memory = values["memory"]
    detail = (
        f"cpu {values['cpu']['percent']:.0f}%, memory {memory['percent']:.0f}%, "
        f"load {values['load']['avg1']:.2f}"
    )
    return Observation(values=values, detail=detail, error="; ".join(errors) or None)


def _sample(mounts: list[str] | None) -> tuple[dict[str, Any], list[str], Any]:
    """Read everything but CPU %; blocking, so it runs in a thread."""
    cpu = psutil.cpu_times()
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    load = os.getloadavg()
    if mounts is None:
        mounts = sorted({p.mountpoint for p in psutil.disk_partitions(all=False)})
    percent: dict[str, float] = {}
    free_gb: dict[str, float] = {}
    errors: list[str] = []
    for mount in mounts:
        try:
            usage = psutil.disk_usage(mount)
        except OSError as exc:  # a missing or unreadable mount is worth an alert
            errors.append(f"disk usage of {mount} unreadable: {exc.strerror or exc}")
            continue
        percent[mount] = usage.percent
        free_gb[mount] = round(usage.free / _GB, 3)
    values: dict[str, Any] = {
        "memory": {
            "percent": memory.percent,
            "available_mb": round(memory.available / _MB, 1),
        },
        "swap": {"percent": swap.percent},
        "load": {"avg1": load[0], "avg5": load[1], "avg15": load[2]},
        "disk": {"percent": percent, "free_gb": free_gb},
    }
    return values, errors, cpu


def _busy_percent(before: Any, after: Any) -> float:
    """CPU busy % between two `psutil.cpu_times()` readings, as psutil computes it."""

    def total(times: Any) -> float:
        # Guest time is already counted in user/nice on Linux; psutil subtracts it too.
        return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)

    def idle(times: Any) -> float:
        return float(times.idle + getattr(times, "iowait", 0.0))

    elapsed = total(after) - total(before)
    if elapsed <= 0:
        return 0.0
    busy = elapsed - (idle(after) - idle(before))
    return round(min(100.0, max(0.0, busy / elapsed * 100)), 1)


SPEC = HostSpec
