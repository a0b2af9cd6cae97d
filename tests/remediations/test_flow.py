"""The whole flow on a real store: plan -> guard -> run -> record, and what the audit shows."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent import store_remediations as sql
from agent.probe_spec import RunContext
from agent.redaction import Redactor
from agent.store import Store
from remediations._base import Target
from remediations.command import CommandSpec
from remediations.flow import Remediator
from remediations.guard import Guard
from remediations.python import PythonSpec
from remediations.resync import ResyncSpec
from tests.remediations.conftest import DRIFTED, Shop

SECRET = "hunter2-very-secret"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store.open(tmp_path / "s.duckdb")
    await opened.start()
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def flow(store: Store, ctx: RunContext, clock: Clock, **guard: Any) -> Remediator:
    return Remediator(store, Guard(**guard), ctx, Redactor([SECRET]), clock)


def counter(tmp_path: Path, **fields: Any) -> CommandSpec:
    """A command that appends a line to a file (so runs can be counted) after a short sleep."""
    script = f"import time; time.sleep(0.2); open({str(tmp_path / 'ran')!r}, 'a').write('x\\n')"
    return CommandSpec.model_validate(
        {"name": "fix", "kind": "command", "argv": [sys.executable, "-c", script], "mode": "auto",
         "cooldown": "0s", "backoff": "10s", "max_attempts": "10 per 1h", "breaker_after": 3, **fields}
    )  # fmt: skip


def runs_on_disk(tmp_path: Path) -> int:
    path = tmp_path / "ran"
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_two_concurrent_requests_on_one_target_run_once(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    remediator = flow(store, RunContext(base_dir=tmp_path), clock)
    spec = counter(tmp_path, cooldown="10m")
    incident, manual = await asyncio.gather(
        remediator.request(spec, Target("api", incident_id=1), actor="auto"),
        remediator.request(spec, Target("api"), actor="cli:alice"),
    )
    assert sorted([incident.state, manual.state]) == ["refused", "succeeded"]
    assert runs_on_disk(tmp_path) == 1
    # A second flow (another entry path) sees the first run in the store: the cooldown holds.
    again = await flow(store, RunContext(base_dir=tmp_path), clock).request(
        spec, Target("api"), actor="slack:U1"
    )
    assert (again.state, again.decision.guard) == ("refused", "cooldown")
    assert runs_on_disk(tmp_path) == 1


async def test_ineffective_repairs_back_off_then_the_breaker_opens(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    remediator = flow(store, RunContext(base_dir=tmp_path), clock)
    spec = counter(tmp_path)
    opened = []
    for attempt in range(3):
        outcome = await remediator.request(spec, Target("api"), actor="auto")
        assert outcome.state == "succeeded", outcome.decision
        opened.append(await remediator.verified(spec, outcome.run_id, passed=False))
        refused = await remediator.request(spec, Target("api"), actor="auto")
        expected = "breaker" if attempt == 2 else "backoff"
        assert (refused.state, refused.decision.guard) == ("refused", expected)
        clock.advance(10 * 2**attempt + 1)  # back-off doubles: 10s, 20s, 40s
    assert opened == [False, False, True]
    for _ in range(3):
        clock.advance(3600)
        assert (
            await remediator.request(spec, Target("api"), actor="auto")
        ).decision.guard == "breaker"
    assert runs_on_disk(tmp_path) == 3  # no further attempt ran
    await remediator.reset_breaker(spec, outcome.run_id, by="alice")
    assert (await remediator.request(spec, Target("api"), actor="auto")).state == "succeeded"


async def test_approval_waits_runs_after_approve_and_expires(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    remediator = flow(store, RunContext(base_dir=tmp_path), clock)
    spec = counter(tmp_path, mode="approval", approval_expiry="15m")
    waiting = await remediator.request(spec, Target("api"), actor="auto")
    assert waiting.state == "awaiting_approval" and runs_on_disk(tmp_path) == 0
    clock.advance(60)
    done = await remediator.answer(spec, waiting.run_id, by="alice", approved=True)
    assert done.state == "succeeded" and runs_on_disk(tmp_path) == 1
    late = await remediator.request(spec, Target("db"), actor="auto")
    clock.advance(16 * 60)
    expired = await remediator.answer(spec, late.run_id, by="bob", approved=True)
    assert expired.state == "rejected" and "expiry" in expired.decision.reason
    assert runs_on_disk(tmp_path) == 1
    steps = [s.step for s in await store.run(lambda c: sql.steps(c, waiting.run_id))]
    assert steps == ["planned", "awaiting_approval", "approved", "executed"]


async def test_a_crash_mid_run_is_marked_interrupted_and_not_rerun(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    spec = counter(tmp_path)
    run_id = await store.run(
        lambda c: sql.create_run(
            c, remediation="fix", kind="command", target="api", incident_id=1, actor="auto",
            state="running", reason="", guard=None, plan={"summary": "x"}, now=clock(),
            redactor=Redactor(),
        ),
        write=True,
    )  # fmt: skip
    remediator = flow(store, RunContext(base_dir=tmp_path), clock)
    assert await remediator.interrupted() == [run_id]
    row = await store.run(lambda c: sql.get_run(c, run_id))
    assert row is not None and row.state == "interrupted"
    refused = await remediator.request(spec, Target("api"), actor="auto")
    assert refused.decision.guard == "backoff" and runs_on_disk(tmp_path) == 0


def leaky(ctx: Any) -> None:
    raise RuntimeError(f"could not connect with password={SECRET} to postgresql://u:{SECRET}@db/x")


async def test_no_secret_reaches_the_store(store: Store, clock: Clock, tmp_path: Path) -> None:
    remediator = flow(store, RunContext(base_dir=tmp_path), clock)
    echo = CommandSpec.model_validate(
        {"name": "echo", "kind": "command", "mode": "auto", "env": {"TOKEN": SECRET},
         "argv": [sys.executable, "-c", f"import os; print(os.environ['TOKEN'], {SECRET!r})"]}
    )  # fmt: skip
    assert (await remediator.request(echo, Target("a"), actor="auto")).state == "succeeded"
    python = PythonSpec.model_validate(
        {"name": "py", "kind": "python", "mode": "auto", "entry": f"{__name__}:leaky"}
    )
    assert (await remediator.request(python, Target("b"), actor="auto")).state == "failed"
    shadow = CommandSpec.model_validate(
        {"name": "shadowed", "kind": "command", "mode": "shadow", "argv": ["echo", SECRET]}
    )
    assert (await remediator.request(shadow, Target("c"), actor="auto")).state == "shadow"

    def everything(con: Any) -> str:
        runs = con.execute("SELECT * FROM remediation_runs").fetchall()
        steps = con.execute("SELECT * FROM remediation_steps").fetchall()
        return repr(runs) + repr(steps)

    stored = await store.run(everything)
    assert "***" in stored and SECRET not in stored


async def test_resync_shadow_refusal_run_and_undo_through_the_flow(
    shop: Shop, store: Store, clock: Clock
) -> None:
    broken = await shop.inventory()
    remediator = flow(store, shop.ctx, clock)
    base = {"name": "resync-stock", "kind": "resync", "table": "inventory", "cooldown": "0s"}

    shadow = await remediator.request(
        ResyncSpec.model_validate({**base, "mode": "shadow"}), await shop.target(), actor="auto"
    )
    assert shadow.state == "shadow" and len(shadow.plan.changes) == 3
    too_many = await remediator.request(
        ResyncSpec.model_validate({**base, "mode": "auto", "max_rows": 2}),
        await shop.target(),
        actor="auto",
    )
    assert (too_many.state, too_many.decision.guard) == ("refused", "max_rows")
    assert await shop.inventory() == broken  # neither changed anything

    spec = ResyncSpec.model_validate({**base, "mode": "auto"})
    fixed = await remediator.request(spec, await shop.target(), actor="auto")
    assert fixed.state == "succeeded", fixed.result
    assert (await shop.observe()).values["mismatched"] == 0
    assert not await remediator.verified(spec, fixed.run_id, passed=True)
    row = await store.run(lambda c: sql.get_run(c, fixed.run_id))
    assert row is not None and row.verified is True
    assert {c["key"]["sku"]: c["before"]["available"] for c in row.plan["changes"]} == DRIFTED

    undone = await remediator.undo(spec, fixed.run_id, actor="cli:alice")
    assert undone.state == "succeeded", undone.result
    assert await shop.inventory() == broken  # the before-values, exactly
    row = await store.run(lambda c: sql.get_run(c, fixed.run_id))
    assert row is not None and row.undone_by == undone.run_id
