"""`opsagent report` and `opsagent reports`: generate a report now, list those generated.

While the agent runs, both go through its control API (the agent owns the store and
its outbox sends the emails). When it is stopped, `report` opens the store itself:
the report is stored and listed the same way, and with `--send` its emails are queued
in the outbox and tried once here; one that fails stays queued for the agent.
`reports` reads the store read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli import EXIT_OK, EXIT_USAGE, _local, _locate, _read_store, _with_agent

if TYPE_CHECKING:
    from agent.api.models import ReportInfo, ReportsResponse
    from agent.config import Config

SEND_WAIT_S = 15.0  # how long `report --send` waits for the agent to say how the send went
CLI_SEND_ROUNDS = 5


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register `report` and `reports` with the CLI's `command(name, handler, help, description)`."""
    p = command(
        "report",
        cmd_report,
        "generate a report now (and email it with --send)",
        "Generate a configured report for its period ending now (or --period), store its HTML "
        "and text under <data_dir>/reports/ and list it in the store. Through the running "
        "agent when it answers, else on the store directly.",
    )
    p.add_argument("--name", metavar="NAME", help="the report (default: the first in reports:)")
    p.add_argument(
        "--period",
        type=_period_arg,
        metavar="PERIOD",
        help="24h, 7d, 30d (ending now) or FROM..TO, e.g. 2026-11-01..2026-11-08 (UTC)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="also write the report here (text when FILE ends in .txt, else HTML)",
    )
    p.add_argument(
        "--send",
        action="store_true",
        help="email it to the report's notify: list (through the outbox: retried, never twice)",
    )
    p.add_argument("--json", action="store_true", help="print the stored report as JSON")

    p = command(
        "reports",
        cmd_reports,
        "list reports generated and configured",
        "List the reports generated (newest first) with their files and how their emails "
        "went, and the configured ones with their schedule. Asks the running agent, or "
        "reads the store when it is stopped.",
    )
    p.add_argument("--name", metavar="NAME", help="only reports of this name")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (default 20)")
    p.add_argument("--json", action="store_true", help="print as JSON")


def _period_arg(text: str) -> str:
    """Checked here (a clear exit 2), passed on as written."""
    from agent.results import utcnow
    from reports.generate import parse_period

    try:
        parse_period(text, utcnow())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _out_problem(path: Path) -> str | None:
    """Why `--out` cannot be written, checked before the report is generated."""
    if path.is_dir():
        return f"{path} is a directory"
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"the directory {parent} does not exist"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    if not path.exists() and not os.access(parent, os.W_OK):
        return f"the directory {parent} is not writable"
    return None


def cmd_report(args: argparse.Namespace) -> int:
    """`opsagent report`."""
    from agent.client import ApiError

    if args.out is not None and (problem := _out_problem(args.out)):
        print(f"error: cannot write --out {args.out}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    loaded, endpoint, error = _locate(args)
    try:
        answer, why = _with_agent(endpoint, lambda client: _through_agent(client, args, loaded))
    except ApiError as exc:
        print(f"error: {exc.error}", file=sys.stderr)
        return EXIT_USAGE if exc.status != 503 else 3
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if answer is None:
        config = _local(loaded, error)
        try:
            answer = _read_store(lambda: _locally(config, args), why)
        except LookupError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return EXIT_USAGE
    if args.out is not None:
        source = answer.text_path if args.out.suffix == ".txt" else answer.html_path
        try:
            shutil.copyfile(source, args.out)
        except OSError as exc:
            print(f"error: cannot write --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        print(_describe(answer, args.out))
    return EXIT_OK


def _through_agent(client: Any, args: argparse.Namespace, config: Config | None) -> ReportInfo:
    name = args.name
    if name is None:  # the first configured report, as the agent knows them
        configured = (
            [r.name for r in config.reports]
            if config is not None
            else [r.name for r in client.reports(limit=1).configured]
        )
        if not configured:
            raise LookupError("no reports are configured (add one under reports: in agent.yaml)")
        name = configured[0]
    info: ReportInfo = client.report(name, period=args.period, send=args.send)
    deadline = time.monotonic() + SEND_WAIT_S
    while info.send_state == "pending" and time.monotonic() < deadline:
        time.sleep(0.25)  # the agent's outbox sends it; say how that went if it is quick
        listed = client.reports(name=name, limit=20).reports
        info = next((r for r in listed if r.id == info.id), info)
    return info


def _locally(config: Config, args: argparse.Namespace) -> ReportInfo:
    """Generate on the store directly (the agent is stopped); try the emails once."""
    from agent import store_reports
    from agent.api.models import ReportInfo
    from agent.notifiers.targets import Targets
    from agent.outbox import Outbox
    from agent.results import utcnow
    from agent.store import Store
    from reports.generate import parse_period, period_ending
    from reports.service import find_spec, produce

    spec = find_spec(config, args.name)
    if args.send and not spec.notify:
        raise LookupError(f"report {spec.name!r} has no `notify:` notifiers to send it to")
    now = utcnow()
    period = parse_period(args.period, now) if args.period else period_ending(spec, now)

    async def run() -> ReportInfo:
        store = Store.open(config.agent.store_path)
        targets = Targets(config.notify, agent_name=config.agent.name)
        try:
            await store.start()
            done = await produce(
                store, config, spec, period=period, now=now, trigger="cli", send=args.send
            )
            report_id = done.report.id
            outbox = Outbox(store, targets.deliver)
            for _ in range(CLI_SEND_ROUNDS if done.notices else 0):
                left = await store.run(lambda con: store_reports.pending_sends(con, report_id))
                if not left or not await outbox.run_once():
                    break
            stored = await store.run(lambda con: store_reports.get(con, report_id))
            assert stored is not None
            return ReportInfo.of(stored)
        finally:
            await targets.aclose()
            await store.close()

    return asyncio.run(run())


def _describe(info: ReportInfo, out: Path | None) -> str:
    lines = [
        f"report {info.name} #{info.id}, {_span(info.period_start, info.period_end)}: "
        f"{info.subject}",
        f"  html: {info.html_path}",
        f"  text: {info.text_path}",
    ]
    if out is not None:
        lines.append(f"  written to {out}")
    for d in info.deliveries:
        if d.state == "sent":
            lines.append(f"  emailed via {d.target}")
        elif d.state == "dead":
            lines.append(f"  email via {d.target} failed for good: {d.last_error}")
        else:
            why = f" (last attempt: {d.last_error})" if d.last_error else ""
            lines.append(f"  email via {d.target} queued: the agent's outbox sends it{why}")
    return "\n".join(lines)


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC"


def cmd_reports(args: argparse.Namespace) -> int:
    """`opsagent reports`."""
    loaded, endpoint, error = _locate(args)
    limit = max(1, min(args.limit, 1000))
    answer, why = _with_agent(endpoint, lambda client: client.reports(name=args.name, limit=limit))
    if answer is None:
        config = _local(loaded, error)
        answer = _read_store(lambda: _stored(config, args.name, limit), why)
    if args.json:
        print(answer.model_dump_json(indent=2))
        return EXIT_OK
    print(_render(answer))
    return EXIT_OK


def _stored(config: Config, name: str | None, limit: int) -> ReportsResponse:
    """What `GET /v1/reports` answers, from the store (the agent is stopped)."""
    from agent import store_reports
    from agent.api.models import ReportInfo, ReportsResponse, ScheduledReport
    from agent.store import Store

    with Store.open(config.agent.store_path, read_only=True) as store:
        rows = store.run_read_only(lambda con: store_reports.listing(con, name=name, limit=limit))
    configured = [
        ScheduledReport(
            name=spec.name,
            schedule=spec.schedule,
            period_s=spec.period.total_seconds(),
            notify=list(spec.notify),
            next_run=None,
        )
        for spec in config.reports
    ]
    return ReportsResponse(reports=[ReportInfo.of(r) for r in rows], configured=configured)


def _render(answer: ReportsResponse) -> str:
    from agent.tables import render_table

    out: list[str] = []
    if answer.configured:
        configured: list[tuple[str, ...]] = [
            (
                r.name,
                r.schedule,
                f"{r.period_s / 3600:g}h",
                ", ".join(r.notify) or "-",
                f"{r.next_run:%Y-%m-%d %H:%M:%S} UTC" if r.next_run else "-",
            )
            for r in answer.configured
        ]
        out.append(render_table(["report", "schedule", "period", "notify", "next run"], configured))
    else:
        out.append("no reports configured")
    out.append("")
    if not answer.reports:
        out.append("no reports generated yet")
        return "\n".join(out)
    rows = [
        (
            f"#{r.id}",
            r.name,
            _span(r.period_start, r.period_end),
            r.trigger,
            "n/a" if r.availability is None else f"{r.availability:.2f} %",
            r.send_state,
            r.html_path,
        )
        for r in answer.reports
    ]
    out.append(render_table(["id", "report", "period", "by", "available", "email", "html"], rows))
    return "\n".join(out)


__all__ = ["add_commands"]
