"""The console timeline: one line per result, state changes marked, colour only on a TTY."""

from __future__ import annotations

import contextlib
import io
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.demo.timeline import ConsoleTimeline, RunSummary, escalation_line, repair_line
from agent.incidents.models import Incident, IncidentState
from agent.results import ProbeResult, Status


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def result(status: Status, probe: str = "shop-api", **fields: Any) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        kind="http",
        started_at=datetime(2026, 5, 1, tzinfo=UTC),
        duration_ms=3.0,
        status=status,
        **fields,
    )


def timeline() -> tuple[ConsoleTimeline, io.StringIO, FakeClock]:
    out, clock = io.StringIO(), FakeClock()
    return ConsoleTimeline(stream=out, clock=clock), out, clock


def test_one_line_per_result_with_elapsed_mark_and_detail() -> None:
    tl, out, clock = timeline()
    clock.now += 4.1
    tl(result(Status.OK, latency_ms=3.2, detail="200 OK"))
    clock.now += 1
    tl(result(Status.FAIL, probe="payment-backlog", failed=["stuck_payments == 0 (was 3)", "x"]))

    first, second = out.getvalue().splitlines()
    assert first.startswith("+  4.1s  ✓ shop-api")
    assert "ok" in first and "3 ms" in first and first.endswith("200 OK")
    assert second.startswith("+  5.1s  ✗ payment-backlog")
    assert "FAIL" in second and second.endswith("stuck_payments == 0 (was 3) (+1 more)")


def test_state_changes_are_marked_both_ways() -> None:
    tl, out, clock = timeline()
    tl(result(Status.OK))
    clock.now += 3
    tl(result(Status.ERROR, error="timed out after 1s"))
    clock.now += 3
    tl(result(Status.FAIL, failed=["status == 200 (was 500)"]))  # still down: no change
    clock.now += 4
    tl(result(Status.OK))

    lines = out.getvalue().splitlines()
    assert "▼ shop-api" in lines[1] and "ERROR" in lines[1]
    assert lines[1].endswith("timed out after 1s   (was ok)")
    assert "✗ shop-api" in lines[2] and "(was ok)" not in lines[2]
    assert "▲ shop-api" in lines[3] and lines[3].endswith("recovered after 7.0s")


def test_fault_lines_interleave_with_results() -> None:
    tl, out, clock = timeline()
    tl(result(Status.OK))
    clock.now += 15
    tl.fault("⚡ fault: shop API slowed to 1.5 s")
    assert out.getvalue().splitlines()[1] == "+ 15.0s  ⚡ fault: shop API slowed to 1.5 s"


def test_colours_only_when_asked_or_on_a_tty() -> None:
    plain, _, _ = timeline()
    assert plain.color is False  # a StringIO is not a terminal

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    coloured = ConsoleTimeline(stream=tty)
    coloured(result(Status.FAIL, failed=["latency_ms < 500 (was 1501)"]))
    coloured.fault("⚡ fault: x")
    assert coloured.color is True
    assert "\033[31m" in tty.getvalue() and "\033[1;35m" in tty.getvalue()
    plain(result(Status.FAIL))
    assert "\033[" not in plain.stream.getvalue()  # type: ignore[attr-defined]


def test_no_color_env_turns_colours_off(monkeypatch: Any) -> None:
    monkeypatch.setenv("NO_COLOR", "1")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert ConsoleTimeline(stream=Tty()).color is False


def test_long_details_are_clipped_to_one_line() -> None:
    tl, out, _ = timeline()
    tl(result(Status.FAIL, error="connect refused\n" + "x" * 500))
    (line,) = out.getvalue().splitlines()
    assert len(line) <= tl.width and line.endswith("…")


def test_summary_counts_results_per_probe_and_points_at_the_store() -> None:
    tl, _, clock = timeline()
    for status in (Status.OK, Status.OK, Status.FAIL, Status.ERROR):
        tl(result(status))
    tl(result(Status.OK, probe="shop-port"))
    clock.now += 30

    text = tl.summary("var/opsagent.duckdb")

    assert "after 30s: 5 results from 2 probes" in text
    rows = {
        line.split()[0]: line.split()[1:]
        for line in text.splitlines()
        if line.startswith("  shop-")
    }
    assert rows == {"shop-api": ["2", "1", "1"], "shop-port": ["1", "0", "0"]}
    assert "var/opsagent.duckdb" in text
    assert "opsagent query 'select probe, status, count(*) from results group by all'" in text


def test_console_notices_join_the_timeline_marked() -> None:
    tl, out, clock = timeline()
    clock.now += 20.3
    with contextlib.redirect_stdout(tl.notice_stream()):
        print("🔔 OPENED       critical  shop-api failing — timed out after 1s", flush=True)
        sys.stdout.write("✅ RESOLVED     critical  shop-api ")  # a line in two writes
        sys.stdout.write("failing — recovered after 10s\n")
    assert out.getvalue().splitlines() == [
        "+ 20.3s  ✉ notice: 🔔 OPENED       critical  shop-api failing — timed out after 1s",
        "+ 20.3s  ✉ notice: ✅ RESOLVED     critical  shop-api failing — recovered after 10s",
    ]


def test_incidents_of_the_run_with_when_they_opened_and_resolved() -> None:
    tl, _, _ = timeline()
    since = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def incident(id: int, opened: float | None, resolved: float | None, **fields: Any) -> Incident:
        at = lambda s: None if s is None else since + timedelta(seconds=s)  # noqa: E731
        return Incident(
            id=id,
            fingerprint=f"p{id}",
            probe=fields.pop("probe", "shop-api"),
            entity=None,
            severity="critical",
            state=IncidentState.RESOLVED if resolved is not None else IncidentState.OPEN,
            title="t",
            summary=fields.pop("summary", "timed out after 1s"),
            pending_since=at(opened or 0) or since,
            opened_at=at(opened),
            resolved_at=at(resolved),
            resolution="recovered" if resolved is not None else None,
            **fields,
        )

    text = tl.incidents(
        [
            incident(1, -300, -200),  # an earlier demo's: not shown
            incident(2, -10, 5, probe="shop-port"),  # carried over, resolved in this run
            incident(3, 20.3, 30.4),
            incident(4, 60, None, flapping=True, summary="x" * 100),
            incident(5, -400, None, probe="stock-drift"),  # an earlier demo's, still open
        ],
        since,
    )
    lines = text.splitlines()
    assert lines[0] == "Incidents: 2 opened, 2 resolved, 2 still open"
    assert [line.split()[:2] for line in lines[1:]] == [
        ["#5", "stock-drift"],
        ["#2", "shop-port"],
        ["#3", "shop-api"],
        ["#4", "shop-api"],
    ]
    assert "opened -400.0s" in lines[1]
    assert "opened +20.3s" in lines[3] and "recovered +30.4s after 10s" in lines[3]
    assert "open, flapping" in lines[4] and lines[4].endswith("x" * 59 + "…")
    assert tl.incidents([incident(1, -300, -200)], since).startswith("No incident opened")


def test_repair_steps_and_escalations_join_the_timeline() -> None:
    tl, out, clock = timeline()
    clock.now += 44
    tl.repair(repair_line(3, "restart-shop", "executed", "stopped 0 processes,\nstarted pid 81"))
    tl.repair(escalation_line(7, "shop-products", "remediation clear-shop-cache did not fix it"))
    assert out.getvalue().splitlines() == [
        "+ 44.0s  🔧 repair #3 restart-shop executed: stopped 0 processes, started pid 81",
        "+ 44.0s  ⬆ escalated incident #7 shop-products: remediation clear-shop-cache did not "
        "fix it",
    ]


def test_remediation_summary_counts_outcomes_per_remediation() -> None:
    tl, _, _ = timeline()
    runs = [
        RunSummary("clear-shop-cache", "ineffective", False),
        RunSummary("resync-stock", "succeeded", True),
        RunSummary("clear-shop-cache", "ineffective", False),
        RunSummary("clear-shop-cache", "refused", None),
    ]
    assert tl.remediations(runs).splitlines() == [
        "Remediations: 4 runs",
        "  clear-shop-cache   2 ineffective, 1 refused",
        "  resync-stock       1 succeeded + verified",
    ]
    assert tl.remediations([]) == "No remediation ran."
