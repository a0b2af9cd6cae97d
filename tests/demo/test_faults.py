"""The fault timeline: its shape, and the injector playing it against a real shop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys

import httpx

from agent.demo import data
from agent.demo.faults import (
    ROUND_SECONDS,
    DriftStock,
    FaultInjector,
    KillShop,
    ResetBreaker,
    SetFault,
    StartShop,
    Step,
    StrandPayments,
    apply,
    default_timeline,
)
from agent.demo.process import ShopProcess

from .conftest import QUIET, eventually, shop_processes


def test_default_timeline_starts_healthy_and_leaves_repairs_to_the_agent() -> None:
    steps = default_timeline(random.Random(1))
    faults = [s for s in steps if s.fault]

    assert min(s.at for s in steps) >= 15
    assert max(s.at for s in steps) < ROUND_SECONDS
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    kinds = {type(s.action).__name__ for s in faults}
    assert kinds == {"SetFault", "KillShop", "DriftStock", "StrandPayments"}
    # Nothing the agent repairs is repaired by the demo while the agent is at it: the
    # only clean-ups come after the last fault, as a safety net for the next round.
    last_fault = max(s.at for s in faults)
    early = [s for s in steps if not s.fault and s.at < last_fault]
    assert {type(s.action).__name__ for s in early} == {"SetFault"}
    assert all(s.action == SetFault(reset=True) for s in early)
    cleanups = {type(s.action).__name__ for s in steps if not s.fault and s.at > last_fault}
    assert cleanups == {
        "SetFault",
        "ResetBreaker",
        "StartShop",
        "RequeuePayments",
        "ResyncStock",
    }
    # The 500 errors last long enough for three attempts with back-off (2 s, 4 s) after
    # the incident opens (three failed runs of shop-products, every 5 s).
    errors = next(s.at for s in faults if s.action == SetFault(errors=True))
    fixed = next(s.at for s in steps if s.at > errors and s.action == SetFault(reset=True))
    assert fixed - errors >= 25


def test_drifted_skus_are_named_in_the_line() -> None:
    (drift,) = [s for s in default_timeline(random.Random(3)) if isinstance(s.action, DriftStock)]
    assert isinstance(drift.action, DriftStock)
    assert len(set(drift.action.skus)) == 3
    assert all(sku in drift.line for sku in drift.action.skus)
    assert drift.line.startswith("⚡ fault: stock drifted")


def test_set_fault_payload_sends_only_what_is_set() -> None:
    assert SetFault(slow_ms=1500).payload() == {"slow_ms": 1500}
    assert SetFault(health="degraded").payload() == {"health": "degraded"}
    assert SetFault(reset=True).payload() == {"reset": True}


async def test_injector_plays_steps_in_order_and_survives_a_failed_step(
    quiet_shop: ShopProcess,
) -> None:
    lines: list[str] = []
    timeline = [
        Step(0.0, SetFault(errors=True), "API errors"),
        Step(0.1, KillShop(), "shop killed"),
        Step(0.2, SetFault(slow_ms=100), "slowed while dead"),  # cannot work: shop is down
        Step(0.3, StartShop(), "shop restarted", fault=False),
        Step(0.4, StrandPayments(2), "2 payments stranded"),
    ]
    injector = FaultInjector(quiet_shop, timeline, emit=lines.append, repeat=False)

    await injector.run()

    assert lines[0] == "⚡ fault: API errors"
    assert lines[1] == "⚡ fault: shop killed"
    assert lines[2].startswith("⚠ demo: could not inject 'slowed while dead'")
    assert lines[3] == f"↺ demo: shop restarted (pid {quiet_shop.pid})"
    assert lines[4].startswith("⚡ fault: 2 payments stranded (payment ids ")
    assert [s.description for s in injector.applied] == [
        "API errors",
        "shop killed",
        "shop restarted",
        "2 payments stranded",
    ]
    async with httpx.AsyncClient(trust_env=False) as client:
        health = await client.get(quiet_shop.base_url + "/health")
    assert health.status_code == 200  # a restarted shop forgets its injected faults
    assert data.backlog(quiet_shop.data_dir).stuck_payments == 2


async def test_injector_repeats_rounds(quiet_shop: ShopProcess) -> None:
    lines: list[str] = []
    injector = FaultInjector(
        quiet_shop,
        [Step(0.0, SetFault(health="degraded"), "degraded")],
        emit=lines.append,
        round_seconds=0.05,
    )
    task = asyncio.create_task(injector.run())
    await asyncio.sleep(0.5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(lines) >= 3
    assert set(lines) == {"⚡ fault: degraded"}


async def test_an_empty_timeline_returns_at_once(quiet_shop: ShopProcess) -> None:
    lines: list[str] = []
    async with asyncio.timeout(1):
        await FaultInjector(quiet_shop, [], emit=lines.append).run()
    assert lines == []


async def test_start_shop_leaves_a_running_shop_alone(quiet_shop: ShopProcess) -> None:
    pid = quiet_shop.pid
    assert await apply(StartShop(), quiet_shop) == f"already running, pid {pid}"
    assert len(shop_processes(quiet_shop.data_dir)) == 1


async def test_reset_breaker_needs_the_agent(quiet_shop: ShopProcess) -> None:
    lines: list[str] = []
    injector = FaultInjector(
        quiet_shop,
        [Step(0, ResetBreaker("x"), "reset", fault=False)],
        emit=lines.append,
        repeat=False,
    )
    await injector.run()
    assert lines == ["⚠ demo: could not inject 'reset': no agent to reset a breaker in"]

    async def reset(name: str) -> str:
        return f"opsagent reset-breaker 7 ({name})"

    injector = FaultInjector(
        quiet_shop,
        [Step(0, ResetBreaker("x"), "reset", fault=False)],
        emit=lines.append,
        repeat=False,
        reset_breaker=reset,
    )
    await injector.run()
    assert lines[-1] == "↺ demo: reset (opsagent reset-breaker 7 (x))"


async def test_a_shop_someone_else_started_is_killed_and_stopped_by_port(
    quiet_shop: ShopProcess,
) -> None:
    """What the agent's restart-shop does: a new shop on the port, not the demo's child."""
    quiet_shop.kill()
    assert not quiet_shop.running and quiet_shop.pid is None
    argv = [
        sys.executable, "-m", "agent.demo.shop",
        "--port", str(quiet_shop.port), "--data-dir", str(quiet_shop.data_dir),
        f"--parent-pid={os.getpid()}", *QUIET,
    ]  # fmt: skip
    other = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, start_new_session=True
    )
    await quiet_shop.wait_ready()
    assert quiet_shop.running and quiet_shop.pid == other.pid
    assert await apply(StartShop(), quiet_shop) == f"already running, pid {other.pid}"

    await apply(KillShop(), quiet_shop)  # the fault finds it by its command line
    assert await other.wait() == -signal.SIGKILL
    assert not quiet_shop.running

    other = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, start_new_session=True
    )
    await quiet_shop.wait_ready()
    quiet_shop.stop()  # what the runner does at the end: SIGTERM, a clean exit
    assert await other.wait() == 0
    assert shop_processes(quiet_shop.data_dir) == []


async def test_the_shop_exits_when_the_demo_pid_is_gone(quiet_shop: ShopProcess) -> None:
    """A shop started by the agent is not the demo's child: it watches the demo's pid."""
    quiet_shop.kill()
    demo = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    shop = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.demo.shop",
        "--port", str(quiet_shop.port), "--data-dir", str(quiet_shop.data_dir),
        f"--parent-pid={demo.pid}", *QUIET, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await quiet_shop.wait_ready()
    demo.kill()
    await demo.wait()
    async with asyncio.timeout(10):
        assert await shop.wait() == 0
    await eventually(lambda: not shop_processes(quiet_shop.data_dir))
