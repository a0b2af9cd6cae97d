"""`run_demo` end to end: the real shop, the real agent with the repo's agent.yaml, the store."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from agent.demo import data
from agent.demo.faults import (
    DriftStock,
    KillShop,
    ResetBreaker,
    SetFault,
    Step,
    StrandPayments,
)
from agent.demo.runner import ENV_KEYS, run_demo

from .conftest import eventually, shop_processes

REPO_CONFIG = Path(__file__).parents[2] / "agent.yaml"


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """The repo's agent.yaml, copied so its store (./var, relative to the file) is private."""
    path = tmp_path / "agent.yaml"
    shutil.copy(REPO_CONFIG, path)
    return path


def stored_counts(config_path: Path) -> dict[tuple[str, str], int]:
    with duckdb.connect(str(config_path.parent / "var" / "opsagent.duckdb"), read_only=True) as db:
        rows = db.execute("select probe, status, count(*) from results group by all").fetchall()
    return {(probe, status): n for probe, status, n in rows}


def stored(config_path: Path, query: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(config_path.parent / "var" / "opsagent.duckdb"), read_only=True) as db:
        return db.execute(query).fetchall()


async def test_demo_detects_faults_and_the_agent_repairs_them_or_escalates(
    config_path: Path, tmp_path: Path
) -> None:
    """The whole loop with the repo's agent.yaml, on a compressed timeline.

    Drift -> resync-stock and stranded payments -> requeue-payments (verified, resolved
    as auto-remediated); 500 errors -> clear-shop-cache, ineffective three times, breaker
    opened, incident escalated; a killed shop -> restart-shop starts it again (a shop
    the agent started: the demo must still leave no process behind).
    """
    data_dir = tmp_path / "demo"
    out = io.StringIO()
    before = {key: os.environ.get(key) for key in ENV_KEYS}
    timeline = [
        Step(2, SetFault(errors=True), "shop API answers 500"),
        Step(2, DriftStock(("SKU-0003", "SKU-0007"), delta=5), "stock drifted"),
        Step(2, StrandPayments(2), "2 payments stranded"),
        # shop-products opens after 3 failures (10-15 s), then 3 attempts (~8 s).
        Step(28, SetFault(reset=True), "errors stopped", fault=False),
        Step(29, ResetBreaker("clear-shop-cache"), "breaker reset", fault=False),
        Step(30, KillShop(), "shop process killed (SIGKILL)"),
    ]

    code = await run_demo(config_path, 48, data_dir, timeline=timeline, out=out)

    assert code == 0
    text = out.getvalue()
    counts = stored_counts(config_path)
    configured = {p["name"] for p in yaml.safe_load(REPO_CONFIG.read_text())["probes"]}
    assert {probe for probe, _ in counts} >= configured
    assert counts[("shop-port", "fail")] >= 2  # the kill was detected ...
    assert counts[("shop-port", "ok")] >= 2  # ... between healthy runs
    assert "⚡ fault: shop process killed (SIGKILL)" in text
    assert "▼ shop-port" in text and "▲ shop-port" in text
    assert "opsagent query 'select probe, status, count(*) from results group by all'" in text

    # The repairs that work: run, verified by the probe, incident resolved by them.
    runs = stored(
        config_path,
        "select r.remediation, r.state, r.verified, i.probe from remediation_runs r "
        "join incidents i on i.id = r.incident_id order by r.id",
    )
    for name, probe in (
        ("resync-stock", "stock-drift"),
        ("requeue-payments", "stuck-payments"),
        ("restart-shop", "shop-port"),
    ):
        assert (name, "succeeded", True, probe) in runs, (name, runs, text)
    resolved = dict(
        stored(config_path, "select probe, resolution from incidents where state = 'resolved'")
    )
    assert resolved["stock-drift"] == "auto-remediated"
    assert resolved["stuck-payments"] == "auto-remediated"
    assert resolved["shop-port"] == "auto-remediated"
    assert data.stock_mismatches(data_dir.resolve()) == {}
    assert data.backlog(data_dir.resolve()).stuck_payments == 0

    # The repair that does not: three ineffective attempts, the breaker, the escalation.
    cache = [r for r in runs if r[0] == "clear-shop-cache"]
    assert [r[1:3] for r in cache[:3]] == [("ineffective", False)] * 3, runs
    steps = stored(
        config_path,
        "select step, run_id from remediation_steps where remediation = 'clear-shop-cache' "
        "and step in ('breaker_opened', 'breaker_reset', 'planned') order by id",
    )
    names = [step for step, _ in steps]
    assert names[:5] == ["planned"] * 3 + ["breaker_opened", "breaker_reset"], steps
    [(reason,)] = stored(
        config_path,
        "select e.reason from incident_events e join incidents i on i.id = e.incident_id "
        "where e.event = 'escalated' and i.probe = 'shop-products'",
    )
    assert "clear-shop-cache did not fix it: its circuit breaker opened" in reason

    # The timeline showed the agent at work, step by step.
    for line in (
        "🔧 repair #",
        "resync-stock planned: copy left values to inventory on shop for 2 drifted keys",
        "resync-stock verified: the probe passes again",
        "requeue-payments executed: status 200",
        "restart-shop executed: stopped 0 processes (0 killed), started pid",
        "restart-shop verified",
        "clear-shop-cache ineffective: the probe still fails",
        "clear-shop-cache breaker_opened",
        "⬆ escalated incident #",
        "↺ demo: breaker reset (opsagent reset-breaker ",
    ):
        assert line in text, (line, text)
    assert re.search(r"Remediations: \d+ runs", text)
    assert re.search(r"clear-shop-cache +3 ineffective", text)
    # The console notifier's notices joined the timeline.
    notices = [line for line in text.splitlines() if "✉ notice:" in line]
    opened = "✉ notice: 🔔 OPENED       critical  shop-port failing — connect refused"
    healed = "✉ notice: ✅ RESOLVED     critical  shop-port failing — auto-remediated after"
    assert any(opened in line for line in notices), text
    assert any(healed in line for line in notices), text
    summary = text.split("Incidents: ")[1]
    assert re.match(r"\d+ opened, \d+ resolved", summary)
    assert re.search(r"#\d+ +shop-port +critical +opened \+[\d.]+s +auto-remediated \+", summary)
    sent = stored(
        config_path,
        "select event from notifications where target = 'console' and state = 'sent' "
        "and incident_id in (select id from incidents where probe = 'shop-port') order by id",
    )
    # The closing report over the run, stored and listed.
    report = Path(re.findall(r"Report of this run: (\S+\.html)", text)[0])
    assert report.parent == config_path.parent / "var" / "reports"
    assert "shop-port" in await asyncio.to_thread(report.read_text, "utf-8")
    listed = stored(config_path, "select name, trigger, html_path from reports")
    assert listed == [("daily", "demo", str(report))]
    assert sent == [("opened",), ("resolved",)]
    # The shop the agent restarted is gone too, and the environment is as it was.
    assert shop_processes(data_dir.resolve()) == []
    assert {key: os.environ.get(key) for key in ENV_KEYS} == before


def test_the_demo_logs_errors_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The timeline shows every failure: the agent's per-transition warnings would repeat it."""
    from agent import cli

    levels: list[str] = []

    async def fake_demo(*_: object) -> int:
        return 0

    monkeypatch.setattr("agent.logs.setup_logging", lambda level, **_: levels.append(level))
    monkeypatch.setattr("agent.demo.runner.run_demo", fake_demo)
    assert cli.main(["demo", "-c", str(tmp_path / "agent.yaml"), "--duration", "1s"]) == 0
    assert levels == ["error"]


async def test_sigterm_stops_the_demo_and_its_shop(config_path: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    out = io.StringIO()
    demo = asyncio.create_task(run_demo(config_path, None, data_dir, timeline=[], out=out))
    # Signal only once a result is printed: the agent's own SIGTERM handler is in place.
    await eventually(lambda: "✓" in out.getvalue(), within=20)
    assert len(shop_processes(data_dir.resolve())) == 1

    os.kill(os.getpid(), signal.SIGTERM)

    async with asyncio.timeout(30):
        assert await demo == 0
    assert "Demo finished" in out.getvalue()
    assert shop_processes(data_dir.resolve()) == []


async def test_cancelled_while_starting_leaves_no_shop(config_path: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    demo = asyncio.create_task(run_demo(config_path, 5, data_dir, out=io.StringIO()))
    await eventually(lambda: bool(shop_processes(data_dir.resolve())), within=20)  # starting

    demo.cancel()  # what Ctrl-C does before the agent has installed its handlers

    with pytest.raises(asyncio.CancelledError):
        await demo
    assert shop_processes(data_dir.resolve()) == []


async def test_invalid_config_is_reported_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("probes:\n  - name: x\n    kind: http\n    every: 5s\n    timeout: 10s\n")
    data_dir = tmp_path / "demo"

    code = await run_demo(bad, 5, data_dir, out=io.StringIO())

    assert code == 2
    err = capsys.readouterr().err
    assert "invalid config" in err and "url" in err and "timeout" in err
    assert not (data_dir / "shop.db").exists()
