"""The demo's live console: one line per probe result, faults and notices interleaved.

    +  4.1s  ✓ shop-api        ok      3 ms  status=200
    + 15.0s  ⚡ fault: shop API slowed to 1.5 s (probe timeout is 1 s)
    + 17.2s  ▼ shop-api        FAIL 1001 ms  timed out after 1s   (was ok)
    + 20.3s  ✉ notice: 🔔 OPENED       critical  shop-api failing — timed out after 1s
    + 27.3s  ▲ shop-api        OK      4 ms  recovered after 10.1s
    + 30.4s  ✉ notice: ✅ RESOLVED     critical  shop-api failing — recovered after 10s
    + 44.0s  🔧 repair #3 restart-shop planned: signal 0 processes matching ..., then start
    + 44.1s  🔧 repair #3 restart-shop executed: stopped 0 processes (0 killed), started pid 81
    + 47.2s  🔧 repair #3 restart-shop verified: the probe passes again

A change of state (ok → fail, fail → ok) gets its own mark and says what it was, so
the moment a fault is detected stands out. Notices are what the `console` notifier
prints (the demo routes its stdout through `notice_stream()`), so they show exactly
what a Slack channel or an inbox would receive, at the moment the outbox sent it.
Repairs are the agent's remediation steps (planned, executed, verified, ineffective,
breaker opened, ...) as the store records them, and escalations of incidents; the demo
polls the agent's store for them (`RemediationFeed` in the runner) and prints them with
`repair()`. Colours only when the stream is a terminal and NO_COLOR is unset.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from agent.incidents.models import Incident, IncidentState
from agent.results import ProbeResult, Status

_RESET = "\033[0m"
_STYLES = {
    "ok": "\033[32m",  # green
    "fail": "\033[31m",  # red
    "error": "\033[33m",  # yellow
    "change": "\033[1m",  # bold
    "fault": "\033[1;35m",  # bold magenta
    "notice": "\033[1;34m",  # bold blue
    "demo": "\033[36m",  # cyan
    "repair": "\033[1;33m",  # bold yellow
    "dim": "\033[2m",
}
_MARKS = {Status.OK: "✓", Status.FAIL: "✗", Status.ERROR: "!"}


@dataclass
class _ProbeState:
    status: Status
    since: float  # monotonic time of the last change


@dataclass
class ConsoleTimeline:
    """Prints probe results and fault lines; pass it to `Agent.subscribe()` as is."""

    stream: TextIO = field(default_factory=lambda: sys.stdout)
    color: bool | None = None  # None: decide from the stream
    width: int = 110
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    counts: dict[str, Counter[Status]] = field(default_factory=dict)
    _states: dict[str, _ProbeState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.color is None:
            self.color = _is_tty(self.stream) and not os.environ.get("NO_COLOR")
        if not self.started:
            self.started = self.clock()

    def start(self, at: float | None = None) -> None:
        """Reset the elapsed-time origin (monotonic seconds; default now)."""
        self.started = self.clock() if at is None else at

    def __call__(self, result: ProbeResult) -> None:
        """Print one result; called by the agent for every result it stores."""
        self.counts.setdefault(result.probe, Counter())[result.status] += 1
        self._write(self.format_result(result))

    def fault(self, line: str) -> None:
        """Print a fault-injector line (`⚡ fault: ...`, `↺ demo: ...`) at the current time."""
        style = "fault" if line.startswith("⚡") else "demo"
        self._write(f"{self._elapsed()}  {self._paint(line, style)}")

    def notice(self, line: str) -> None:
        """Print a line the console notifier wrote, marked as a notice, at the current time."""
        self._write(f"{self._elapsed()}  {self._paint(NOTICE_MARK + line, 'notice')}")

    def repair(self, line: str) -> None:
        """Print a remediation step or an escalation (`🔧 repair ...`) at the current time."""
        self._write(f"{self._elapsed()}  {self._paint(line, 'repair')}")

    def notice_stream(self) -> TextIO:
        """A text stream whose every line becomes a `notice()` (for `redirect_stdout`)."""
        return _NoticeLines(self)

    def message(self, line: str) -> None:
        """Print a plain line (start-up notes, the summary) without a timestamp."""
        self._write(line)

    def format_result(self, result: ProbeResult) -> str:
        """The line for one result; updates the per-probe state used to spot changes."""
        now = self.clock()
        previous = self._states.get(result.probe)
        changed = previous is not None and (previous.status is Status.OK) != result.ok
        text = _describe(result)
        if changed:
            assert previous is not None
            if result.ok:
                mark, style = "▲", "ok"
                text = f"recovered after {now - previous.since:.1f}s"
            else:
                mark, style = "▼", result.status.value
                text = f"{text}   (was ok)"
        else:
            mark, style = _MARKS[result.status], result.status.value
        if previous is None or changed:
            self._states[result.probe] = _ProbeState(result.status, now)
        else:
            previous.status = result.status
        label = result.status.value.upper() if changed or not result.ok else "ok"
        latency = f"{result.latency_ms:5.0f} ms" if result.latency_ms is not None else " " * 8
        head = f"{mark} {result.probe:<15} {label:<5} {latency}"
        elapsed = self._elapsed()
        room = max(20, self.width - len(elapsed) - len(head) - 4)
        if len(text) > room:  # clip the plain text, never inside a colour escape
            text = text[: room - 1] + "…"
        return f"{elapsed}  {self._paint(head, style, bold=changed)}  {text}"

    def summary(self, store_path: str | None = None) -> str:
        """Results per probe (ok / fail / error) and where to find them."""
        total = sum(sum(c.values()) for c in self.counts.values())
        lines = [
            "",
            f"Demo finished after {self.clock() - self.started:.0f}s: "
            f"{total} results from {len(self.counts)} probes.",
            f"  {'probe':<18} {'ok':>5} {'fail':>5} {'error':>6}",
        ]
        for probe in sorted(self.counts):
            c = self.counts[probe]
            lines.append(
                f"  {probe:<18} {c[Status.OK]:>5} {c[Status.FAIL]:>5} {c[Status.ERROR]:>6}"
            )
        if store_path:
            lines += [
                f"Every result is stored in {store_path}",
                "  try: opsagent query 'select probe, status, count(*) from results group by all'",
            ]
        return "\n".join(lines)

    def incidents(self, incidents: Sequence[Incident], since: datetime) -> str:
        """The incidents of this demo run: when each opened and resolved, and why.

        Shown: those opened or resolved since `since` (the wall-clock time the timeline
        started; incidents keep UTC times), and any still open. The store outlives a
        demo run, and so do its open incidents: times before the run are negative.
        """
        shown = [
            i
            for i in incidents
            if i.opened_at is not None
            and (
                i.opened_at >= since
                or i.resolved_at is None  # still open, perhaps from an earlier run
                or i.resolved_at >= since
            )
        ]
        if not shown:
            return "No incident opened: every failure cleared before its threshold."
        opened = sum(1 for i in shown if i.opened_at is not None and i.opened_at >= since)
        resolved = sum(1 for i in shown if i.state is IncidentState.RESOLVED)
        still = len(shown) - resolved
        lines = [
            f"Incidents: {opened} opened, {resolved} resolved"
            + (f", {still} still open" if still else ""),
        ]
        for i in sorted(shown, key=lambda i: (i.opened_at, i.id)):
            assert i.opened_at is not None
            when = f"opened {_offset(i.opened_at, since)}"
            if i.resolved_at is not None:
                lasted = (i.resolved_at - i.opened_at).total_seconds()
                end = f"{i.resolution or 'resolved'} {_offset(i.resolved_at, since)} after {lasted:.0f}s"
            else:
                end = i.state.value + (", flapping" if i.flapping else "")
            summary = i.summary if len(i.summary) <= 60 else i.summary[:59] + "…"
            lines.append(
                f"  #{i.id:<4} {i.probe:<16} {i.severity:<9} {when:<15} {end:<32} {summary}"
            )
        return "\n".join(lines)

    def remediations(self, runs: Sequence[RunSummary]) -> str:
        """The remediation runs of this demo run: how each ended, per remediation."""
        if not runs:
            return "No remediation ran."
        by_name: dict[str, Counter[str]] = {}
        for run in runs:
            outcome = run.state + (" + verified" if run.verified else "")
            by_name.setdefault(run.remediation, Counter())[outcome] += 1
        lines = [f"Remediations: {len(runs)} runs"]
        for name in sorted(by_name):
            counts = ", ".join(f"{n} {state}" for state, n in sorted(by_name[name].items()))
            lines.append(f"  {name:<18} {counts}")
        return "\n".join(lines)

    def _elapsed(self) -> str:
        return f"+{self.clock() - self.started:5.1f}s"

    def _paint(self, text: str, style: str, *, bold: bool = False) -> str:
        if not self.color:
            return text
        prefix = _STYLES.get(style, "") + (_STYLES["change"] if bold else "")
        return f"{prefix}{text}{_RESET}"

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


NOTICE_MARK = "✉ notice: "
REPAIR_MARK = "🔧 repair"
ESCALATION_MARK = "⬆ escalated"


@dataclass(frozen=True)
class RunSummary:
    """One remediation run, as the end-of-demo summary needs it."""

    remediation: str
    state: str
    verified: bool | None


def repair_line(run_id: int, remediation: str, step: str, detail: str) -> str:
    """The timeline line of one remediation step."""
    text = " ".join(detail.split())
    return f"{REPAIR_MARK} #{run_id} {remediation} {step}: {text}"


def escalation_line(incident_id: int, probe: str, reason: str) -> str:
    """The timeline line of an incident escalated by the agent."""
    return f"{ESCALATION_MARK} incident #{incident_id} {probe}: {' '.join(reason.split())}"


class _NoticeLines(io.StringIO):
    """Collects written text and hands each complete line to `ConsoleTimeline.notice`."""

    def __init__(self, timeline: ConsoleTimeline) -> None:
        super().__init__()
        self._timeline = timeline
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._timeline.notice(line)
        return len(text)

    def isatty(self) -> bool:
        return False


def _offset(at: datetime, since: datetime) -> str:
    seconds = (at - since).total_seconds()
    return f"{'+' if seconds >= 0 else '-'}{abs(seconds):.1f}s"


def _describe(result: ProbeResult) -> str:
    """The most useful short text, on one line: why it failed, else the probe's detail."""
    if result.error:
        text = result.error
    elif result.failed:
        more = f" (+{len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
        text = result.failed[0] + more
    else:
        text = result.detail
    return " ".join(text.split())


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
