"""The dispatcher's schedule rules: fixed rate, no doubled runs, missed runs counted."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime

from agent.dispatcher import FIRE_TICK_S, Dispatcher
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


async def _never(_: ProbeSpec, __: datetime) -> None:
    raise AssertionError("no probe should run in this test")


async def test_first_runs_are_spread_over_the_interval() -> None:
    d = Dispatcher(_never, rng=random.Random(7))
    specs = [spec(f"p{i}", "10s", timeout="1s", jitter="1s") for i in range(400)]
    now = asyncio.get_running_loop().time()
    d.set_probes(specs)
    firsts = sorted(s.next_base - now for s in d.schedules.values())
    dues = [s.handle.when() - now for s in d.schedules.values() if s.handle]
    await d.stop(grace=0)
    # Not a burst within the first second: the slots cover the whole 10 s, evenly.
    assert 0 <= firsts[0] < 0.2 and 9.8 < firsts[-1] < 10.1
    per_second = [sum(1 for f in firsts if k <= f < k + 1) for k in range(10)]
    assert min(per_second) >= 20, per_second
    assert all(0 <= due < 11 for due in dues)  # plus at most the 1 s jitter


async def test_first_runs_of_long_intervals_come_within_a_minute() -> None:
    d = Dispatcher(_never, rng=random.Random(3))
    now = asyncio.get_running_loop().time()
    d.set_probes([spec(f"p{i}", "1h", timeout="1s", jitter="2s") for i in range(100)])
    firsts = [s.next_base - now for s in d.schedules.values()]
    await d.stop(grace=0)
    assert max(firsts) < 60 and max(firsts) > 50


async def test_a_probe_without_jitter_starts_at_once() -> None:
    d = Dispatcher(_never, rng=random.Random(3))
    now = asyncio.get_running_loop().time()
    d.set_probes([spec("exact", "1h", timeout="1s", jitter="0s")])
    state = d.schedules["exact"]
    assert state.handle is not None and state.handle.when() - now < 0.05
    await d.stop(grace=0)


async def test_a_reload_keeps_the_phase_unless_the_interval_changes() -> None:
    d = Dispatcher(_never, rng=random.Random(5))
    d.set_probes([spec("a", "30s", timeout="1s", jitter="1s"), spec("b", "30s", jitter="1s")])
    phase_a, phase_b = d.schedules["a"].next_base, d.schedules["b"].next_base
    d.set_probes([spec("a", "30s", timeout="2s", jitter="1s"), spec("b", "40s", jitter="1s")])
    assert d.schedules["a"].next_base == phase_a  # changed, same interval: same slot
    assert d.schedules["b"].next_base != phase_b  # a new interval: a new first slot
    assert d.schedules["a"].spec.timeout.total_seconds() == 2
    await d.stop(grace=0)


async def test_probes_due_at_the_same_moment_all_run_once() -> None:
    seen: list[str] = []

    async def execute(s: ProbeSpec, __: datetime) -> None:
        seen.append(s.name)

    d = Dispatcher(execute)
    d.set_probes([spec(f"p{i}", "1h", timeout="1s", jitter="0s") for i in range(50)])
    await asyncio.sleep(0.1)
    assert sorted(seen) == sorted(f"p{i}" for i in range(50))
    d.set_probes([spec("p0", "1h", timeout="1s", jitter="0s")])  # the other 49 go
    assert set(d.schedules) == {"p0"}
    assert await d.stop(grace=1) == 0


async def test_runs_due_within_one_tick_share_one_wake_up_and_start_at_most_a_tick_late() -> None:
    """100 probes spread over 200 ms wake the loop at most once a tick; each run is < a tick late."""
    lates: list[float] = []

    async def execute(_: ProbeSpec, scheduled_at: datetime) -> None:
        lates.append((datetime.now(scheduled_at.tzinfo) - scheduled_at).total_seconds())

    d = Dispatcher(execute, rng=random.Random(3))
    d.first_offset = lambda _spec: d._rng.uniform(0, 0.2)  # type: ignore[method-assign]
    wake_ups = 0
    on_timer = d._on_timer

    def counting(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal wake_ups
        wake_ups += 1
        on_timer(loop)

    d._on_timer = counting  # type: ignore[method-assign]
    d.set_probes([spec(f"p{i}", "10s") for i in range(100)])
    await asyncio.sleep(0.4)
    await d.stop(grace=1)
    assert len(lates) == 100
    assert wake_ups <= 0.2 / FIRE_TICK_S + 2, wake_ups
    assert all(late >= 0 for late in lates)
    # A tick late at most, plus what a busy CI machine adds to a timer (the median, then).
    assert sorted(lates)[len(lates) // 2] < FIRE_TICK_S + 0.005
