"""`opsagent report` and `opsagent reports` while the agent is stopped: on the store directly."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from agent.cli import main


class Inbox:
    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


def _config(tmp_path: Path, smtp_port: int) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"""
agent: {{name: shop-test, data_dir: ./var}}
notify:
  - name: ops-email
    kind: email
    smtp: {{host: 127.0.0.1, port: {smtp_port}, starttls: false, timeout: 5s}}
    from: opsagent@shop.test
    to: [oncall@shop.test]
reports:
  - {{name: daily, cron: "0 7 * * *", notify: [ops-email]}}
  - {{name: quiet, every: 1h}}
"""
    )
    return str(path)


def test_report_writes_stores_and_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, _free_port())
    out = tmp_path / "out.html"
    assert (
        main(["report", "-c", config, "--name", "quiet", "--period", "7d", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("report quiet #1, ")
    assert f"written to {out}" in printed
    assert out.read_text("utf-8").startswith("<!DOCTYPE html>")
    stored = sorted((tmp_path / "var" / "reports").iterdir())
    assert [p.suffix for p in stored] == [".html", ".txt"]

    assert main(["reports", "-c", config, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    (report,) = listed["reports"]
    assert report["name"] == "quiet" and report["trigger"] == "cli"
    assert report["send_state"] == "not sent"
    assert [c["name"] for c in listed["configured"]] == ["daily", "quiet"]


def test_send_without_the_agent_emails_once(
    tmp_path: Path, smtp: tuple[int, Inbox], capsys: pytest.CaptureFixture[str]
) -> None:
    port, inbox = smtp
    config = _config(tmp_path, port)
    assert main(["report", "-c", config, "--send"]) == 0
    assert "emailed via ops-email" in capsys.readouterr().out
    assert len(inbox.received) == 1
    assert main(["reports", "-c", config, "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["reports"]
    assert report["send_state"] == "sent" and report["deliveries"][0]["attempts"] == 1


def test_failed_send_stays_queued_for_the_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, _free_port())  # nothing listens there
    assert main(["report", "-c", config, "--send"]) == 0
    printed = capsys.readouterr().out
    assert "email via ops-email queued: the agent's outbox sends it (last attempt:" in printed
    assert main(["reports", "-c", config, "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["reports"]
    assert report["send_state"] == "pending"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "monthly"], "error: no report named 'monthly' (reports: daily, quiet)"),
        (["--name", "quiet", "--send"], "report 'quiet' has no `notify:` notifiers"),
        (
            ["--out", "/nonexistent-dir/r.html"],
            "cannot write --out /nonexistent-dir/r.html: the directory /nonexistent-dir does not exist",
        ),
        (["--out", "/"], "cannot write --out /: / is a directory"),
    ],
    ids=["unknown-name", "send-without-notify", "out-missing-dir", "out-is-dir"],
)
def test_bad_input_is_exit_2_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    config = _config(tmp_path, _free_port())
    assert main(["report", "-c", config, *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "var" / "reports").exists()  # refused before generating


@pytest.mark.parametrize("period", ["2x", "2026-11-02..2026-11-01", "yesterday..today"])
def test_bad_period_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], period: str
) -> None:
    config = _config(tmp_path, _free_port())
    with pytest.raises(SystemExit) as exited:
        main(["report", "-c", config, "--period", period])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --period: invalid" in err and "Traceback" not in err
