"""The demo's live console: one line per probe result, faults interleaved.

    +  4.1s  ✓ shop-api        ok      3 ms  status=200
    + 15.0s  ⚡ fault: shop API slowed to 1.5 s (probe timeout is 1 s)
    + 17.2s  ▼ shop-api        FAIL 1001 ms  timed out after 1s   (was ok)
    + 27.3s  ▲ shop-api        OK      4 ms  recovered after 10.1s

A change of state (ok → fail, fail → ok) gets its own mark and says what it was, so
the moment a fault is detected stands out. Colours only when the stream is a terminal
and NO_COLOR is unset.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from agent.results import ProbeResult, Status

_RESET = "\033[0m"
_STYLES = {
    "ok": "\033[32m",  # green
    "fail": "\033[31m",  # red
    "error": "\033[33m",  # yellow
    "change": "\033[1m",  # bold
    "fault": "\033[1;35m",  # bold magenta
    "demo": "\033[36m",  # cyan
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
