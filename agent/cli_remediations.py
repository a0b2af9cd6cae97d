"""The remediation commands of `opsagent`: remediations, remediation, remediate, approve,
reject, undo, reset-breaker.

Every command that acts goes through the running agent's API, so it passes the same
guard, per-target lock and audit as automation; the two listing commands read the store
when the agent is stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.api.remediation_models import RunDetail, RunInfo

Command = Callable[[str, Callable[[argparse.Namespace], int], str, str], argparse.ArgumentParser]

# Exit codes of `remediate` / `approve`: the run's outcome, for scripts.
_OK_STATES = {"succeeded", "shadow", "awaiting_approval"}


def add_commands(command: Command) -> None:
    """Register the remediation sub-commands with `command(name, handler, help, description)`."""
    from agent import cli

    p = command(
        "remediations",
        cmd_remediations,
        "list remediation runs",
        "List remediation runs, newest first: what ran (or was refused, planned in shadow "
        "mode, or awaits approval), on which target, and how it ended. Asks the running "
        "agent, or reads the store when it is stopped.",
    )
    p.add_argument("--state", help="only runs in this state, e.g. awaiting_approval")
    p.add_argument("--incident", type=cli._incident_id, metavar="ID", help="only this incident")
    p.add_argument("--limit", type=cli._positive_int, default=50, help="most runs (default 50)")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = command(
        "remediation",
        cmd_remediation,
        "show a remediation run and its audit trail",
        "Show one run: its plan (what it changes, before and after), the guard's decision, "
        "output, verification, and every audit step with who did it.",
    )
    p.add_argument("id", type=cli._incident_id, metavar="RUN_ID", help="run id")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = command(
        "remediate",
        cmd_remediate,
        "run a remediation by hand (through the guard)",
        "Ask for a remediation now. It is planned, checked by the guard (mode, cooldown, "
        "attempts, back-off, circuit breaker, blast radius, approval, per-target lock) and "
        "run, then verified by re-running the incident's probe. --dry-run only plans and "
        "shows what the guard would say. Needs the running agent. Exit 0 when it succeeded "
        "(or waits for approval, or was planned in shadow mode), 1 when it failed or was "
        "refused.",
    )
    p.add_argument("name", metavar="NAME", help="remediation name (from remediations:)")
    p.add_argument(
        "--incident", type=cli._incident_id, metavar="ID", help="the incident it repairs"
    )
    p.add_argument(
        "--probe",
        metavar="PROBE",
        help="without --incident: the probe whose open incident or latest evidence it acts on "
        "(default: the one probe that names this remediation)",
    )
    p.add_argument("--dry-run", action="store_true", help="plan and ask the guard; run nothing")
    p.add_argument("--json", action="store_true", help="print as JSON")
    cli._actor_option(p)

    for name, verb, text in (
        ("approve", "approve", "approve a run awaiting approval (it runs now, then is verified)"),
        ("reject", "reject", "reject a run awaiting approval"),
        ("undo", "undo", "undo a run: restore the before-values it recorded"),
        ("reset-breaker", "reset-breaker", "reset the circuit breaker a run's target tripped"),
    ):
        p = command(name, _action(verb), text, text[0].upper() + text[1:] + ". Needs the agent.")
        p.add_argument("id", type=cli._incident_id, metavar="RUN_ID", help="run id")
        p.add_argument("--json", action="store_true", help="print as JSON")
        cli._actor_option(p)


def cmd_remediations(args: argparse.Namespace) -> int:
    """`opsagent remediations`."""
    from agent import cli
    from agent.client import stored_runs

    loaded, endpoint, error = cli._locate(args)
    answer, why = cli._with_agent(
        endpoint,
        lambda c: c.remediation_runs(state=args.state, incident=args.incident, limit=args.limit),
    )
    if answer is None:
        config = cli._local(loaded, error)
        answer = cli._read_store(
            lambda: stored_runs(config, state=args.state, incident=args.incident, limit=args.limit),
            why,
        )
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in answer.runs], indent=2))
    elif not answer.runs:
        print("no remediation runs")
    else:
        print(render_runs(answer.runs))
    return cli.EXIT_OK


def cmd_remediation(args: argparse.Namespace) -> int:
    """`opsagent remediation RUN_ID`."""
    from agent import cli
    from agent.client import ApiError, stored_run

    loaded, endpoint, error = cli._locate(args)
    try:
        answer, why = cli._with_agent(endpoint, lambda c: c.remediation_run(args.id))
    except ApiError as exc:
        return cli._refused(exc)
    if answer is None:
        config = cli._local(loaded, error)
        answer = cli._read_store(lambda: stored_run(config, args.id), why)
        if answer is None:
            print(f"error: no remediation run #{args.id}", file=sys.stderr)
            return cli.EXIT_USAGE
    print(answer.model_dump_json(indent=2) if args.json else render_run(answer))
    return cli.EXIT_OK


def cmd_remediate(args: argparse.Namespace) -> int:
    """`opsagent remediate NAME`."""
    from agent import cli

    actor = cli._actor(args)
    return _report(
        args,
        "run a remediation",
        lambda c: c.remediate(
            args.name,
            incident=args.incident,
            probe=args.probe,
            dry_run=args.dry_run,
            actor=actor,
        ),
    )


def _action(verb: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from agent import cli

        actor = cli._actor(args)
        return _report(
            args, f"{verb} a remediation run", lambda c: c.run_action(args.id, verb, actor=actor)
        )

    handler.__doc__ = f"`opsagent {verb} RUN_ID`."
    return handler


def _report(args: argparse.Namespace, what: str, action: Callable[..., RunDetail]) -> int:
    """Run `action` through the agent; print the run; exit 0 if it ended well, else 1."""
    from agent import cli

    detail: list[RunDetail] = []

    def keep(answer: RunDetail) -> str:
        detail.append(answer)
        return answer.model_dump_json(indent=2) if args.json else render_run(answer)

    code = cli._change(args, what, action, keep)
    if code != cli.EXIT_OK or not detail:
        return code
    state = detail[0].run.state
    ok = state in _OK_STATES or (state.startswith("dry_run:") and not detail[0].run.guard)
    return cli.EXIT_OK if ok else cli.EXIT_FAILED


def render_runs(runs: list[RunInfo]) -> str:
    """The `opsagent remediations` table."""
    from agent.tables import render_table

    rows = [
        [
            f"#{r.id}",
            r.remediation,
            r.target,
            f"#{r.incident_id}" if r.incident_id else "-",
            _state(r),
            r.actor,
            f"{r.created_at:%Y-%m-%d %H:%M:%S}" if r.created_at else "-",
            r.reason,
        ]
        for r in runs
    ]
    header = ["RUN", "REMEDIATION", "TARGET", "INCIDENT", "STATE", "BY", "AT (UTC)", "WHY"]
    return render_table(header, rows)


def render_run(detail: RunDetail) -> str:
    """One run: header, plan, result, audit steps."""
    r = detail.run
    title = "dry run (nothing recorded or run)" if r.id == 0 else f"run #{r.id}"
    lines = [
        f"{title}: {r.remediation} ({r.kind}) on {r.target}"
        + (f", incident #{r.incident_id}" if r.incident_id else ""),
        f"  state:   {_state(r)}",
        f"  why:     {r.reason}",
        f"  plan:    {r.plan.get('summary', '')}",
    ]
    for change in r.plan.get("changes", [])[:20]:
        lines.append(
            f"    {change.get('table')} {_kv(change.get('key'))}: "
            f"{_kv(change.get('before'))} -> {_kv(change.get('after'))}"
        )
    extra = len(r.plan.get("changes", [])) - 20
    if extra > 0:
        lines.append(f"    ... {extra} more changes")
    for skipped in r.plan.get("skipped", [])[:5]:
        lines.append(f"    skipped: {skipped}")
    if r.result:
        lines.append(f"  result:  {r.result.get('detail', '')}")
        output = str(r.result.get("output") or "").strip()
        if output:
            lines.append("  output:")
            lines.extend(f"    {line}" for line in output.splitlines()[-20:])
    if r.undone_by:
        lines.append(f"  undone by run #{r.undone_by}")
    if r.undo_of:
        lines.append(f"  undoes run #{r.undo_of}")
    if detail.steps:
        lines.append("  audit:")
        for step in detail.steps:
            lines.append(f"    {step.at:%H:%M:%S} {step.step:<16} {step.actor:<24} {step.detail}")
    return "\n".join(lines)


def _state(run: RunInfo) -> str:
    if run.verified is True:
        return f"{run.state} (verified)"
    if run.verified is False:
        return f"{run.state} (probe still failing)"
    if run.guard:
        return f"{run.state} by {run.guard}"
    return run.state


def _kv(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
