"""Daemon operations with the agent as a real process: SIGHUP reload, the systemd notify
protocol, the watchdog, the self-check and the heartbeat."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import httpx
import pytest

from agent.config_loader import parse_config
from agent.errors import StoreError
from agent.reload import plan_reload
from agent.store import LatestResult
from agent.systemd import Notifier
from tests.running_agent import StartAgent, Target, agent_yaml, start_agent, target, wait_until
from tests.services import REQUIRED

REPO = Path(__file__).resolve().parents[2]
__all__ = ["start_agent", "target"]  # fixtures, imported for the tests below


@dataclass
class AgentProcess:
    """`opsagent run` as a child process, its JSON log lines collected as they come."""

    proc: asyncio.subprocess.Process
    config: Path
    data_dir: Path
    logs: list[dict[str, object]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def api(self) -> httpx.AsyncClient:
        for _ in range(300):
            if (self.data_dir / "api.addr").exists():
                break
            assert self.proc.returncode is None, self.messages()
            await asyncio.sleep(0.05)
        address = (self.data_dir / "api.addr").read_text().strip()
        token = (self.data_dir / "api.token").read_text().strip()
        return httpx.AsyncClient(
            base_url=f"http://{address}", headers={"Authorization": f"Bearer {token}"}
        )

    def messages(self) -> list[str]:
        return [str(line["message"]) for line in self.logs]

    async def wait_for_log(self, fragment: str, within: float = 15.0) -> dict[str, object]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in self.logs:
                if fragment in str(line["message"]):
                    return line
            await asyncio.sleep(0.05)
        pytest.fail(f"no log line with {fragment!r}; got: {self.messages()}")

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        if self.reader is not None:
            await self.reader
        return code


Spawn = Callable[..., Awaitable[AgentProcess]]


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    children: list[AgentProcess] = []

    async def start(text: str, env: dict[str, str] | None = None) -> AgentProcess:
        config = tmp_path / "agent.yaml"
        config.write_text(text)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "-c",
            str(config),
            "--log-format",
            "json",
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=REPO,
        )
        child = AgentProcess(proc, config, tmp_path / "var")

        async def read() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                try:
                    child.logs.append(json.loads(raw))
                except ValueError:
                    child.logs.append({"message": raw.decode(errors="replace"), "level": "raw"})

        child.reader = asyncio.create_task(read())
        children.append(child)
        return child

    yield start
    for child in children:
        if child.proc.returncode is None:
            child.proc.kill()
            await child.proc.wait()


def stored(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("select probe, count(*) from results group by 1").fetchall()
    finally:
        con.close()
    return {str(p): int(n) for p, n in rows}


async def counts(client: httpx.AsyncClient) -> dict[str, int]:
    answer = await client.post(
        "/v1/query", json={"sql": "select probe, count(*) from results group by 1"}
    )
    return {str(p): int(n) for p, n in answer.json()["rows"]}


async def test_sighup_applies_interval_added_and_removed_probes_without_losing_results(
    spawn: Spawn, target: Target
) -> None:
    ok = f'"{target.base}/ok"'
    child = await spawn(
        agent_yaml(
            target.base,
            probes=f"""
  - {{name: steady, kind: http, url: {ok}, every: 200ms, jitter: 0s}}
  - {{name: leaving, kind: http, url: {ok}, every: 200ms, jitter: 0s}}
""",
        )
    )
    client = await child.api()
    await asyncio.sleep(1.2)
    runs_before = {p["name"]: p["runs"] for p in (await client.get("/v1/probes")).json()["probes"]}
    child.config.write_text(
        agent_yaml(
            target.base,
            probes=f"""
  - {{name: steady, kind: http, url: {ok}, every: 1s, jitter: 0s}}
  - {{name: arriving, kind: http, url: {ok}, every: 200ms, jitter: 0s}}
""",
        )
    )
    child.proc.send_signal(signal.SIGHUP)
    line = await child.wait_for_log("config reloaded")
    assert str(line["message"]).endswith("added arriving; removed leaving; changed steady")
    await asyncio.sleep(0.5)  # a run in flight at the reload, and the store's flush interval
    before = await counts(client)
    await asyncio.sleep(1.6)
    after = await counts(client)

    probes = {p["name"]: p for p in (await client.get("/v1/probes")).json()["probes"]}
    assert set(probes) == {"steady", "arriving", "opsagent-self"}
    assert probes["steady"]["every_s"] == 1.0
    assert probes["steady"]["runs"] >= runs_before["steady"]  # counters kept, not reset
    assert after["leaving"] == before["leaving"]  # stopped, and its results kept
    assert after["arriving"] >= 8  # ~10 runs in 2.1 s at 200 ms
    assert 1 <= after["steady"] - before["steady"] <= 2  # now once a second, not 5 times

    await client.aclose()
    assert await child.stop() == 0
    on_disk = stored(child.data_dir / "opsagent.duckdb")
    assert on_disk["leaving"] == after["leaving"] and on_disk["steady"] >= after["steady"]
    assert not [line for line in child.logs if line["level"] in ("error", "raw")]


async def test_sighup_with_an_invalid_file_keeps_the_config_and_logs_every_problem(
    spawn: Spawn, target: Target
) -> None:
    valid = agent_yaml(target.base)
    child = await spawn(valid)
    client = await child.api()
    child.config.write_text(
        valid.replace("every: 200ms", "every: often", 1)
        .replace("expect: [status == 200]", "expect: [status ==]")
        .replace("  data_dir: ./var", "  data_dir: ./var\n  colour: blue")
    )
    child.proc.send_signal(signal.SIGHUP)
    refused = await child.wait_for_log("reload refused")
    assert refused["level"] == "error"
    assert "has 3 problems; the running config is kept" in str(refused["message"])
    await asyncio.sleep(0.2)
    problems = [m for m in child.messages() if m.startswith("reload: ")]
    assert len(problems) == 3, child.messages()
    assert any("agent.colour: unknown key" in p for p in problems)
    assert any("probes[0].every: invalid duration 'often'" in p for p in problems)
    assert any("probes[0].expect[0]" in p for p in problems)

    # The refusal can come before the first results are flushed: wait for both probes.
    before: dict[str, int] = {}
    async with asyncio.timeout(10):
        while not {"web", "web-strict"} <= set(before):
            await asyncio.sleep(0.1)
            before = await counts(client)
    await asyncio.sleep(0.6)
    after = await counts(client)
    assert after["web"] > before["web"] and after["web-strict"] > before["web-strict"]
    probes = (await client.get("/v1/probes")).json()["probes"]
    assert [p["every_s"] for p in probes if not p["builtin"]] == [0.2, 0.2]
    await client.aclose()
    assert await child.stop() == 0


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A Unix datagram socket like systemd's, at a short path (sun_path is ~107 bytes)."""
    folder = tempfile.mkdtemp(prefix="oa-", dir="/tmp")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


async def receive(sock: socket.socket, until: str, within: float = 20.0) -> list[str]:
    """Datagrams until one contains `until`; each datagram's lines joined by '|'."""
    loop = asyncio.get_running_loop()
    got: list[str] = []
    async with asyncio.timeout(within):
        while not got or until not in got[-1]:
            data = await loop.sock_recv(sock, 4096)
            got.append(data.decode().replace("\n", "|"))
    return got


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
async def test_notify_protocol_ready_watchdog_reloading_stopping(
    spawn: Spawn, target: Target, abstract: bool, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    address = path
    if abstract:
        sock.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        name = f"opsagent-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        sock.setblocking(False)
        address = "@" + name
    child = await spawn(
        agent_yaml(target.base), env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "300000"}
    )
    try:
        first = await receive(sock, "READY=1")
        assert first[-1].startswith("READY=1|STATUS=2 probes, ")
        pings = await receive(sock, "WATCHDOG=1")
        pings += await receive(sock, "WATCHDOG=1")
        assert sum("WATCHDOG=1" in p for p in pings) >= 2

        child.proc.send_signal(signal.SIGHUP)
        around = await receive(sock, "READY=1")
        reloading = [m for m in around if m.startswith("RELOADING=1")]
        assert len(reloading) == 1 and "|MONOTONIC_USEC=" in reloading[0]
        assert around.index(reloading[0]) < len(around) - 1  # READY=1 came after it

        child.proc.send_signal(signal.SIGTERM)
        assert (await receive(sock, "STOPPING=1"))[-1] == "STOPPING=1"
        assert await child.stop() == 0
    finally:
        sock.close()


async def test_watchdog_pings_stop_when_the_store_writer_dies(
    start_agent: StartAgent,
    target: Target,
    notify_socket: tuple[socket.socket, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sock, path = notify_socket
    running = await start_agent(agent_yaml(target.base))
    # The agent read NOTIFY_SOCKET at start: give this in-process one a notifier and a pinger.
    agent = running.agent
    agent.notifier = Notifier(path, watchdog_usec=200_000)
    agent._spawn(agent._watchdog(0.1))
    await receive(sock, "WATCHDOG=1")
    assert (await running.client.get("/healthz")).status_code == 200

    store = agent.running_store()

    async def crash(batch: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_write", crash)  # the writer's next batch kills it

    async def writer_dead() -> bool:
        return not store.stats().writer_alive

    await wait_until(writer_dead)
    await asyncio.sleep(0.15)
    while True:  # drain pings sent before the pinger noticed
        try:
            sock.recv(4096)
        except BlockingIOError:
            break
    with pytest.raises(TimeoutError):
        await receive(sock, "WATCHDOG=1", within=0.6)
    health = await running.client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["problems"] == ["the store's writer is not running"]
    # Stopping now cannot flush: the agent says how many results were lost, and why.
    with pytest.raises(StoreError, match=r"results not written: RuntimeError: disk on fire"):
        await running.stop()


async def test_self_check_and_heartbeat_notice_when_probes_stop_running_on_time(
    start_agent: StartAgent, target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    running = await start_agent(
        agent_yaml(
            target.base,
            extra_agent="self_check_every: 1s\n  heartbeat_every: 1s\n"
            f'  heartbeat_url: "{target.base}/heartbeat"',
            probes=f'\n  - {{name: web, kind: http, url: "{target.base}/ok", every: 100ms}}\n',
        )
    )
    agent = running.agent
    assert agent.pipeline is not None
    states = agent.pipeline.states

    async def self_checked(ok: bool) -> bool:
        last = states["opsagent-self"].last if "opsagent-self" in states else None
        return last is not None and last.ok is ok

    await wait_until(lambda: self_checked(True))
    await wait_until(lambda: _hit(target, 1))
    beats = target.hits["heartbeat"]

    time.sleep(0.6)  # noqa: ASYNC251 -- on purpose: a blocked loop misses runs
    await wait_until(lambda: self_checked(False))
    last = states["opsagent-self"].last
    assert last is not None and last.kind == "self"
    assert any("scheduled runs missed" in reason for reason in last.failed)
    assert last.values["missed"] >= 4
    assert any("heartbeat withheld" in r.message for r in caplog.records)
    assert target.hits["heartbeat"] <= beats + 1  # at most the one already due

    await wait_until(lambda: self_checked(True), within=5)  # the next window is healthy again
    await wait_until(lambda: _hit(target, beats + 1), within=5)
    assert any("heartbeat resumed" in r.message for r in caplog.records)
    stored_self = (
        await running.client.post(
            "/v1/query",
            json={
                "sql": "select status from results where probe = 'opsagent-self' and kind = 'self'"
            },
        )
    ).json()["rows"]
    assert ["fail"] in stored_self and ["ok"] in stored_self


async def _hit(target: Target, at_least: int) -> bool:
    return target.hits["heartbeat"] >= at_least


async def test_status_comes_from_memory_and_state_survives_a_restart(
    start_agent: StartAgent, target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    probes = f"""
  - {{name: web, kind: http, url: "{target.base}/ok", every: 1m, jitter: 0s}}
  - {{name: strict, kind: http, url: "{target.base}/ok", every: 1m, jitter: 0s, expect: [status == 418]}}
"""
    text = agent_yaml(target.base, probes=probes)
    first = await start_agent(text)

    async def scheduled_runs_done() -> bool:
        counts = first.agent.stored_counts
        return counts.get("web", 0) >= 1 and counts.get("strict", 0) >= 1

    await wait_until(scheduled_runs_done)  # the first slot, within a second of the start
    for _ in range(2):
        await first.agent.run_now("strict")
    await first.agent.run_now("web")
    store = first.agent.running_store()
    await store.flush()

    def rows(latest: list[LatestResult]) -> dict[str, tuple[object, ...]]:
        return {
            r.result.probe: (r.result, r.consecutive_failures, r.last_ok_at, r.runs) for r in latest
        }

    on_disk = rows(await store.latest_per_probe())
    assert rows(first.agent.latest_results()) == on_disk
    assert on_disk["strict"][1] == 3 and on_disk["web"][3] == 2
    assert await first.stop() == 0

    caplog.clear()
    caplog.set_level(logging.INFO)
    second = await start_agent(text)  # same data_dir: the store remembers
    assert second.agent.pipeline is not None
    strict = second.agent.pipeline.states["strict"]
    assert strict.consecutive_failures >= 3  # restored, then the first run of this process

    async def ran_again() -> bool:
        return second.agent.stored_counts.get("strict", 0) >= 4

    await wait_until(ran_again)
    # Still failing, as before the restart: not a change, so no "failing" line.
    assert not [r for r in caplog.records if "probe strict failing" in r.message]
    status = (await second.client.get("/v1/status")).json()["probes"]
    assert {r["probe"]: r["runs"] for r in status}["strict"] >= 4


def test_reload_plan_keeps_restart_only_settings() -> None:
    old = parse_config(
        """
agent: {data_dir: /tmp/a, api: {listen: "127.0.0.1:1"}, retention: 7d}
probes:
  - {name: a, kind: tcp, port: 1, every: 10s}
  - {name: b, kind: tcp, port: 2}
""",
        env={},
    )
    new = parse_config(
        """
agent: {data_dir: /tmp/b, api: {listen: "127.0.0.1:2", metrics_public: true}, retention: 1d}
probes:
  - {name: a, kind: tcp, port: 1, every: 20s}
  - {name: c, kind: tcp, port: 3}
""",
        env={},
    )
    plan = plan_reload(old, new)
    assert (plan.added, plan.removed, plan.rescheduled) == (["c"], ["b"], ["a"])
    assert plan.not_applied == [
        "agent.data_dir changed (/tmp/a -> /tmp/b): takes effect after a restart",
        "agent.api.listen changed (127.0.0.1:1 -> 127.0.0.1:2): takes effect after a restart",
    ]
    agent = plan.config.agent
    assert str(agent.data_dir) == "/tmp/a" and agent.api.listen == "127.0.0.1:1"
    assert agent.api.metrics_public is True and agent.retention.days == 1  # applied live
    assert plan_reload(old, old).changed is False
    assert plan_reload(old, old).summary() == "no changes"


def test_notifier_reads_and_hides_systemds_variables() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_env(env)
    assert env == {}  # children (command probes) must not inherit them
    assert notifier.address == "@x" and notifier.watchdog_interval == 15.0
    other = Notifier.from_env(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}
    )
    assert other.watchdog_interval is None  # the watchdog is another process's
    silent = Notifier.from_env({})
    assert silent.notify("READY=1") is False and silent.watchdog_interval is None


def test_unit_file_passes_systemd_analyze(tmp_path: Path) -> None:
    unit = (REPO / "deploy" / "opsagent.service").read_text()
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "NotifyAccess=main"):
        assert f"\n{line}\n" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    if shutil.which("systemd-analyze") is None:
        if REQUIRED:
            pytest.fail("systemd-analyze is not installed (.ci/run installs it)", pytrace=False)
        pytest.skip("systemd-analyze is not installed")
    # verify wants ExecStart to exist: point it at this environment's opsagent.
    executable = Path(sys.executable).with_name("opsagent")
    copy = tmp_path / "opsagent.service"
    copy.write_text(unit.replace("/opt/opsagent/bin/opsagent", str(executable)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    complaints = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if str(copy) in line or "opsagent.service" in line
    ]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr
