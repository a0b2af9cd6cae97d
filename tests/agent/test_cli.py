"""The CLI against a real agent run: probe, status, query; clear errors, no tracebacks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.config_loader import load_config
from agent.daemon import Agent


def opsagent(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Path]:
    """A real HTTP server and a config with one passing and one failing probe."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"""
agent: {{data_dir: ./var, api: {{listen: "127.0.0.1:0"}}}}
probes:
  - name: api
    kind: http
    url: "http://127.0.0.1:{port}/health"
    every: 200ms
    expect: [status == 200, json.status == "ok"]
  - name: api-strict
    kind: http
    url: "http://127.0.0.1:{port}/health"
    every: 200ms
    expect: ['json.status == "degraded"']
"""
    )
    yield config
    await runner.cleanup()


async def run_agent_for(config: Path, seconds: float) -> None:
    agent = Agent(load_config(config, env={}), config_path=config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, install_signals=False))
    await asyncio.sleep(seconds)
    stop.set()
    await task


async def test_probe_exit_codes_follow_expectations(shop: Path) -> None:
    ok = await asyncio.to_thread(opsagent, "probe", "api", "-c", str(shop))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("api (http): OK")
    assert "status = 200" in ok.stdout

    bad = await asyncio.to_thread(opsagent, "probe", "api-strict", "-c", str(shop), "--json")
    assert bad.returncode == 1
    result = json.loads(bad.stdout)
    assert result["status"] == "fail"
    assert result["failed"] == ["json.status == \"degraded\" failed: json.status is 'ok'"]

    missing = await asyncio.to_thread(opsagent, "probe", "nope", "-c", str(shop))
    assert missing.returncode == 2
    assert "no probe named 'nope'" in missing.stderr and "api, api-strict" in missing.stderr


async def test_status_and_query_read_the_store_after_a_run(shop: Path) -> None:
    await run_agent_for(shop, 1.2)

    status = await asyncio.to_thread(opsagent, "status", "-c", str(shop), "--json")
    assert status.returncode == 0, status.stderr
    rows = {r["probe"]: r for r in json.loads(status.stdout)}
    assert rows["api"]["status"] == "ok" and rows["api"]["consecutive_failures"] == 0
    assert rows["api-strict"]["status"] == "fail"
    assert rows["api-strict"]["consecutive_failures"] == rows["api-strict"]["runs"] >= 3
    assert rows["api"]["missed"] == 0 and rows["api"]["overlaps"] == 0

    text = await asyncio.to_thread(opsagent, "status", "-c", str(shop))
    assert "api-strict" in text.stdout and "FAIL" in text.stdout

    query = await asyncio.to_thread(
        opsagent,
        "query",
        "select probe, count(*) as n from results group by probe order by probe",
        "-c",
        str(shop),
        "--csv",
    )
    assert query.returncode == 0, query.stderr
    lines = query.stdout.strip().splitlines()
    assert (
        lines[0] == "probe,n" and lines[1].startswith("api,") and lines[2].startswith("api-strict,")
    )

    refused = await asyncio.to_thread(opsagent, "query", "delete from results", "-c", str(shop))
    assert refused.returncode == 3
    assert "Traceback" not in refused.stderr and refused.stderr.startswith("error: ")


def test_status_before_any_run_names_the_missing_store(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text("probes: [{name: a, kind: tcp, port: 1}]\n")
    proc = opsagent("status", "-c", str(tmp_path / "agent.yaml"))
    assert proc.returncode == 3
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    proc = opsagent("demo", "--duration", "soon")
    assert proc.returncode == 2
    assert "invalid duration 'soon'" in proc.stderr
