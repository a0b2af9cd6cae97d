"""The `opsagent` command line.

Exit codes: 0 success, 1 a probe failed its expectations, 2 bad input (config,
arguments), 3 the store or the running agent could not be used, 130 interrupted.

While the agent runs, `status`, `query`, `probe` and `reload` act through its control API
(found via the config's data directory); when it does not, the read-only commands open
the store directly and `probe` runs locally.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent import __version__
from agent.errors import ConfigError, OpsAgentError, StoreError

if TYPE_CHECKING:
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
    from agent.selfcheck import SELF_KIND, SELF_PROBE
    from agent.status import collect_status, render_status

    loaded, endpoint, error = _locate(args)
    rows, why = _with_agent(endpoint, lambda client: client.status().probes)
    if rows is None:
        config = _local(loaded, error)
        rows = _read_store(lambda: collect_status(config, builtin=[(SELF_PROBE, SELF_KIND)]), why)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    else:
        print(render_status(rows))
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

    setup_logging("warning", json_logs=False)
    path = resolve_config_path(args.config)
    data_dir = args.data_dir or path.parent / "var" / "demo"
    try:
        return asyncio.run(run_demo(path, args.duration, data_dir))
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
