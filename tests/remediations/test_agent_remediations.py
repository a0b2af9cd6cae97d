"""Remediations in the running agent: incident -> plan -> guard -> run -> verify -> resolve.

Real PostgreSQL and MariaDB for the resync, a real aiohttp server for the shop's
endpoint, real child processes for command remediations. Timings are loose on purpose:
tests wait for states, never for durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest
from aiohttp import web

from agent.cli import main
from agent.daemon import Agent
from agent.store import Store
from tests.remediations.conftest import DRIFTED, Shop
from tests.running_agent import StartAgent, wait_until

SECRET = "s3cr3t-pg-password-7781"


@dataclass
class Endpoint:
    """The shop's health endpoint and its admin endpoints (a real local server)."""

    base: str = ""
    healthy: bool = False
    fixes: int = 0
    fix_works: bool = True
    fix_delay: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    state = Endpoint()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": state.healthy}, status=200 if state.healthy else 503)

    async def fix(_: web.Request) -> web.Response:
        state.fixes += 1
        await asyncio.sleep(state.fix_delay)
        if state.fix_works:
            state.healthy = True
        return web.json_response({"fixed": state.fix_works})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/admin/fix", fix)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


def health_probe(endpoint: Endpoint, remediation: str, *, every: str = "500ms") -> str:
    """The shop's health probe (200 expected), naming `remediation`."""
    return (
        f'  - {{name: shop-api, kind: http, url: "{endpoint.base}/health", every: {every}, '
        f"expect: [status == 200], remediation: {remediation}}}"
    )


def fix_shop(endpoint: Endpoint, fields: str) -> str:
    """`fix-shop`: POST the shop's /admin/fix (which heals it), with extra `fields`."""
    return (
        f'  - {{name: fix-shop, kind: http, method: POST, url: "{endpoint.base}/admin/fix", '
        f"{fields}}}"
    )


def config_text(probes: str, remediations: str, *, extra: str = "", notify: str = "") -> str:
    return f"""
agent: {{data_dir: ./var, api: {{listen: "127.0.0.1:0"}}}}
incidents: {{failures: 1, successes: 1, tick_every: 200ms{notify}}}
probes:
{probes}
remediations:
{remediations}
{extra}
"""


async def rows(agent: Agent, query: str, *args: Any) -> list[tuple[Any, ...]]:
    store = agent.running_store()
    return await store.run(lambda c: c.execute(query, list(args)).fetchall())


async def incident_states(agent: Agent) -> list[tuple[Any, ...]]:
    return await rows(agent, "SELECT id, state, resolution FROM incidents ORDER BY id")


async def runs(agent: Agent) -> list[tuple[Any, ...]]:
    return await rows(
        agent,
        "SELECT id, remediation, state, guard, verified, incident_id FROM remediation_runs "
        "ORDER BY id",
    )


async def events(agent: Agent, event: str) -> list[tuple[Any, ...]]:
    return await rows(
        agent,
        "SELECT incident_id, actor, reason FROM incident_events WHERE event = ? ORDER BY id",
        event,
    )


def source_yaml(shop: Shop) -> str:
    return json.dumps(shop.db.source.model_dump(mode="json", exclude_none=True))


def reconcile_probe(remediation: str = "resync-stock") -> str:
    return f"""
  - name: stock-drift
    kind: reconcile
    every: 1s
    timeout: 900ms
    left: {{source: warehouse, query: "SELECT sku, on_hand - reserved AS available FROM stock"}}
    right: {{source: shop, query: "SELECT sku, available FROM inventory"}}
    key: [sku]
    compare: [available]
    truth: left
    mode: full
    expect: [mismatched == 0]
    remediation: {remediation}
"""


async def test_drift_is_resynced_exactly_verified_resolved_and_undone(
    shop: Shop, start_agent: StartAgent
) -> None:
    before = await shop.inventory()
    sources = f"sources: {{warehouse: {source_yaml(shop)}, shop: {source_yaml(shop)}}}"
    running = await start_agent(
        config_text(
            reconcile_probe(),
            # cooldown 1h: after the undo below brings the drift back, automation waits.
            "  - {name: resync-stock, kind: resync, mode: auto, cooldown: 1h, verify_after: 0s}",
            extra=sources,
        )
    )
    agent = running.agent

    async def resolved() -> bool:
        return any(r[1] == "resolved" for r in await incident_states(agent))

    await wait_until(resolved, within=30)
    [(incident_id, state, resolution)] = (await incident_states(agent))[:1]
    assert (state, resolution) == ("resolved", "auto-remediated")
    [run] = await runs(agent)
    assert run[1:] == ("resync-stock", "succeeded", None, True, incident_id)

    after = await shop.inventory()
    stock = {
        sku: on_hand - reserved
        for sku, on_hand, reserved in (
            await shop.ctx.connector("warehouse").fetch(  # type: ignore[union-attr]
                "SELECT sku, on_hand, reserved FROM stock ORDER BY sku"
            )
        ).rows
    }
    for old, new in zip(before, after, strict=True):
        if old[0] in DRIFTED:
            assert new == (old[0], stock[old[0]], old[2], old[3])  # only `available` changed
        else:
            assert new == old  # every other row byte-identical
    assert after != before

    undo = await agent.remediations.undo(run[0], by="test")  # type: ignore[union-attr]
    assert undo.state == "succeeded"
    assert await shop.inventory() == before  # the before-values, exactly
    [(undone_by,)] = await rows(
        agent, "SELECT undone_by FROM remediation_runs WHERE id = ?", run[0]
    )
    assert undone_by == undo.run_id


async def test_ineffective_fix_backs_off_opens_the_breaker_and_escalates(
    endpoint: Endpoint, start_agent: StartAgent, tmp_path: Path
) -> None:
    marker = tmp_path / "attempts"
    script = f"open({str(marker)!r}, 'a').write('x\\n')"
    running = await start_agent(
        config_text(
            health_probe(endpoint, "restart-shop", every="200ms"),
            f"  - {{name: restart-shop, kind: command, argv: [{sys.executable!r}, -c, {script!r}], "
            'mode: auto, cooldown: 0s, backoff: 200ms, breaker_after: 3, max_attempts: "10 per 1h", '
            "verify_after: 0s}",
        )
    )
    agent = running.agent

    async def escalated() -> bool:
        return bool(await events(agent, "escalated"))

    await wait_until(escalated, within=30)
    await asyncio.sleep(1.5)  # time for a fourth attempt, were there one
    assert marker.read_text().count("x") == 3
    assert [(r[2], r[4]) for r in await runs(agent)] == [("ineffective", False)] * 3
    [(_, actor, reason)] = await events(agent, "escalated")
    assert actor == "remediation"
    assert "restart-shop did not fix it: its circuit breaker opened" in reason
    steps = await rows(agent, "SELECT step FROM remediation_steps WHERE step = 'breaker_opened'")
    assert len(steps) == 1
    # Back-off: the gaps between attempts grow (200 ms, then 400 ms at least).
    started = [
        r[0] for r in await rows(agent, "SELECT started_at FROM remediation_runs ORDER BY id")
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(started)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4


async def test_approval_mode_waits_then_runs_after_approve(
    endpoint: Endpoint, start_agent: StartAgent
) -> None:
    running = await start_agent(
        config_text(
            health_probe(endpoint, "fix-shop"),
            fix_shop(endpoint, "mode: approval, verify_after: 0s"),
        )
    )
    agent = running.agent

    async def waiting() -> bool:
        return any(r[2] == "awaiting_approval" for r in await runs(agent))

    await wait_until(waiting, within=20)
    await asyncio.sleep(0.5)
    assert endpoint.fixes == 0  # nothing runs before a human says so
    exposition = (await running.client.get("/metrics")).text
    assert 'opsagent_remediation_runs{state="awaiting_approval"} 1.0' in exposition
    assert 'opsagent_remediation_runs{state="succeeded"} 0.0' in exposition
    assert "opsagent_remediation_kill_switch 0.0" in exposition
    [run] = await runs(agent)
    response = await running.client.post(
        f"/v1/remediation-runs/{run[0]}/approve", json={"actor": "alice"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["run"]["state"], body["run"]["verified"]) == ("succeeded", True)
    assert endpoint.fixes == 1
    [(_, state, resolution)] = await incident_states(agent)
    assert (state, resolution) == ("resolved", "auto-remediated")
    actors = await rows(
        agent, "SELECT step, actor FROM remediation_steps WHERE run_id = ? ORDER BY id", run[0]
    )
    assert ("approved", "alice") in actors
    unknown = await running.client.post("/v1/remediations/nope/run", json={})
    assert (unknown.status_code, unknown.json()["field"]) == (404, "name")
    gone = await running.client.post("/v1/remediations/fix-shop/run", json={"incident": 999})
    assert (gone.status_code, gone.json()["field"]) == (404, "incident")
    assert gone.json()["error"] == "no active incident #999"


async def test_unanswered_approval_expires_as_rejected(
    endpoint: Endpoint, start_agent: StartAgent
) -> None:
    running = await start_agent(
        config_text(
            health_probe(endpoint, "fix-shop"),
            fix_shop(endpoint, "mode: approval, approval_expiry: 300ms"),
        )
    )
    agent = running.agent
    service = agent.remediations
    assert service is not None

    async def waiting() -> bool:
        return any(r[2] == "awaiting_approval" for r in await runs(agent))

    await wait_until(waiting, within=20)
    await asyncio.sleep(0.4)
    [run_id] = await service.expire_approvals()
    [run] = await runs(agent)
    assert (run[0], run[2]) == (run_id, "rejected")
    [(reason,)] = await rows(agent, "SELECT reason FROM remediation_runs WHERE id = ?", run_id)
    assert reason == "approval expired after 300ms unanswered"
    late = await running.client.post(
        f"/v1/remediation-runs/{run_id}/approve", json={"actor": "bob"}
    )
    assert late.status_code == 409
    assert "not awaiting approval" in late.json()["error"]
    assert endpoint.fixes == 0


async def test_shadow_mode_records_the_plan_and_changes_nothing(
    shop: Shop, start_agent: StartAgent
) -> None:
    before = await shop.inventory()
    sources = f"sources: {{warehouse: {source_yaml(shop)}, shop: {source_yaml(shop)}}}"
    running = await start_agent(
        config_text(
            reconcile_probe(),
            "  - {name: resync-stock, kind: resync, mode: auto, cooldown: 1h}",
            extra=sources + "\nguard: {mode: shadow}",
        )
    )
    agent = running.agent

    async def planned() -> bool:
        return bool(await runs(agent))

    await wait_until(planned, within=20)
    await asyncio.sleep(1.5)
    [run] = await runs(agent)
    assert run[2] == "shadow"
    [(plan,)] = await rows(agent, "SELECT plan FROM remediation_runs WHERE id = ?", run[0])
    keys = sorted(change["key"]["sku"] for change in json.loads(plan)["changes"])
    assert keys == sorted(DRIFTED)
    assert await shop.inventory() == before


async def test_plan_over_max_rows_is_refused_changes_nothing_and_escalates(
    shop: Shop, start_agent: StartAgent
) -> None:
    before = await shop.inventory()
    sources = f"sources: {{warehouse: {source_yaml(shop)}, shop: {source_yaml(shop)}}}"
    running = await start_agent(
        config_text(
            reconcile_probe(),
            "  - {name: resync-stock, kind: resync, mode: auto, max_rows: 2}",
            extra=sources,
        )
    )
    agent = running.agent

    async def escalated() -> bool:
        return bool(await events(agent, "escalated"))

    await wait_until(escalated, within=20)
    [run] = await runs(agent)
    assert (run[2], run[3]) == ("refused", "max_rows")
    assert await shop.inventory() == before
    [(_, _, reason)] = await events(agent, "escalated")
    assert "plan changes 3 rows, more than max_rows 2" in reason


async def test_two_incidents_and_a_manual_request_run_the_repair_once(
    endpoint: Endpoint, start_agent: StartAgent
) -> None:
    endpoint.fix_delay = 0.5  # the first run holds the lock while the others arrive
    running = await start_agent(
        config_text(
            health_probe(endpoint, "fix-shop") + "\n"
            f'  - {{name: shop-api-json, kind: http, url: "{endpoint.base}/health", every: 500ms, '
            "expect: [json.ok == true], remediation: fix-shop}",
            fix_shop(endpoint, "mode: auto, cooldown: 1h, verify_after: 0s"),
        )
    )
    agent = running.agent
    service = agent.remediations
    assert service is not None

    async def started() -> bool:
        return bool(await runs(agent))

    await wait_until(started, within=20)
    manual = await running.client.post(
        "/v1/remediations/fix-shop/run", json={"probe": "shop-api", "actor": "carol"}
    )
    assert manual.status_code == 200, manual.text
    assert manual.json()["run"]["state"] == "refused"

    async def settled() -> bool:
        states = [r[1] for r in await incident_states(agent)]
        return len(states) == 2 and all(s == "resolved" for s in states)

    await wait_until(settled, within=20)
    await asyncio.sleep(0.5)
    assert endpoint.fixes == 1
    states = sorted((r[2], r[3]) for r in await runs(agent))
    assert states.count(("succeeded", None)) == 1
    assert all(s == "refused" for s, _ in states if s != "succeeded")


async def test_no_config_secret_reaches_a_plan_output_or_notice(
    endpoint: Endpoint, start_agent: StartAgent, tmp_path: Path
) -> None:
    hook_bodies: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hook_bodies.append(await request.text())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    # The command prints the secret and fails: plan (argv), output and the escalation
    # notice would all carry it if anything slipped past the redactor.
    script = f"print('leaking {SECRET}'); raise SystemExit(3)"
    try:
        running = await start_agent(
            config_text(
                health_probe(endpoint, "leaky", every="200ms"),
                f"  - {{name: leaky, kind: command, argv: [{sys.executable!r}, -c, {script!r}], "
                'mode: auto, cooldown: 0s, backoff: 100ms, breaker_after: 1, max_attempts: "5 per 1h"}',
                extra=f"""
sources:
  shop: {{kind: postgres, dsn: "postgresql://postgres@127.0.0.1:5432/test", password: "{SECRET}"}}
notify: [{{name: hook, kind: webhook, url: "{hook_url}", timeout: 2s}}]
""",
                notify=", notify: [hook]",
            )
        )
        agent = running.agent

        async def notified() -> bool:
            return bool(await events(agent, "escalated")) and len(hook_bodies) >= 2

        await wait_until(notified, within=20)
        stored = await rows(
            agent,
            "SELECT plan || coalesce(result, '') || coalesce(reason, '') FROM remediation_runs "
            "UNION ALL SELECT detail FROM remediation_steps "
            "UNION ALL SELECT reason FROM incident_events "
            "UNION ALL SELECT CAST(notice AS VARCHAR) FROM notifications",
        )
        text = "\n".join(str(r[0]) for r in stored) + "\n".join(hook_bodies)
        assert "leaking" in text  # the output is there ...
        assert SECRET not in text  # ... without the secret
    finally:
        await runner.cleanup()


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Ran:
    """`opsagent ARGS` in a thread of this process (its `main()`, the real HTTP client)."""
    capsys.readouterr()

    def call() -> int:
        try:
            return main(list(args))
        except SystemExit as exc:
            return int(exc.code or 0)

    code = await asyncio.to_thread(call)
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


async def test_cli_lists_dry_runs_approves_and_shows_a_run(
    endpoint: Endpoint,
    start_agent: StartAgent,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER", "tester")
    running = await start_agent(
        config_text(
            health_probe(endpoint, "fix-shop"),
            fix_shop(endpoint, "mode: approval, verify_after: 0s"),
        )
    )
    agent, config = running.agent, str(running.config_path)

    async def waiting() -> bool:
        return any(r[2] == "awaiting_approval" for r in await runs(agent))

    await wait_until(waiting, within=20)
    listed = await cli(capsys, "remediations", "-c", config)
    assert listed.code == 0, listed.err
    assert "fix-shop" in listed.out and "awaiting_approval" in listed.out
    [run] = await runs(agent)
    status = await cli(capsys, "status", "-c", config)
    assert "remediations: 1 awaiting approval (opsagent remediations --state" in status.out

    dry = await cli(capsys, "remediate", "fix-shop", "--dry-run", "-c", config)
    assert dry.code == 1  # approval mode: the guard would not run it without a human
    assert "dry run (nothing recorded or run)" in dry.out
    assert "awaiting approval" in dry.out
    assert len(await runs(agent)) == 1 and endpoint.fixes == 0  # nothing recorded or run

    approved = await cli(capsys, "approve", str(run[0]), "-c", config)
    assert approved.code == 0, approved.err
    assert f"run #{run[0]}: fix-shop (http)" in approved.out
    assert "succeeded (verified)" in approved.out
    assert endpoint.fixes == 1

    shown = await cli(capsys, "remediation", str(run[0]), "-c", config)
    assert "approved" in shown.out and "tester@" in shown.out and "verified" in shown.out

    again = await cli(capsys, "approve", str(run[0]), "-c", config)
    assert again.code == 2
    assert f"run {run[0]} is not awaiting approval" in again.err

    unknown = await cli(capsys, "remediate", "nope", "-c", config)
    assert unknown.code == 2
    assert "no remediation named 'nope' (remediations: fix-shop)" in unknown.err


async def test_kill_9_mid_remediation_marks_the_run_interrupted_and_escalates(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    script = (
        f"import os, time; open({str(marker)!r}, 'a').write(f'x {{os.getpid()}}\\n'); "
        "time.sleep(60)"
    )
    config = tmp_path / "agent.yaml"
    config.write_text(
        config_text(
            health_probe(endpoint, "slow-fix"),
            f"  - {{name: slow-fix, kind: command, argv: [{sys.executable!r}, -c, {script!r}], "
            "mode: auto, timeout: 2m}",
        )
    )

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "run", "-c", str(config),
            stderr=asyncio.subprocess.DEVNULL, cwd=tmp_path,
        )  # fmt: skip

    async def exists() -> bool:
        return marker.exists()

    first = await start()
    try:
        await wait_until(exists, within=30)
    finally:
        first.kill()  # SIGKILL: no chance to clean up
        await first.wait()
    (tmp_path / "var" / "api.addr").unlink(missing_ok=True)
    second = await start()

    async def ready() -> bool:  # signal handlers are in place once the API listens
        return (tmp_path / "var" / "api.addr").exists()

    try:
        await wait_until(ready, within=30)
        await asyncio.sleep(3.0)  # probes run; the open incident must not start a new run
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    con = duckdb.connect(str(tmp_path / "var" / "opsagent.duckdb"), read_only=True)
    try:
        run_rows = con.execute("SELECT id, state, incident_id FROM remediation_runs").fetchall()
        escalations = con.execute(
            "SELECT incident_id, reason FROM incident_events WHERE event = 'escalated'"
        ).fetchall()
    finally:
        con.close()
    lines = marker.read_text().splitlines()
    for line in lines:  # the orphaned first run: end it
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[1]), signal.SIGKILL)
    assert len(lines) == 1  # not re-run blindly
    [(run_id, state, incident_id)] = run_rows
    assert state == "interrupted"
    [(escalated, reason)] = escalations
    assert escalated == incident_id
    assert f"remediation run #{run_id} (slow-fix) was interrupted by an agent stop" in reason


async def test_a_clean_stop_lets_a_run_in_progress_finish(
    endpoint: Endpoint, start_agent: StartAgent, tmp_path: Path
) -> None:
    marker = tmp_path / "finished"
    script = f"import time; time.sleep(1.0); open({str(marker)!r}, 'w').write('done')"
    running = await start_agent(
        config_text(
            health_probe(endpoint, "slow-fix"),
            f"  - {{name: slow-fix, kind: command, argv: [{sys.executable!r}, -c, {script!r}], "
            "mode: auto, verify_after: 0s}",
        )
    )
    agent = running.agent

    async def started() -> bool:
        return any(r[2] == "running" for r in await runs(agent))

    await wait_until(started, within=20)
    assert await running.stop() == 0  # SIGTERM: the grace (10 s) covers the 1 s run
    assert marker.read_text() == "done"
    with Store.open(agent.config.agent.store_path, read_only=True) as reopened:
        states = reopened.run_read_only(
            lambda c: c.execute("SELECT state FROM remediation_runs").fetchall()
        )
    assert states == [("ineffective",)]  # ran to the end and was verified (still failing)
