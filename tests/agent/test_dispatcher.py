"""The dispatcher's schedule rules: fixed rate, no doubled runs, missed runs counted."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime

from agent.dispatcher import Dispatcher
from agent.probe_spec import ProbeSpec
from probes.tcp import TcpSpec


def spec(name: str, every: str, timeout: str = "50ms", jitter: str = "0s") -> ProbeSpec:
    return TcpSpec.model_validate(
        {
            "name": name,
            "kind": "tcp",
            "port": 1,
            "every": every,
            "timeout": timeout,
            "jitter": jitter,
        }
    )


async def test_runs_on_a_fixed_rate_without_drift() -> None:
    starts: list[float] = []

    async def execute(_: ProbeSpec, __: datetime) -> None:
        starts.append(time.monotonic())
        await asyncio.sleep(0.03)  # work inside the interval must not push the schedule

    d = Dispatcher(execute, rng=random.Random(1))
    d.set_probes([spec("p", "100ms")])
    await asyncio.sleep(1.05)
    await d.stop(grace=1)
    assert 9 <= len(starts) <= 12
    span = starts[-1] - starts[0]
    assert abs(span - 0.1 * (len(starts) - 1)) < 0.08, starts


async def test_a_run_still_in_flight_is_not_doubled_but_counted() -> None:
    running = 0
    most = 0

    async def execute(_: ProbeSpec, __: datetime) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.35)
        running -= 1

    d = Dispatcher(execute)
    d.set_probes([spec("slow", "100ms")])
    await asyncio.sleep(1.0)
    await d.stop(grace=1)
    state = d.schedules["slow"]
    assert most == 1
    assert state.overlaps >= 4
    assert state.runs + state.overlaps >= 9


async def test_a_blocked_loop_counts_missed_runs_and_coalesces() -> None:
    runs: list[float] = []

    async def execute(_: ProbeSpec, __: datetime) -> None:
        runs.append(time.monotonic())

    d = Dispatcher(execute)
    d.set_probes([spec("p", "100ms")])
    await asyncio.sleep(0.25)
    time.sleep(1.0)  # noqa: ASYNC251 -- block the loop, as a suspended machine would
    before = len(runs)
    await asyncio.sleep(0.05)
    await d.stop(grace=1)
    assert d.schedules["p"].missed >= 7
    assert len(runs) - before <= 2  # one catch-up run, not ten


async def test_set_probes_adds_removes_and_keeps_counters() -> None:
    seen: list[str] = []

    async def execute(s: ProbeSpec, __: datetime) -> None:
        seen.append(s.name)

    d = Dispatcher(execute)
    d.set_probes([spec("a", "100ms"), spec("b", "100ms")])
    await asyncio.sleep(0.35)
    runs_a = d.schedules["a"].runs
    d.set_probes([spec("a", "100ms"), spec("c", "100ms")])
    seen.clear()
    await asyncio.sleep(0.35)
    await d.stop(grace=1)
    assert "b" not in seen and "c" in seen and "a" in seen
    assert d.schedules["a"].runs > runs_a
    assert "b" not in d.schedules


async def test_stop_waits_for_runs_in_flight_then_cuts_the_rest() -> None:
    finished: list[str] = []

    async def execute(s: ProbeSpec, __: datetime) -> None:
        await asyncio.sleep(0.2 if s.name == "quick" else 30)
        finished.append(s.name)

    d = Dispatcher(execute)
    d.set_probes([spec("quick", "1m", jitter="0s"), spec("stuck", "1m", jitter="0s")])
    await asyncio.sleep(0.05)
    cut = await d.stop(grace=0.5)
    assert finished == ["quick"]
    assert cut == 1
