"""`opsagent incidents/incident/ack/resolve/silence/silences/unsilence` against a real agent.

While the agent runs they go through its API; once it has stopped, the read commands
read the store and the others say the agent must be running. The CLI runs in a thread
of this process (its `main()`, with the real HTTP client), which keeps the test quick;
`tests/api/test_cli_api.py` covers the console script as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import main
from tests.running_agent import RunningAgent, StartAgent, Target, agent_yaml, wait_until

COMMANDS = ("incidents", "incident", "ack", "resolve", "silence", "silences", "unsilence")


@dataclass
class Ran:
    code: int
    out: str
    err: str


Cli = Callable[..., Awaitable[Ran]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("USER", "tester")

    async def run(*args: str) -> Ran:
        capsys.readouterr()

        def call() -> int:
            try:
                return main(list(args))
            except SystemExit as exc:  # argparse: --help, bad arguments
                return int(exc.code or 0)

        code = await asyncio.to_thread(call)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def config_text(base: str) -> str:
    probes = f"""
  - {{name: shop-api, kind: http, url: "{base}/ok", every: 100ms, expect: [status == 200],
     severity: critical}}
"""
    return agent_yaml(base, probes=probes) + (
        f'notify: [{{name: hook, kind: webhook, url: "{base}/heartbeat"}}]\n'
        "incidents: {notify: [hook], failures: 2, successes: 2, tick_every: 200ms}\n"
    )


async def wait_open(running: RunningAgent) -> int:
    async def opened() -> bool:
        rows = (await running.client.get("/v1/incidents")).json()["incidents"]
        return bool(rows) and rows[0]["state"] == "open"

    await wait_until(opened)
    incident_id: int = (await running.client.get("/v1/incidents")).json()["incidents"][0]["id"]
    return incident_id


async def test_through_the_running_agent_then_from_the_store(
    start_agent: StartAgent, target: Target, cli: Cli
) -> None:
    running = await start_agent(config_text(target.base))
    c = ("-c", str(running.config_path))
    none = await cli("incidents", *c)
    assert (none.code, none.out) == (0, "no open incidents\n")

    target.healthy = False
    number = await wait_open(running)
    listed = await cli("incidents", *c)
    assert listed.code == 0, listed.err
    header, _, row = listed.out.splitlines()
    assert header.split() == [
        "id",
        "state",
        "severity",
        "incident",
        "since",
        "for",
        "ack",
        "by",
        "summary",
    ]
    assert row.startswith(f"#{number}  open   critical  shop-api failing")
    assert row.endswith("status == 200 failed: status is 503")
    (as_json,) = json.loads((await cli("incidents", *c, "--json")).out)
    assert (as_json["id"], as_json["state"]) == (number, "open")

    shown = await cli("incident", str(number), *c)
    assert shown.code == 0, shown.err
    text = shown.out
    assert text.startswith(f"#{number} shop-api failing: OPEN\n")
    assert "  summary        status == 200 failed: status is 503" in text
    assert "Timeline:" in text and "Notifications:" in text
    timeline = text.split("Timeline:")[1].split("Notifications:")[0]
    assert "pending" in timeline and "opened" in timeline and "pending → open" in timeline
    detail = json.loads((await cli("incident", f"#{number}", *c, "--json")).out)
    assert [e["event"] for e in detail["events"]] == ["pending", "opened"]
    if detail["notifications"][0]["state"] == "sent":  # the webhook may still be on its way
        assert re.search(r"#1 +opened +hook +sent +1 ", text.split("Notifications:")[1])
    unknown = await cli("incident", "999", *c)
    assert (unknown.code, unknown.err) == (2, "error: no incident #999\n")

    bad = await cli("ack", str(number), *c, "--for", "soon")
    assert bad.code == 2 and "invalid duration 'soon'" in bad.err
    acked = await cli("ack", str(number), *c, "--comment", "looking", "--for", "2h")
    assert acked.code == 0, acked.err
    me = f"tester@{socket.gethostname()} via cli"
    assert acked.out.startswith(f"acknowledged #{number} shop-api failing as {me} until ")
    again = await cli("ack", str(number), *c, "--as", "alice")
    assert again.out == f"acknowledged #{number} shop-api failing as alice\n"
    listed = await cli("incidents", *c)
    assert "acknowledged" in listed.out and "alice" in listed.out

    bad_matcher = await cli("silence", "shop-*", "nonsense", "--for", "1h", "--reason", "x", *c)
    assert bad_matcher.code == 2
    assert (
        bad_matcher.err
        == "error: bad matcher 'shop-* nonsense': expected key=value, got 'nonsense'\n"
    )
    no_for = await cli("silence", "shop-*", "--reason", "x", *c)
    assert no_for.code == 2 and "--for" in no_for.err
    silenced = await cli(
        "silence", "shop-*", "severity=critical", "--for", "2h", "--reason", "deploying", *c
    )
    assert silenced.code == 0, silenced.err
    assert silenced.out.startswith("silence #1 on 'shop-* severity=critical' until ")
    table = await cli("silences", *c)
    assert table.code == 0 and "#1" in table.out and "in force, 1h 59m left" in table.out
    assert "deploying" in table.out and me in table.out
    (silence,) = json.loads((await cli("silences", *c, "--json")).out)
    assert silence["created_by"] == me and silence["active"] is True
    assert "silenced" in (await cli("incidents", *c)).out

    status = await cli("status", *c)
    assert status.code == 0, status.err
    assert (
        "incidents: 0 open, 1 acknowledged (1 critical), 0 pending, 1 silenced; 1 silence in force"
    ) in status.out
    assert "notifications: " in status.out and " sent" in status.out

    ended = await cli("unsilence", "1", *c)
    assert (ended.code, ended.out) == (0, "silence #1 on 'shop-* severity=critical' ended\n")
    twice = await cli("unsilence", "1", *c)
    assert twice.code == 2 and twice.err.startswith("error: silence #1 already ended at ")
    assert (await cli("silences", *c)).out == "no silences in force\n"

    resolved = await cli("resolve", str(number), *c, "--comment", "restarted it")
    assert (resolved.code, resolved.out) == (0, f"resolved #{number} shop-api failing (manual)\n")
    late = await cli("resolve", str(number), *c)
    assert late.code == 2
    assert late.err == (
        f"error: incident #{number} is already resolved (manual): only an open incident "
        "can be resolved\n"
    )
    assert (await cli("ack", "424242", *c)).err == "error: no incident #424242\n"

    assert await running.stop() == 0
    # Stopped: the read commands read the store ...
    stored = json.loads((await cli("incidents", *c, "--all", "--json")).out)
    first = next(i for i in stored if i["id"] == number)
    assert first["state"] == "resolved" and first["resolution"] == "manual"
    shown = await cli("incident", str(number), *c)
    assert shown.code == 0, shown.err
    assert "restarted it" in shown.out and "resolved" in shown.out
    assert re.search(r"acknowledged +by alice at ", shown.out)
    history = await cli("silences", "--all", *c)
    assert history.code == 0 and "#1" in history.out and "ended" in history.out
    status = await cli("status", *c)
    assert status.code == 0 and "incidents: " in status.out
    # ... and the others need the agent.
    for args in (
        ("ack", str(number)),
        ("resolve", str(number)),
        ("silence", "*", "--for", "1h", "--reason", "x"),
        ("unsilence", "1"),
    ):
        refused = await cli(*args, *c)
        assert refused.code == 3, args
        assert refused.err.startswith("error: the agent is not running"), refused.err
        assert "the agent must be running (start it with `opsagent run`)" in refused.err


def test_every_command_has_help_and_rejects_bad_ids(tmp_path: Path) -> None:
    for command in COMMANDS:
        shown = subprocess.run(
            [sys.executable, "-m", "agent.cli", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, command
        assert shown.stdout.startswith(f"usage: opsagent {command}"), command
    bad = subprocess.run(
        [sys.executable, "-m", "agent.cli", "ack", "twelve", "-c", str(tmp_path / "agent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "expected an id such as 12, got 'twelve'" in bad.stderr
