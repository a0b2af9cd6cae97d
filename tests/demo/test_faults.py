"""The fault timeline: its shape, and the injector playing it against a real shop."""

from __future__ import annotations

import asyncio
import contextlib
import random

import httpx

from agent.demo import data
from agent.demo.faults import (
    DriftStock,
    FaultInjector,
    KillShop,
    SetFault,
    StartShop,
    Step,
    StrandPayments,
    default_timeline,
)
from agent.demo.process import ShopProcess


def test_default_timeline_starts_healthy_and_fits_a_round() -> None:
    steps = default_timeline(random.Random(1))
    faults = [s for s in steps if s.fault]

    assert min(s.at for s in steps) >= 15
    assert max(s.at for s in steps) < 90
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    kinds = {type(s.action).__name__ for s in faults}
    assert kinds == {"SetFault", "KillShop", "DriftStock", "StrandPayments"}
    # Every fault is undone before the round ends, so the next round starts healthy.
    last_fault = max(s.at for s in faults)
    cleanups = {type(s.action).__name__ for s in steps if not s.fault and s.at > last_fault}
    assert cleanups == {"RequeuePayments", "ResyncStock"}


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
