"""`run_demo` end to end: the real shop, the real agent with the repo's agent.yaml, the store."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
from pathlib import Path

import duckdb
import pytest
import yaml

from agent.demo.faults import KillShop, StartShop, Step
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


async def test_demo_detects_a_fault_opens_notifies_and_resolves_incidents(
    config_path: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "demo"
    out = io.StringIO()
    before = {key: os.environ.get(key) for key in ENV_KEYS}
    timeline = [
        Step(3, KillShop(), "shop process killed (SIGKILL)"),
        Step(10, StartShop(), "shop process restarted", fault=False),
    ]

    code = await run_demo(config_path, 20, data_dir, timeline=timeline, out=out)

    assert code == 0
    counts = stored_counts(config_path)
    configured = {p["name"] for p in yaml.safe_load(REPO_CONFIG.read_text())["probes"]}
    assert {probe for probe, _ in counts} >= configured
    assert counts[("shop-port", "fail")] >= 2  # the kill was detected ...
    assert counts[("shop-port", "ok")] >= 2  # ... between healthy runs
    text = out.getvalue()
    assert "⚡ fault: shop process killed (SIGKILL)" in text
    assert "▼ shop-port" in text and "▲ shop-port" in text
    assert "opsagent query 'select probe, status, count(*) from results group by all'" in text
    # The incident opened, the console notifier's notices joined the timeline, it resolved.
    notices = [line for line in text.splitlines() if "✉ notice:" in line]
    opened = "✉ notice: 🔔 OPENED       critical  shop-port failing — connect refused"
    resolved = "✉ notice: ✅ RESOLVED     critical  shop-port failing — recovered after"
    assert any(opened in line for line in notices), text
    assert any(resolved in line for line in notices), text
    summary = text.split("Incidents: ")[1]
    assert re.match(r"\d+ opened, \d+ resolved", summary)
    assert re.search(r"#\d+ +shop-port +critical +opened \+[\d.]+s +recovered \+", summary)
    # The closing report over the run, stored and listed.
    report = Path(re.findall(r"Report of this run: (\S+\.html)", text)[0])
    assert report.parent == config_path.parent / "var" / "reports"
    assert "shop-port" in await asyncio.to_thread(report.read_text, "utf-8")
    with duckdb.connect(str(config_path.parent / "var" / "opsagent.duckdb"), read_only=True) as db:
        rows = db.execute(
            "select state, resolution from incidents where probe = 'shop-port'"
        ).fetchall()
        sent = db.execute(
            "select event from notifications where target = 'console' and state = 'sent' "
            "and incident_id in (select id from incidents where probe = 'shop-port') order by id"
        ).fetchall()
        listed = db.execute("select name, trigger, html_path from reports").fetchall()
    assert listed == [("daily", "demo", str(report))]
    assert rows == [("resolved", "recovered")]
    assert sent == [("opened",), ("resolved",)]
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
