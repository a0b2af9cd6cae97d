"""The demo's fault injector: a timeline of steps that break the shop (the agent repairs it).

A timeline is a list of `Step(at, action, description)`; `at` is seconds from the
start of a round. Actions are small frozen dataclasses, applied by `apply()`:

    SetFault(slow_ms=700)        shop API slower than shop-api's 500 ms limit
    SetFault(health="degraded")  /health answers 200 but says "degraded"
    SetFault(errors=True)        public endpoints answer 500
    SetFault(reset=True)         back to a healthy API
    KillShop() / StartShop()     SIGKILL the shop process / start it unless it runs
    DriftStock(skus, delta)      shop.db and warehouse.db disagree for those SKUs
    StrandPayments(count)        payments stuck in 'pending' for 20 minutes
    RequeuePayments()            POST /admin/payments/requeue (what a repair would do)
    ResyncStock()                the shop's stock copied from the warehouse again
    ResetBreaker(name)           a human closes a remediation's open circuit breaker

The default round lasts 120 s: healthy for 15 s, then one fault after another. The
agent repairs the killed shop (`restart-shop`), the drifted stock (`resync-stock`)
and the stranded payments (`requeue-payments`) itself; the 500 errors it cannot fix
(`clear-shop-cache` is tried, found ineffective, and its breaker opens), so an
"on-call" step stops them and resets the breaker. The last steps are a safety net so
the next round starts healthy even if a repair did not happen: each reports what it
still found to do ("0 SKUs fixed" when the agent had done it). A failed injection (the
shop is down when we try to slow it) prints a warning; it never stops the demo.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import httpx

from agent.demo import data
from agent.demo.process import ShopProcess, ShopStartError

ROUND_SECONDS = 120.0


@dataclass(frozen=True)
class SetFault:
    """Change the shop's run-time behaviour through `POST /admin/fault`."""

    slow_ms: int | None = None
    health: Literal["ok", "degraded"] | None = None
    errors: bool | None = None
    reset: bool = False

    def payload(self) -> dict[str, Any]:
        """The JSON body for /admin/fault: only the fields that are set."""
        body: dict[str, Any] = {"reset": True} if self.reset else {}
        for key in ("slow_ms", "health", "errors"):
            if (value := getattr(self, key)) is not None:
                body[key] = value
        return body


@dataclass(frozen=True)
class KillShop:
    """SIGKILL the shop process, as a crash or the OOM killer would."""


@dataclass(frozen=True)
class StartShop:
    """Start the shop process again on the same port (unless one runs) and wait until it answers."""


@dataclass(frozen=True)
class DriftStock:
    """Change one side's stock for `skus` by `delta` units so the two sides disagree."""

    skus: tuple[str, ...]
    delta: int
    side: Literal["shop", "warehouse"] = "shop"


@dataclass(frozen=True)
class StrandPayments:
    """Insert `count` payments left in 'pending' since `age` ago."""

    count: int
    age: timedelta = timedelta(minutes=20)


@dataclass(frozen=True)
class RequeuePayments:
    """Ask the shop to settle payments stuck in 'pending'."""


@dataclass(frozen=True)
class ResyncStock:
    """Copy the warehouse's stock into the shop (the warehouse is the truth)."""


@dataclass(frozen=True)
class ResetBreaker:
    """Close the circuit breaker of remediation `name`, as `opsagent reset-breaker RUN` does."""

    name: str


Action = (
    SetFault
    | KillShop
    | StartShop
    | DriftStock
    | StrandPayments
    | RequeuePayments
    | ResyncStock
    | ResetBreaker
)
# How the injector reaches the agent for ResetBreaker: the remediation's name in, an
# outcome line out (the runner provides it; None: the step is reported as not applied).
BreakerReset = Callable[[str], Awaitable[str]]


@dataclass(frozen=True)
class Step:
    """One scheduled action; `fault` steps print `⚡ fault:`, the others `↺ demo:`."""

    at: float
    action: Action
    description: str
    fault: bool = True

    @property
    def line(self) -> str:
        """The line printed when the step runs."""
        return f"⚡ fault: {self.description}" if self.fault else f"↺ demo: {self.description}"


def default_timeline(rng: random.Random | None = None) -> list[Step]:
    """The 120-second round: healthy first, then each fault, then a safety-net clean-up."""
    rng = rng or random.Random()
    drifted = tuple(sorted(rng.sample([data.sku_name(i) for i in range(1, data.SKU_COUNT + 1)], 3)))
    return [
        Step(15, SetFault(slow_ms=700), "shop API slowed to 0.7 s (shop-api allows 500 ms)"),
        Step(25, SetFault(reset=True), "shop API speed back to normal", fault=False),
        Step(28, SetFault(health="degraded"), 'shop /health reports "degraded"'),
        Step(34, SetFault(reset=True), "shop /health reports ok again", fault=False),
        Step(38, KillShop(), "shop process killed (SIGKILL): the agent restarts it"),
        Step(
            55,
            DriftStock(drifted, delta=+5),
            f"stock drifted: shop inventory of {', '.join(drifted)} is 5 above the warehouse's",
        ),
        Step(70, StrandPayments(3), "3 payments stranded in 'pending' for 20 minutes"),
        Step(82, SetFault(errors=True), "shop API answers 500 (a bug no repair here can fix)"),
        Step(
            110,
            SetFault(reset=True),
            "on-call deployed a fix: shop API errors stopped",
            fault=False,
        ),
        Step(
            111, ResetBreaker("clear-shop-cache"), "on-call reset the circuit breaker", fault=False
        ),
        Step(114, StartShop(), "clean-up: shop process running", fault=False),
        Step(115, ResyncStock(), "clean-up: shop stock matches the warehouse", fault=False),
        Step(116, RequeuePayments(), "clean-up: no payment left stranded", fault=False),
    ]


@dataclass
class FaultInjector:
    """Plays a timeline against a shop; `run()` is cancelled to stop it."""

    shop: ShopProcess
    timeline: Sequence[Step]
    emit: Callable[[str], None] = print
    repeat: bool = True
    round_seconds: float = ROUND_SECONDS
    clock: Callable[[], float] = time.monotonic
    reset_breaker: BreakerReset | None = None
    applied: list[Step] = field(default_factory=list)

    async def run(self, start: float | None = None) -> None:
        """Apply each step at `start + at` (`start` defaults to now), round after round.

        Returns after one round unless `repeat`; the shop is left as the last step set
        it (the runner stops the shop anyway).
        """
        start = self.clock() if start is None else start
        steps = sorted(self.timeline, key=lambda s: s.at)
        if not steps:
            return
        while True:
            for step in steps:
                await asyncio.sleep(max(0.0, start + step.at - self.clock()))
                await self.play(step)
            if not self.repeat:
                return
            start += max(self.round_seconds, steps[-1].at)

    async def play(self, step: Step) -> None:
        """Apply one step and print its line, or a warning if it could not be applied."""
        try:
            outcome = await apply(step.action, self.shop, self.reset_breaker)
        except (
            httpx.HTTPError,
            ShopStartError,
            sqlite3.Error,
            OSError,
            ValueError,
            LookupError,
            RuntimeError,
        ) as exc:
            self.emit(f"⚠ demo: could not inject {step.description!r}: {exc or type(exc).__name__}")
            return
        self.applied.append(step)
        self.emit(step.line + (f" ({outcome})" if outcome else ""))


async def apply(
    action: Action, shop: ShopProcess, reset_breaker: BreakerReset | None = None
) -> str:
    """Apply one action to the shop; returns a short outcome, possibly empty.

    Raises httpx.HTTPError when the admin API is unreachable, ShopStartError when a
    restart fails, sqlite3/OSError or ValueError for file changes that failed, and
    LookupError/RuntimeError when a breaker cannot be reset.
    """
    match action:
        case SetFault():
            await _post(shop, "/admin/fault", action.payload())
            return ""
        case KillShop():
            await asyncio.to_thread(shop.kill)
            return ""
        case StartShop():
            if shop.running:
                return f"already running, pid {shop.pid}"
            shop.start()
            await shop.wait_ready()
            return f"pid {shop.pid}"
        case DriftStock():
            await asyncio.to_thread(
                data.drift_stock, shop.data_dir, action.skus, delta=action.delta, side=action.side
            )
            return ""
        case StrandPayments():
            ids = await asyncio.to_thread(
                data.strand_payments, shop.data_dir, action.count, age=action.age
            )
            return f"payment ids {', '.join(map(str, ids))}"
        case RequeuePayments():
            body = await _post(shop, "/admin/payments/requeue", {})
            return f"{body.get('requeued', 0)} settled"
        case ResyncStock():
            fixed = await asyncio.to_thread(data.resync_stock, shop.data_dir)
            return f"{fixed} SKUs fixed"
        case ResetBreaker():
            if reset_breaker is None:
                raise RuntimeError("no agent to reset a breaker in")
            return await reset_breaker(action.name)
    raise ValueError(f"unknown action {action!r}")


async def _post(shop: ShopProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=3.0) as client:
        response = await client.post(shop.base_url + path, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
