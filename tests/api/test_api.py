"""The control API through a real HTTP client against a real agent on loopback."""

from __future__ import annotations

import asyncio
import socket
import stat
import time
from pathlib import Path

import httpx
import pytest

from agent.api.routes import ROUTES
from agent.config import ApiSection
from agent.config_loader import parse_config
from agent.errors import ConfigError
from tests.running_agent import StartAgent, Target, agent_yaml, wait_until


async def test_every_route_but_healthz_needs_the_token(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(agent_yaml(target.base))
    async with httpx.AsyncClient(base_url=running.url) as anonymous:
        for route in ROUTES:
            path = route.path.replace("{name}", "web")
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": f"Basic {running.token}"},
                {"Authorization": f"Bearer {running.token}x"},
            ):
                answer = await anonymous.request(route.method, path, headers=headers)
                if route.path == "/v1/slack/actions":  # no token: Slack's signature instead
                    assert answer.status_code == 404, path  # no notifier has a signing secret
                    assert "signing_secret" in answer.json()["error"]
                    continue
                if route.auth == "public":
                    assert answer.status_code == 200, path
                    continue
                assert answer.status_code == 401, (route.method, path, headers)
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                assert "missing or invalid token" in answer.json()["error"]
        # Unknown paths say nothing without the token: 401 before 404.
        assert (await anonymous.get("/v1/nothing-here")).status_code == 401
    assert (await running.client.get("/v1/nothing-here")).status_code == 404


async def test_token_file_is_private_and_survives_restarts(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(agent_yaml(target.base))
    token_file = running.data_dir / "api.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(running.token) >= 40
    running.agent.events.close()  # let the fixture's stop be quick
    from agent.api.auth import ensure_token

    assert ensure_token(running.data_dir) == running.token  # reused, not regenerated


async def test_listens_on_loopback_only_by_default(start_agent: StartAgent, target: Target) -> None:
    assert ApiSection().listen == "127.0.0.1:8765"
    running = await start_agent(agent_yaml(target.base))
    host, port = running.url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1"
    assert (running.data_dir / "api.addr").read_text().strip() == f"127.0.0.1:{port}"
    # From another address of this machine the port is closed.
    other = _non_loopback_address()
    if other is not None:
        with pytest.raises(OSError), socket.create_connection((other, int(port)), timeout=2):
            pass

    with pytest.raises(ConfigError) as refused:
        parse_config('agent: {api: {listen: "0.0.0.0:8765"}}', env={})
    assert "is not a loopback address" in str(refused.value)
    assert "allow_remote" in str(refused.value)
    allowed = parse_config('agent: {api: {listen: "0.0.0.0:8765", allow_remote: true}}', env={})
    assert allowed.agent.api.listen == "0.0.0.0:8765"


def _non_loopback_address() -> str | None:
    """An address of this machine other than loopback (via a UDP 'connect': no packet sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_status_probes_history_and_run(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(agent_yaml(target.base))
    client = running.client

    async def both_probes_ran() -> bool:
        rows = (await client.get("/v1/status")).json()["probes"]
        return all(r["runs"] >= 2 for r in rows if r["probe"] in ("web", "web-strict"))

    await wait_until(both_probes_ran)
    status = (await client.get("/v1/status")).json()
    rows = {r["probe"]: r for r in status["probes"]}
    assert rows["web"]["status"] == "ok" and rows["web-strict"]["status"] == "fail"
    assert rows["opsagent-self"]["kind"] == "self" and rows["opsagent-self"]["configured"]
    assert status["store"]["writer_alive"] is True
    assert status["dispatcher"]["runs"] >= 4 and status["dispatcher"]["missed"] == 0
    assert status["agent"]["api_url"] == running.url

    probes = {p["name"]: p for p in (await client.get("/v1/probes")).json()["probes"]}
    assert probes["web"]["every_s"] == 0.2 and probes["web"]["expect"] == ["status == 200"]
    assert probes["web"]["last"]["status"] == "ok"
    assert probes["opsagent-self"]["builtin"] is True

    await running.agent.running_store().flush()  # status is live; history reads the disk
    history = (await client.get("/v1/probes/web/history", params={"limit": 2})).json()
    assert history["probe"] == "web" and len(history["results"]) == 2
    first, second = history["results"]
    assert first["started_at"] > second["started_at"]  # newest first

    hits = target.hits["ok"]
    ran = await client.post("/v1/probes/web-strict/run")
    assert ran.status_code == 200
    result = ran.json()
    assert result["status"] == "fail" and result["scheduled_at"] is None
    assert target.hits["ok"] > hits
    # Stored like any run: the history shows it at once.
    latest = (await client.get("/v1/probes/web-strict/history?limit=1")).json()["results"][0]
    assert latest["started_at"] == result["started_at"]

    for path in ("/v1/probes/nope/history", "/v1/probes/nope/run"):
        method = "POST" if path.endswith("run") else "GET"
        missing = await client.request(method, path)
        assert missing.status_code == 404
        assert missing.json() == {
            "error": "no probe named 'nope' (probes: web, web-strict, opsagent-self)",
            "field": "name",
            "problems": [],
        }
    bad_limit = await client.get("/v1/probes/web/history", params={"limit": "lots"})
    assert bad_limit.status_code == 422 and bad_limit.json()["field"] == "limit"
    assert (await client.get("/v1/probes/web/history?limit=0")).status_code == 422


async def test_config_is_shown_without_secrets(
    start_agent: StartAgent, target: Target, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("file-secret-123\n")
    text = agent_yaml(
        target.base,
        extra_agent='heartbeat_url: "https://hc.example/ping/uuid-secret-456"',
        probes=f"""
  - name: web
    kind: http
    url: "http://admin:url-secret-789@127.0.0.1:{target.base.rsplit(":", 1)[1]}/ok"
    headers: {{Authorization: "Bearer header-secret-000", X-Trace: visible}}
    every: 1s
""",
    ).replace(
        "probes:",
        """sources:
  shop: {kind: postgres, dsn: "postgresql://u:dsn-secret-111@127.0.0.1/shop", password_file: ./pw}
probes:""",
    )
    running = await start_agent(text)
    answer = await running.client.get("/v1/config")
    assert answer.status_code == 200
    body = answer.text
    for secret in (
        "file-secret-123",
        "uuid-secret-456",
        "url-secret-789",
        "header-secret-000",
        "dsn-secret-111",
    ):
        assert secret not in body
    config = answer.json()["config"]
    assert config["sources"]["shop"]["password"] == "***"
    assert config["agent"]["heartbeat_url"] == "***"
    assert config["probes"][0]["headers"] == {"Authorization": "***", "X-Trace": "visible"}
    assert config["probes"][0]["url"].startswith("http://admin:***@127.0.0.1:")
    assert config["probes"][0]["every"] == "1s"
    assert answer.json()["path"] == str(running.config_path)


async def test_query_reads_refuses_writes_and_limits_rows_and_time(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(agent_yaml(target.base))
    client = running.client
    await running.agent.running_store().flush()
    await asyncio.sleep(0.5)

    answer = await client.post(
        "/v1/query",
        json={
            "sql": "select probe, count(*) as n, max(ts) as last from results group by 1 order by 1"
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["columns"] == ["probe", "n", "last"]
    assert [row[0] for row in body["rows"]][:2] == ["web", "web-strict"]
    assert isinstance(body["rows"][0][2], str)  # a timestamp, as ISO 8601

    cut = (
        await client.post("/v1/query", json={"sql": "select * from range(50)", "max_rows": 7})
    ).json()
    assert len(cut["rows"]) == 7 and cut["truncated"] is True

    refused = await client.post("/v1/query", json={"sql": "delete from results"})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("refused: DELETE statements are not allowed")
    assert refused.json()["field"] == "sql"
    broken = await client.post("/v1/query", json={"sql": "select nonsense from nowhere"})
    assert broken.status_code == 400 and "nowhere" in broken.json()["error"]

    for payload, field in (
        ({"sql": 42}, "sql"),
        ({"sql": "select 1", "max_rows": 0}, "max_rows"),
        ({"sql": "select 1", "max_rows": "5"}, "max_rows"),
        ({"sql": "select 1", "limit": 5}, "limit"),
        ({}, "sql"),
    ):
        invalid = await client.post("/v1/query", json=payload)
        assert invalid.status_code == 422, payload
        assert invalid.json()["field"] == field, invalid.json()
    not_json = await client.post(
        "/v1/query", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["error"]
    array = await client.post("/v1/query", json=["select 1"])
    assert array.status_code == 422 and "must be a JSON object" in array.json()["error"]

    # A runaway query is interrupted inside DuckDB, and ingest goes on afterwards.
    written = running.agent.running_store().stats().rows_written
    started = time.monotonic()
    slow = await client.post(
        "/v1/query",
        json={"sql": "select count(*) from range(100000000000) a", "timeout_s": 0.3},
    )
    assert slow.status_code == 400, slow.text
    assert slow.json() == {
        "error": "the query ran past its time limit (0.3s)",
        "field": "timeout_s",
        "problems": [],
    }
    assert time.monotonic() - started < 5
    await running.agent.running_store().flush()
    assert running.agent.running_store().stats().rows_written > written


async def test_errors_are_json_with_allow_header(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(agent_yaml(target.base))
    wrong_method = await running.client.delete("/v1/status")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET"
    assert wrong_method.json()["error"] == "method not allowed"
    head = await running.client.head("/v1/status")
    assert head.status_code == 405  # no undocumented HEAD


async def test_unix_socket(start_agent: StartAgent, target: Target) -> None:
    api = '{listen: "127.0.0.1:0", unix_socket: api.sock}'
    running = await start_agent(agent_yaml(target.base, api=api))
    sock = running.data_dir / "api.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    transport = httpx.AsyncHTTPTransport(uds=str(sock))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        assert (await client.get("/v1/status")).status_code == 401
        answer = await client.get(
            "/v1/status", headers={"Authorization": f"Bearer {running.token}"}
        )
        assert answer.status_code == 200


async def test_a_busy_port_does_not_stop_monitoring(
    start_agent: StartAgent, target: Target
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = agent_yaml(
            target.base,
            api=f'{{listen: "127.0.0.1:{port}"}}',
            extra_agent="self_check_every: 500ms",
        )
        running = await start_agent(text)
        agent = running.agent
        assert agent.api_url is None
        assert agent.api_problem is not None and f"127.0.0.1:{port}" in agent.api_problem
        assert not (running.data_dir / "api.addr").exists()

        async def self_check_failed() -> bool:
            state = agent.pipeline.states.get("opsagent-self") if agent.pipeline else None
            return state is not None and state.last is not None and not state.last.ok

        await wait_until(self_check_failed)
        assert agent.pipeline is not None
        last = agent.pipeline.states["opsagent-self"].last
        assert last is not None and "control API is not listening" in last.detail
        assert agent.pipeline.states["web"].last is not None  # probes keep running
