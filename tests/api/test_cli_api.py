"""Every CLI command while the agent runs (through its API), and the fallbacks when it does not."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.running_agent import StartAgent, Target, agent_yaml
from tests.services import free_port


def opsagent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(opsagent, *args, env=env)


async def test_every_command_works_while_the_agent_runs(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(agent_yaml(target.base))
    config = str(running.config_path)
    await asyncio.sleep(0.6)

    check = await cli("check", "-c", config)
    assert check.returncode == 0, check.stderr

    # The agent holds the DuckDB file: these can only succeed through the API.
    status = await cli("status", "-c", config, "--json")
    assert status.returncode == 0, status.stderr
    rows = {r["probe"]: r for r in json.loads(status.stdout)}
    assert rows["web"]["status"] == "ok" and rows["web-strict"]["status"] == "fail"
    assert rows["opsagent-self"]["configured"] is True
    text = await cli("status", "-c", config)
    assert text.returncode == 0 and "web-strict" in text.stdout and "FAIL" in text.stdout

    query = await cli(
        "query",
        "select probe, count(*) as n from results group by 1 order by 1",
        "-c",
        config,
        "--csv",
    )
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines()[0] == "probe,n"
    assert query.stdout.splitlines()[1].startswith("web,")
    as_json = await cli("query", "select 1 as one, 'x' as s", "-c", config, "--json")
    assert json.loads(as_json.stdout) == [{"one": 1, "s": "x"}]
    refused = await cli("query", "drop table results", "-c", config)
    assert refused.returncode == 3 and refused.stderr.startswith("error: refused: DROP")
    slow = await cli(
        "query", "select count(*) from range(100000000000)", "-c", config, "--timeout", "300ms"
    )
    assert slow.returncode == 3 and "time limit (0.3s)" in slow.stderr

    before = (await running.client.get("/v1/probes/web/history?limit=10000")).json()["results"]
    probe = await cli("probe", "web", "-c", config)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("web (http): OK") and "status = 200" in probe.stdout
    after = (await running.client.get("/v1/probes/web/history?limit=10000")).json()["results"]
    assert any(r["scheduled_at"] is None for r in after) and len(after) > len(before)
    failing = await cli("probe", "web-strict", "-c", config, "--json")
    assert failing.returncode == 1 and json.loads(failing.stdout)["status"] == "fail"
    own = await cli("probe", "opsagent-self", "-c", config)
    assert own.returncode == 0 and own.stdout.startswith("opsagent-self (self): OK")
    missing = await cli("probe", "nope", "-c", config)
    assert missing.returncode == 2 and "no probe named 'nope'" in missing.stderr

    reload = await cli("reload", "-c", config)
    assert reload.returncode == 0, reload.stderr
    assert reload.stdout.strip() == f"reloaded {config}: no changes"
    running.config_path.write_text(
        running.config_path.read_text()
        + f'  - {{name: extra, kind: http, url: "{target.base}/ok", every: 1s}}\n'
    )
    added = await cli("reload", "-c", config)
    assert added.returncode == 0 and added.stdout.strip() == f"reloaded {config}: added extra"
    assert "extra" in {p.name for p in running.agent.config.probes}

    schema = await cli("schema", "-c", config)
    assert (
        schema.returncode == 0
        and "api" in json.loads(schema.stdout)["$defs"]["AgentSection"]["properties"]
    )


async def test_reload_reports_every_problem_of_an_invalid_file(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(agent_yaml(target.base))
    valid = running.config_path.read_text()
    running.config_path.write_text(valid.replace("every: 200ms", "every: soon"))
    # The agent judges the file and answers with every problem: exit 2.
    refused = await cli("reload", "-c", str(running.config_path))
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: the config file is invalid (2 problems)")
    assert refused.stderr.count("invalid duration 'soon'") == 2
    # Asked directly, the same answer; the running config stays.
    answer = await running.client.post("/v1/reload")
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "the config file is invalid (2 problems); the running config is kept"
    assert len(body["problems"]) == 2 and all("invalid duration" in p for p in body["problems"])
    assert [p.every.total_seconds() for p in running.agent.config.probes] == [0.2, 0.2]


async def test_commands_work_when_only_the_agent_has_the_configs_environment(
    start_agent: StartAgent, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service sets SHOP_PASSWORD; the operator's shell does not.
    monkeypatch.setenv("SHOP_PASSWORD", "only-the-agent-knows")
    text = agent_yaml(target.base).replace(
        "probes:",
        'sources:\n  shop: {kind: postgres, password: "${SHOP_PASSWORD}"}\nprobes:',
    )
    running = await start_agent(text, env={"SHOP_PASSWORD": "only-the-agent-knows"})
    config = str(running.config_path)
    shell = {k: v for k, v in os.environ.items() if k != "SHOP_PASSWORD"}

    check = await cli("check", "-c", config, env=shell)
    assert check.returncode == 2 and "SHOP_PASSWORD is not set" in check.stderr
    status = await cli("status", "-c", config, "--json", env=shell)
    assert status.returncode == 0, status.stderr
    assert "web" in {r["probe"] for r in json.loads(status.stdout)}
    reload = await cli("reload", "-c", config, env=shell)
    assert reload.returncode == 0 and reload.stdout.endswith("no changes\n"), reload.stderr
    probe = await cli("probe", "web", "-c", config, env=shell)
    assert probe.returncode == 0, probe.stderr


def test_commands_when_the_agent_is_not_running(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text('agent: {data_dir: ./var, api: {listen: "127.0.0.1:0"}}\nprobes: []\n')
    never = opsagent("reload", "-c", str(config))
    assert never.returncode == 3
    assert "the agent is not running" in never.stderr

    # A crashed agent left its address and token behind: nothing answers there.
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "api.token").write_text("x" * 43)
    port = free_port()
    (tmp_path / "var" / "api.addr").write_text(f"127.0.0.1:{port}\n")
    stale = opsagent("reload", "-c", str(config))
    assert stale.returncode == 3
    assert f"the agent is not running (no answer on 127.0.0.1:{port}" in stale.stderr
    # Read commands fall back to the store, which names what is missing.
    status = opsagent("status", "-c", str(config))
    assert status.returncode == 3 and "does not exist" in status.stderr
