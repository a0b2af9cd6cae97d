"""The `opsagent` command line.

Exit codes: 0 success, 1 a probe failed its expectations, 2 bad input (config,
arguments, an unknown incident or silence, or one in a state that refuses the action:
acknowledging a resolved incident), 3 the store or the running agent could not be used
(including a command that changes state while the agent is stopped), 130 interrupted.

While the agent runs, every command acts through its control API (found via the config's
data directory). When it does not, the read-only commands (`status`, `query`,
`incidents`, `incident`, `silences`) open the store directly, `probe` runs locally, and
the commands that change state (`reload`, `ack`, `resolve`, `silence`, `unsilence`) say
that the agent must be running.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent import __version__
from agent.errors import ConfigError, OpsAgentError, StoreError

if TYPE_CHECKING:
    from agent.api.models import IncidentDetail, IncidentInfo, SilenceInfo
    from agent.client import AgentClient, Endpoint
    from agent.config import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3

Handler = Callable[[argparse.Namespace], int]
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except ConfigError as exc:
        print(
            f"config error ({len(exc.problems)} problem{'s' * (len(exc.problems) != 1)}):",
            file=sys.stderr,
        )
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORE
    except OpsAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per verb."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="config file (default: $OPSAGENT_CONFIG, else ./agent.yaml)",
    )
    parser = argparse.ArgumentParser(
        prog="opsagent",
        description="Self-hosted observability and self-healing agent for business backends.",
        epilog="Run `opsagent COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"opsagent {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(
        name: str, handler: Handler, help_text: str, description: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=description)
        p.set_defaults(handler=handler)
        return p

    p = command(
        "run",
        cmd_run,
        "run the agent in the foreground",
        "Run the agent until SIGTERM or Ctrl-C: probe on schedule, store every result. "
        "On SIGTERM it stops scheduling, waits for probes in flight and flushes the store.",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-format", choices=["json", "text"], help="default: text on a terminal, else JSON"
    )

    command(
        "check",
        cmd_check,
        "validate the config and exit",
        "Validate the config file. Prints every problem as FILE:LINE: path: message and exits 2 "
        "if there are any, 0 otherwise.",
    )

    p = command(
        "probe",
        cmd_probe,
        "run one probe once and print its result",
        "Run the named probe once, print the result, and exit 0 when its expectations pass, "
        "1 when they fail. While the agent runs, the agent runs it (the result is stored "
        "like a scheduled run); otherwise it runs here and nothing is stored.",
    )
    p.add_argument("name", help="probe name from the config")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = command(
        "status",
        cmd_status,
        "show each probe's last state",
        "Show each configured probe: last status, last value, age of the last result, "
        "consecutive failures, and missed/overlapping runs. Asks the running agent, or reads "
        "the store when the agent is stopped.",
    )
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = command(
        "query",
        cmd_query,
        "run a read-only SQL query on the store",
        "Run one read-only SQL statement (SELECT/WITH/DESCRIBE/SHOW) against the store. "
        "Tables: results, schema_version, ... Statements that write are refused.",
    )
    p.add_argument("sql", help="the SQL statement, quoted")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print rows as a JSON array of objects")
    fmt.add_argument("--csv", action="store_true", help="print rows as CSV with a header")
    p.add_argument(
        "--max-rows", type=_positive_int, default=1000, metavar="N", help="row limit (default 1000)"
    )
    p.add_argument(
        "--timeout",
        type=_duration_arg,
        default=10.0,
        metavar="DURATION",
        help="interrupt the query after this long (default 10s, at most 60s through the agent)",
    )

    command(
        "reload",
        cmd_reload,
        "make the running agent reload its config",
        "Ask the running agent to re-read and re-validate its config file and apply it "
        "without a restart (like SIGHUP). An invalid file is refused with every problem "
        "listed (exit 2) and the agent keeps its running config. Exit 3 if the agent is not running.",
    )

    command(
        "schema",
        cmd_schema,
        "print the JSON Schema of agent.yaml",
        "Print the JSON Schema of the config file, for editors (e.g. yaml-language-server).",
    )

    p = command(
        "incidents",
        cmd_incidents,
        "list open incidents",
        "List open and acknowledged incidents, newest first (--all adds pending and "
        "resolved ones). Asks the running agent, or reads the store when it is stopped.",
    )
    p.add_argument("--all", action="store_true", help="also pending and resolved incidents")
    p.add_argument(
        "--limit", type=_positive_int, default=200, metavar="N", help="at most N (default 200)"
    )
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = command(
        "incident",
        cmd_incident,
        "show one incident, its timeline and its notifications",
        "Show an incident: its state, summary, values and evidence, every transition "
        "(who, when, why) and every notification with its delivery. Asks the running agent, "
        "or reads the store when it is stopped.",
    )
    p.add_argument("id", type=_incident_id, metavar="ID", help="incident id, e.g. 12 or #12")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = command(
        "ack",
        cmd_ack,
        "acknowledge an open incident",
        "Acknowledge an open incident: reminders and escalation stop, and notifiers update "
        "their message. Needs the running agent.",
    )
    p.add_argument("id", type=_incident_id, metavar="ID", help="incident id, e.g. 12 or #12")
    p.add_argument("--comment", metavar="TEXT", help="why, or what you are doing about it")
    p.add_argument(
        "--for",
        dest="expires_in",
        type=_duration_text,
        metavar="DURATION",
        help="the acknowledgement lapses after this long (e.g. 2h): the incident is open "
        "again and reminders resume",
    )
    _actor_option(p)

    p = command(
        "resolve",
        cmd_resolve,
        "resolve an incident by hand",
        "Resolve an incident by hand (resolution `manual`). If the probe still fails, a new "
        "incident opens after the usual threshold. Needs the running agent.",
    )
    p.add_argument("id", type=_incident_id, metavar="ID", help="incident id, e.g. 12 or #12")
    p.add_argument("--comment", metavar="TEXT", help="kept in the incident's timeline")
    _actor_option(p)

    p = command(
        "silence",
        cmd_silence,
        "silence notices of matching incidents for a while",
        "Suppress notices (never transitions) of incidents matching MATCHER: a probe name "
        "or glob, then optional key=value labels and severity=LEVEL, e.g. "
        "'shop-* severity=critical'. Quote a glob so the shell leaves it alone. An "
        "incident whose opening was silenced is announced when the silence ends. "
        "Needs the running agent.",
    )
    p.add_argument("matcher", nargs="+", metavar="MATCHER", help="probe glob, key=value ...")
    p.add_argument(
        "--for",
        dest="duration",
        type=_duration_text,
        required=True,
        metavar="DURATION",
        help="how long, e.g. 30m, 2h, 1d",
    )
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (shown with the silence)")
    p.add_argument(
        "--end-on-resolve",
        action="store_true",
        help="end the silence as soon as an incident it covers resolves",
    )
    _actor_option(p)

    p = command(
        "silences",
        cmd_silences,
        "list silences in force",
        "List the silences in force (--all adds those that ended). Asks the running agent, "
        "or reads the store when it is stopped.",
    )
    p.add_argument("--all", action="store_true", help="also silences that have ended")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = command(
        "unsilence",
        cmd_unsilence,
        "end a silence now",
        "End a silence now; notices of the incidents it covered flow again. Needs the "
        "running agent.",
    )
    p.add_argument("id", type=_incident_id, metavar="ID", help="silence id")

    p = command(
        "demo",
        cmd_demo,
        "run the embedded demo shop with the agent watching it",
        "Start a small simulated shop backend that injects faults on a timeline, run the agent "
        "against it with the config (default ./agent.yaml) and print a live timeline.",
    )
    p.add_argument(
        "--duration",
        type=_duration_arg,
        default=None,
        metavar="DURATION",
        help="stop after this long, e.g. 90s or 5m (default: until Ctrl-C)",
    )
    p.add_argument(
        "--data-dir", type=Path, default=None, help="where the demo shop keeps its files"
    )
    from agent.cli_reports import add_commands as add_report_commands

    add_report_commands(command)  # report, reports
    from agent.cli_remediations import add_commands as add_remediation_commands

    add_remediation_commands(command)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _duration_arg(text: str) -> float:
    from agent.durations import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _incident_id(text: str) -> int:
    """`12` or `#12`."""
    digits = text.strip().removeprefix("#")
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"expected an id such as 12, got {text!r}")
    return int(digits)


def _duration_text(text: str) -> str:
    """A duration checked here (a clear exit 2), passed on as written."""
    seconds = _duration_arg(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0s, got {text!r}")
    return text


def _actor_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as",
        dest="actor",
        metavar="NAME",
        help="who is acting, for the audit trail (default: $USER@host via cli)",
    )


def _load(args: argparse.Namespace) -> tuple[Any, Path]:
    from agent.config_loader import load_config, resolve_config_path

    path = resolve_config_path(args.config)
    return load_config(path), path


def cmd_check(args: argparse.Namespace) -> int:
    """`opsagent check`."""
    config, path = _load(args)
    print(f"{path}: ok ({len(config.probes)} probes, {len(config.sources)} sources)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`opsagent run`."""
    from agent.daemon import Agent
    from agent.logs import setup_logging

    json_logs = None if args.log_format is None else args.log_format == "json"
    setup_logging(args.log_level, json_logs=json_logs)
    config, path = _load(args)
    return asyncio.run(Agent(config, config_path=path).run())


def cmd_probe(args: argparse.Namespace) -> int:
    """`opsagent probe NAME`."""
    from agent.client import ApiError
    from agent.config_loader import resolve_config_path
    from agent.probe_spec import RunContext
    from agent.redaction import Redactor
    from agent.runner import run_probe
    from probes import prepare

    loaded, endpoint, error = _locate(args)
    try:
        result, _ = _with_agent(endpoint, lambda client: client.run_probe(args.name))
    except ApiError as exc:
        if exc.status != 404:
            raise
        print(f"error: {exc.error}", file=sys.stderr)
        return EXIT_USAGE
    if result is None:  # the agent is not running: run it here
        config, path = _local(loaded, error), resolve_config_path(args.config)
        spec = config.probe(args.name)
        if spec is None:
            known = ", ".join(p.name for p in config.probes) or "none"
            print(
                f"error: no probe named {args.name!r} in {path} (probes: {known})", file=sys.stderr
            )
            return EXIT_USAGE

        async def once() -> Any:
            ctx = RunContext(base_dir=path.parent, sources=dict(config.sources))
            prepare([spec], ctx)
            try:
                return await run_probe(spec, ctx, redactor=Redactor.from_model(config))
            finally:
                await ctx.aclose()

        result = asyncio.run(once())
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(f"{result.probe} ({result.kind}): {result.status.value.upper()}  {result.detail}")
        for reason in result.failed:
            print(f"  ✗ {reason}")
        for key, value in _flatten(result.values):
            print(f"  {key} = {value}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = (
            f"{prefix}.{key}"
            if prefix and key.isidentifier()
            else (f'{prefix}["{key}"]' if prefix else key)
        )
        if isinstance(value, dict):
            out.extend(_flatten(value, name))
        else:
            out.append((name, value))
    return out


def cmd_status(args: argparse.Namespace) -> int:
    """`opsagent status`."""
    from agent.client import stored_overview, stored_remediation_totals
    from agent.selfcheck import SELF_KIND, SELF_PROBE
    from agent.status import (
        collect_status,
        render_overview,
        render_remediation_totals,
        render_status,
    )

    loaded, endpoint, error = _locate(args)
    answer, why = _with_agent(endpoint, lambda client: client.status())
    if answer is not None:
        rows, incidents, notifications = answer.probes, answer.incidents, answer.notifications
        repairs = answer.remediations
    else:
        config = _local(loaded, error)
        rows = _read_store(lambda: collect_status(config, builtin=[(SELF_PROBE, SELF_KIND)]), why)
        incidents, notifications = _read_store(lambda: stored_overview(config), why)
        repairs = _read_store(lambda: stored_remediation_totals(config), why)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    else:
        print(render_status(rows))
        print()
        print(render_overview(incidents, notifications))
        if repairs:
            print(render_remediation_totals(repairs))
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    """`opsagent query SQL`."""
    from agent.api.sql import run_query
    from agent.client import ApiError
    from agent.store import QueryResult, Store
    from agent.tables import render_csv, render_json, render_table

    loaded, endpoint, error = _locate(args)
    try:
        answer, why = _with_agent(
            endpoint,
            lambda client: client.query(
                args.sql, max_rows=args.max_rows, timeout_s=min(args.timeout, 60.0)
            ),
        )
    except ApiError as exc:
        if exc.status == 400:  # refused or failed: the same exit as when reading the store
            raise StoreError(exc.error) from None
        raise
    if answer is not None:
        result = QueryResult(answer.columns, [tuple(row) for row in answer.rows], answer.truncated)
    else:
        config = _local(loaded, error)

        def read() -> QueryResult:
            with Store.open(config.agent.store_path, read_only=True) as store:
                return asyncio.run(
                    run_query(store, args.sql, max_rows=args.max_rows, timeout_s=args.timeout)
                )

        result = _read_store(read, why)
    columns, rows, truncated = result
    if args.json:
        print(render_json(columns, rows))
    elif args.csv:
        print(render_csv(columns, rows), end="")
    else:
        print(render_table(columns, rows))
        print(f"({len(rows)} row{'s' * (len(rows) != 1)}{', truncated' if truncated else ''})")
    if truncated:
        print(f"warning: output cut at {args.max_rows} rows (use --max-rows)", file=sys.stderr)
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    """`opsagent reload`."""
    from agent.client import AgentClient, AgentUnavailable, ApiError
    from agent.config_loader import resolve_config_path

    # The agent judges the file in its own environment and answers with every problem.
    _, endpoint, error = _locate(args)
    path = resolve_config_path(args.config)
    if endpoint is None:
        if error is not None:
            raise error  # not even the data directory could be read from the file
        print("error: the agent is not running (it has no API address)", file=sys.stderr)
        return EXIT_STORE
    try:
        with AgentClient(endpoint) as client:
            answer = client.reload()
    except AgentUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORE
    except ApiError as exc:
        print(f"error: {exc.error}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    changes = [
        f"{label} {', '.join(names)}"
        for label, names in (
            ("added", answer.added),
            ("removed", answer.removed),
            ("changed", answer.rescheduled),
        )
        if names
    ]
    summary = "; ".join(changes) or ("settings changed" if answer.changed else "no changes")
    print(f"reloaded {path}: {summary}")
    for line in answer.not_applied:
        print(f"warning: not applied: {line}", file=sys.stderr)
    return EXIT_OK


def _locate(args: argparse.Namespace) -> tuple[Config | None, Endpoint | None, ConfigError | None]:
    """The config (None if it does not validate here), the running agent's endpoint, the error.

    The agent may run with an environment this shell lacks (`${VAR}`s set by its service,
    secret files only it can read): the agent is then still found from the raw YAML.
    """
    from agent.client import Location, find_agent
    from agent.config_loader import resolve_config_path

    config: Config | None = None
    error: ConfigError | None = None
    try:
        config, _ = _load(args)
        where: Location | None = Location.of(config)
    except ConfigError as exc:
        error = exc
        where = Location.from_file(resolve_config_path(args.config))
    if where is None:
        return config, None, error
    try:
        return config, find_agent(where), error
    except OSError as exc:
        raise OpsAgentError(
            f"cannot read the API token {where.token_file}: {exc.strerror or exc} "
            "(run as the agent's user, or a member of its group)"
        ) from None


def _with_agent(
    endpoint: Endpoint | None, action: Callable[[AgentClient], T]
) -> tuple[T | None, str]:
    """`action` against the running agent: (its answer, "") or (None, why no agent answered)."""
    from agent.client import AgentClient, AgentUnavailable

    if endpoint is None:
        return None, "the agent has not run yet"
    try:
        with AgentClient(endpoint) as client:
            return action(client), ""
    except AgentUnavailable as exc:
        return None, str(exc)


def _local(config: Config | None, error: ConfigError | None) -> Config:
    """The config for working without the agent; its error if it did not validate."""
    if config is None:
        assert error is not None
        raise error
    return config


def _read_store(read: Callable[[], T], why: str) -> T:
    """`read()` the store directly (no agent answered); on failure, say why the API was not used."""
    try:
        return read()
    except StoreError as exc:
        if "in use" in str(exc):
            raise StoreError(f"{exc}; and {why}") from None
        raise


# -- incidents and silences ----------------------------------------------------------------


def cmd_incidents(args: argparse.Namespace) -> int:
    """`opsagent incidents`."""
    from agent.client import stored_incidents

    loaded, endpoint, error = _locate(args)
    answer, why = _with_agent(
        endpoint, lambda client: client.incidents(all=args.all, limit=args.limit)
    )
    if answer is None:
        config = _local(loaded, error)
        answer = _read_store(lambda: stored_incidents(config, all=args.all, limit=args.limit), why)
    rows = answer.incidents
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    elif not rows:
        print("no incidents" if args.all else "no open incidents")
    else:
        print(render_incidents(rows))
    return EXIT_OK


def cmd_incident(args: argparse.Namespace) -> int:
    """`opsagent incident ID`."""
    from agent.client import ApiError, stored_incident

    loaded, endpoint, error = _locate(args)
    try:
        answer, why = _with_agent(endpoint, lambda client: client.incident(args.id))
    except ApiError as exc:
        return _refused(exc)
    if answer is None:
        config = _local(loaded, error)
        answer = _read_store(lambda: stored_incident(config, args.id), why)
        if answer is None:
            print(f"error: no incident #{args.id}", file=sys.stderr)
            return EXIT_USAGE
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        print(render_incident(answer))
    return EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    """`opsagent ack ID`."""
    actor = _actor(args)
    return _change(
        args,
        "acknowledge an incident",
        lambda client: client.acknowledge(
            args.id, actor=actor, comment=args.comment, expires_in=args.expires_in
        ),
        lambda i: (
            f"acknowledged #{i.id} {i.title} as {i.acknowledged_by}"
            + (f" until {_clock(i.ack_expires_at)}" if i.ack_expires_at else "")
        ),
    )


def cmd_resolve(args: argparse.Namespace) -> int:
    """`opsagent resolve ID`."""
    actor = _actor(args)
    return _change(
        args,
        "resolve an incident",
        lambda client: client.resolve(args.id, actor=actor, comment=args.comment),
        lambda i: f"resolved #{i.id} {i.title} ({i.resolution})",
    )


def cmd_silence(args: argparse.Namespace) -> int:
    """`opsagent silence MATCHER --for DURATION --reason TEXT`."""
    from agent.incidents.models import Matcher

    matcher = " ".join(args.matcher)
    try:
        Matcher.parse(matcher)
    except ValueError as exc:
        print(f"error: bad matcher {matcher!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    actor = _actor(args)
    return _change(
        args,
        "add a silence",
        lambda client: client.silence(
            matcher,
            args.duration,
            args.reason,
            created_by=actor,
            end_on_resolve=args.end_on_resolve,
        ),
        lambda s: (
            f"silence #{s.id} on {s.matcher!r} until {_clock(s.ends_at)}"
            + (" (or until it resolves)" if s.end_on_resolve else "")
        ),
    )


def cmd_silences(args: argparse.Namespace) -> int:
    """`opsagent silences`."""
    from agent.client import stored_silences

    loaded, endpoint, error = _locate(args)
    answer, why = _with_agent(endpoint, lambda client: client.silences(all=args.all))
    if answer is None:
        config = _local(loaded, error)
        answer = _read_store(lambda: stored_silences(config, all=args.all), why)
    rows = answer.silences
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    elif not rows:
        print("no silences" if args.all else "no silences in force")
    else:
        print(render_silences(rows))
    return EXIT_OK


def cmd_unsilence(args: argparse.Namespace) -> int:
    """`opsagent unsilence ID`."""
    return _change(
        args,
        "end a silence",
        lambda client: client.unsilence(args.id),
        lambda s: f"silence #{s.id} on {s.matcher!r} ended",
    )


def _change(
    args: argparse.Namespace,
    what: str,
    action: Callable[[AgentClient], T],
    done: Callable[[T], str],
) -> int:
    """Run a state-changing `action` through the running agent and print `done(answer)`."""
    from agent.client import AgentClient, AgentUnavailable, ApiError

    _, endpoint, error = _locate(args)
    if endpoint is None:
        if error is not None:
            raise error  # not even the data directory could be read from the file
        print(_needs_agent(what, "it has no API address"), file=sys.stderr)
        return EXIT_STORE
    try:
        with AgentClient(endpoint) as client:
            answer = action(client)
    except AgentUnavailable as exc:
        print(
            _needs_agent(what, str(exc).removeprefix("the agent is not running ")), file=sys.stderr
        )
        return EXIT_STORE
    except ApiError as exc:
        return _refused(exc)
    print(done(answer))
    return EXIT_OK


def _needs_agent(what: str, why: str) -> str:
    return (
        f"error: the agent is not running ({why.strip('()')}): to {what}, the agent must be "
        "running (start it with `opsagent run`); the read-only commands work without it"
    )


def _refused(exc: Any) -> int:
    """An error answer of the agent (unknown id, wrong state, bad value): exit 2."""
    if exc.status == 503:
        print(f"error: {exc.error}", file=sys.stderr)
        return EXIT_STORE
    print(f"error: {exc.error}", file=sys.stderr)
    for problem in exc.problems[1:]:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_USAGE


def _actor(args: argparse.Namespace) -> str:
    """`--as NAME`, else `$USER@host via cli`."""
    if args.actor:
        return str(args.actor)
    user = os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    return f"{user}@{socket.gethostname()} via cli"


def render_incidents(rows: Sequence[IncidentInfo], now: datetime | None = None) -> str:
    """The `opsagent incidents` table."""
    from agent.results import utcnow
    from agent.tables import render_table

    now = now or utcnow()
    table = []
    for i in rows:
        started = i.opened_at or i.pending_since
        end = i.resolved_at or now
        table.append(
            [
                f"#{i.id}",
                _state(i),
                i.severity,
                i.title,
                _ago(started, now),
                _span(started, end),
                i.acknowledged_by or "",
                i.summary,
            ]
        )
    columns = ["id", "state", "severity", "incident", "since", "for", "ack by", "summary"]
    return render_table(columns, table)


def render_incident(detail: IncidentDetail, now: datetime | None = None) -> str:
    """`opsagent incident ID`: the incident, its timeline, its notifications."""
    from agent.notifiers._text import evidence_caption, evidence_text
    from agent.results import utcnow
    from agent.tables import render_table

    now = now or utcnow()
    i = detail.incident
    lines = [f"#{i.id} {i.title}: {_state(i).upper()}", ""]
    facts: list[tuple[str, str]] = [
        ("severity", i.severity),
        ("probe", i.probe + (f" (entity {i.entity})" if i.entity else "")),
        ("summary", i.summary),
        ("pending since", _clock(i.pending_since)),
    ]
    if i.opened_at:
        facts.append(("opened", f"{_clock(i.opened_at)} ({_ago(i.opened_at, now)})"))
    if i.acknowledged_by and i.acknowledged_at:
        ack = f"by {i.acknowledged_by} at {_clock(i.acknowledged_at)}"
        if i.ack_comment:
            ack += f": {i.ack_comment}"
        if i.ack_expires_at:
            ack += f" (lapses at {_clock(i.ack_expires_at)})"
        facts.append(("acknowledged", ack))
    if i.resolved_at:
        lasted = _span(i.opened_at or i.pending_since, i.resolved_at)
        facts.append(("resolved", f"{_clock(i.resolved_at)}, {i.resolution}, after {lasted}"))
    if i.suppressed_by:
        facts.append(("notices", f"suppressed by {i.suppressed_by}"))
    if i.escalated_at:
        facts.append(("escalated", _clock(i.escalated_at)))
    if i.reminders_sent:
        facts.append(("reminders", str(i.reminders_sent)))
    if i.labels:
        facts.append(("labels", " ".join(f"{k}={v}" for k, v in sorted(i.labels.items()))))
    if i.values:
        facts.append(("values", " ".join(f"{k}={v}" for k, v in _flatten(i.values))))
    width = max(len(label) for label, _ in facts)
    lines += [f"  {label:<{width}}  {value}" for label, value in facts]
    if i.evidence:
        lines += ["", f"{evidence_caption(i.evidence)}:"]
        lines += [f"  {line}" for line in evidence_text(i.evidence).splitlines()]
    lines += ["", "Timeline:"]
    timeline = [
        [_clock(e.at), e.event, e.actor, _transition(e.from_state, e.to_state), e.reason]
        for e in detail.events
    ]
    lines += [
        f"  {line}"
        for line in render_table(["time", "event", "by", "state", "why"], timeline).splitlines()
    ]
    lines += ["", "Notifications:"]
    if detail.notifications:
        notices = [
            [
                f"#{n.id}",
                n.event,
                n.target,
                n.state + (" ✗" if n.state == "dead" else ""),
                n.attempts,
                _clock(n.sent_at) if n.sent_at else "",
                n.last_error or "",
            ]
            for n in detail.notifications
        ]
        columns = ["id", "event", "to", "state", "attempts", "sent", "last error"]
        lines += [f"  {line}" for line in render_table(columns, notices).splitlines()]
    else:
        lines.append("  none (no notifier configured for it, or nothing announced yet)")
    return "\n".join(lines)


def render_silences(rows: Sequence[SilenceInfo], now: datetime | None = None) -> str:
    """The `opsagent silences` table."""
    from agent.results import utcnow
    from agent.tables import render_table

    now = now or utcnow()
    table = []
    for s in rows:
        if s.active:
            state = f"in force, {_span(now, s.ends_at)} left"
        else:
            state = f"ended {_ago(s.ended_at or s.ends_at, now)}"
        table.append(
            [
                f"#{s.id}",
                s.matcher,
                state + (", ends on resolve" if s.end_on_resolve and s.active else ""),
                _clock(s.starts_at),
                _clock(s.ends_at),
                s.created_by,
                s.reason,
            ]
        )
    columns = ["id", "matcher", "state", "from", "until", "by", "reason"]
    return render_table(columns, table)


def _state(i: IncidentInfo) -> str:
    words: list[str] = [i.state]
    if i.flapping:
        words.append("flapping")
    if i.suppressed_by:
        words.append("silenced" if i.suppressed_by.startswith("silence") else "in maintenance")
    elif i.maintenance and i.state != "resolved":
        words.append("in maintenance")
    return ", ".join(words)


def _transition(before: str | None, after: str | None) -> str:
    return f"{before} → {after}" if before and after and before != after else ""


def _clock(value: datetime) -> str:
    from agent.notifiers._text import format_time

    return format_time(value)


def _span(start: datetime, end: datetime) -> str:
    from agent.notifiers._text import format_age

    return format_age(end - start)


def _ago(value: datetime, now: datetime) -> str:
    return f"{_span(value, now)} ago"


def cmd_schema(args: argparse.Namespace) -> int:
    """`opsagent schema`."""
    from agent.config import Config

    schema = Config.model_json_schema()
    schema["title"] = "opsagent agent.yaml"
    print(json.dumps(schema, indent=2))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """`opsagent demo`."""
    from agent.config_loader import resolve_config_path
    from agent.demo.runner import run_demo
    from agent.logs import setup_logging

    # Errors only: the timeline already shows every failure and recovery (and notice),
    # so the agent's one-line-per-transition warnings would say everything twice.
    setup_logging("error", json_logs=False)
    path = resolve_config_path(args.config)
    data_dir = args.data_dir or path.parent / "var" / "demo"
    try:
        return asyncio.run(run_demo(path, args.duration, data_dir))
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
