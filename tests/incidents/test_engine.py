"""The incident state machine, table-driven in the style of `promtool test rules`.

Each case is a timeline: one result every 10 s from a series string (`x` fails, `.`
passes, `_` no result), the clock ticking at every step, and human actions at given
seconds. Out come the exact transitions and notices, as readable lines.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from agent.incidents.engine import IncidentEngine, Outcome
from agent.incidents.models import Incident, IncidentState, Matcher, Policy, Silence
from agent.results import ProbeResult, Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=10)
Action = Callable[[IncidentEngine, datetime], Outcome]


def result(
    t: datetime, failed: bool, evidence: list[dict[str, object]] | None = None
) -> ProbeResult:
    return ProbeResult(
        probe="shop-api",
        kind="http",
        started_at=t,
        duration_ms=1.0,
        status=Status.FAIL if failed else Status.OK,
        error="connect refused 127.0.0.1:8080" if failed else None,
        evidence=evidence or [],
    )


@dataclass
class Case:
    id: str
    series: str
    expect: list[str]
    policy: Policy = field(default_factory=lambda: Policy(notify=("slack",)))
    actions: dict[int, Action] = field(default_factory=dict)
    maintenance: tuple[int, int] | None = None  # seconds [start, end)


def run(case: Case) -> list[str]:
    ids = itertools.count(1)
    window = case.maintenance

    def in_maintenance(_: Incident, at: datetime) -> bool:
        return window is not None and window[0] <= (at - T0).total_seconds() < window[1]

    engine = IncidentEngine(lambda _: case.policy, lambda: next(ids), in_maintenance=in_maintenance)
    lines: list[str] = []

    def record(out: Outcome) -> None:
        for t in out.transitions:
            lines.append(f"{(t.at - T0).seconds}s #{t.incident_id} {t.event}")
        for n in out.notices:
            lines.append(
                f"{(n.at - T0).seconds}s #{n.incident_id} notice {n.event.value} -> {','.join(n.targets)}"
            )

    for i, ch in enumerate(case.series):
        now = T0 + i * STEP
        action = case.actions.get(int((now - T0).total_seconds()))
        if action is not None:
            record(action(engine, now))
        if ch != "_":
            record(engine.observe(result(now, ch == "x")))
        record(engine.tick(now))
    return lines


def ack(expires_s: int | None = None) -> Action:
    return lambda e, now: e.acknowledge(
        1,
        "alice",
        now,
        comment="on it",
        expires_after=timedelta(seconds=expires_s) if expires_s else None,
    )


def silence(seconds: int, matcher: str = "shop-*", end_on_resolve: bool = False) -> Action:
    return lambda e, now: e.add_silence(
        Silence(
            7,
            Matcher.parse(matcher),
            now,
            now + timedelta(seconds=seconds),
            "deploy",
            "bob",
            end_on_resolve,
        ),
        now,
    )


CASES = [
    Case("one-blip-is-cleared-silently", "x..", ["0s #1 pending", "20s #1 cleared"]),
    Case(
        "opens-after-3-failures-resolves-after-2-passes",
        "xxx..",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 notice opened -> slack",
            "40s #1 resolved",
            "40s #1 notice resolved -> slack",
        ],
    ),
    Case(
        "one-pass-does-not-resolve",
        "xxx.xx..",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 notice opened -> slack",
            "70s #1 resolved",
            "70s #1 notice resolved -> slack",
        ],
    ),
    Case(
        "for-duration-replaces-the-count",
        "xxxxx..",
        [
            "0s #1 pending",
            "30s #1 opened",
            "30s #1 notice opened -> slack",
            "60s #1 resolved",
            "60s #1 notice resolved -> slack",
        ],
        policy=Policy(notify=("slack",), for_=timedelta(seconds=25)),
    ),
    Case(
        "acknowledged-then-ack-expires",
        "xxxxxxxxxx",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 notice opened -> slack",
            "30s #1 acknowledged",
            "30s #1 notice acknowledged -> slack",
            "90s #1 ack_expired",
            "90s #1 notice reminder -> slack",
        ],
        actions={30: ack(expires_s=60)},
    ),
    Case(
        "silenced-from-the-start-nothing-is-sent",
        "xxxx..",
        ["0s #1 pending", "30s #1 opened", "30s #1 suppressed", "50s #1 resolved"],
        actions={0: silence(3600)},
        policy=Policy(notify=("slack",), failures=4),
    ),
    Case(
        "silence-ends-while-open-then-announced",
        "xxxxxx",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 suppressed",
            "30s #1 announced",
            "30s #1 notice opened -> slack",
        ],
        actions={0: silence(30)},
    ),
    Case(
        "silence-on-an-announced-incident-updates-it-once",
        "xxxxx..",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 notice opened -> slack",
            "30s #1 silenced",
            "30s #1 notice silenced -> slack",
            "60s #1 resolved",
            "60s #1 suppressed",
        ],
        actions={30: silence(3600)},
    ),
    Case(
        "silence-for-another-probe-does-not-apply",
        "xxx",
        ["0s #1 pending", "20s #1 opened", "20s #1 notice opened -> slack"],
        actions={0: silence(3600, matcher="warehouse-*")},
    ),
    Case(
        "maintenance-suppresses-then-announces",
        "xxxxxxxx",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 suppressed",
            "60s #1 announced",
            "60s #1 notice opened -> slack",
        ],
        maintenance=(0, 60),
    ),
    Case(
        "reminders-stop-at-the-cap",
        "xxxxxxxxxxxxxxx",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 notice opened -> slack",
            "50s #1 reminder",
            "50s #1 notice reminder -> slack",
            "80s #1 reminder",
            "80s #1 notice reminder -> slack",
        ],
        policy=Policy(notify=("slack",), remind_every=timedelta(seconds=30), max_reminders=2),
    ),
    Case(
        "escalates-once-when-unacknowledged",
        "xxxxxxxxx",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 notice opened -> slack",
            "60s #1 escalated",
            "60s #1 notice escalated -> pager",
        ],
        policy=Policy(
            notify=("slack",), escalate_after=timedelta(seconds=40), escalate_to=("pager",)
        ),
    ),
    Case(
        "acknowledged-incidents-do-not-escalate",
        "xxxxxxxxx",
        [
            "0s #1 pending",
            "20s #1 opened",
            "20s #1 notice opened -> slack",
            "30s #1 acknowledged",
            "30s #1 notice acknowledged -> slack",
        ],
        policy=Policy(
            notify=("slack",), escalate_after=timedelta(seconds=40), escalate_to=("pager",)
        ),
        actions={30: ack()},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_timeline(case: Case) -> None:
    assert run(case) == case.expect


def test_flapping_probe_makes_one_incident_and_at_most_two_notices() -> None:
    # Alternating for 10 minutes of simulated time, then steady: stable (and resolved)
    # once no flip has happened for a whole 10-minute window, at 590 s + 600 s.
    lines = run(Case("flap", "x." * 30 + "." * 66, []))
    notices = [line for line in lines if " notice " in line]
    assert {line.split()[1] for line in lines} == {"#1"}
    assert notices == ["50s #1 notice flapping -> slack", "1190s #1 notice resolved -> slack"]
    assert "50s #1 flapping" in lines and "1190s #1 stable" in lines


def test_one_incident_per_entity_when_configured() -> None:
    ids = itertools.count(1)
    engine = IncidentEngine(
        lambda _: Policy(notify=("slack",), failures=1, incident_per="id"), lambda: next(ids)
    )
    stuck = [{"id": 11, "amount": 5}, {"id": 12, "amount": 7}]
    first = engine.observe(result(T0, True, stuck))
    assert sorted(i.fingerprint for i in first.incidents) == ["shop-api/11", "shop-api/12"]
    assert [n.event.value for n in first.notices] == ["opened", "opened"]
    # 12 is fixed, 11 stays stuck: only 12 counts a pass (resolves after 2).
    engine.observe(result(T0 + STEP, True, [{"id": 11, "amount": 5}]))
    out = engine.observe(result(T0 + 2 * STEP, True, [{"id": 11, "amount": 5}]))
    assert [(t.incident_id, t.event) for t in out.transitions] == [(2, "resolved")]
    assert set(engine.active) == {"shop-api/11"}
    assert engine.active["shop-api/11"].evidence == [{"id": 11, "amount": 5}]


def test_a_restart_neither_reopens_nor_realerts() -> None:
    stored = Incident(
        id=41,
        fingerprint="shop-api",
        probe="shop-api",
        entity=None,
        severity="critical",
        state=IncidentState.OPEN,
        title="shop-api failing",
        summary="connect refused",
        pending_since=T0,
        opened_at=T0 + 2 * STEP,
        notified=True,
        last_notified_at=T0 + 2 * STEP,
    )
    engine = IncidentEngine(lambda _: Policy(notify=("slack",)), lambda: 99)
    engine.load([stored])
    still_failing = engine.observe(result(T0 + 10 * STEP, True))
    assert still_failing.notices == [] and [t.event for t in still_failing.transitions] == []
    engine.observe(result(T0 + 11 * STEP, False))
    recovered = engine.observe(result(T0 + 12 * STEP, False))
    assert [(n.incident_id, n.event.value) for n in recovered.notices] == [(41, "resolved")]


def test_acknowledging_a_pending_or_unknown_incident_is_refused() -> None:
    engine = IncidentEngine(lambda _: Policy(), lambda: 1)
    engine.observe(result(T0, True))
    with pytest.raises(ValueError, match="still pending"):
        engine.acknowledge(1, "alice", T0)
    with pytest.raises(KeyError):
        engine.acknowledge(2, "alice", T0)


def test_end_on_resolve_silence_ends_with_the_incident() -> None:
    ids = itertools.count(1)
    engine = IncidentEngine(
        lambda _: Policy(notify=("slack",), failures=1, successes=1), lambda: next(ids)
    )
    engine.add_silence(
        Silence(
            3,
            Matcher.parse("shop-api"),
            T0,
            T0 + timedelta(hours=2),
            "known",
            "bob",
            end_on_resolve=True,
        ),
        T0,
    )
    engine.observe(result(T0, True))
    engine.observe(result(T0 + STEP, False))
    assert engine.silences[3].ended_at == T0 + STEP


@pytest.mark.parametrize(
    ("text", "probe", "labels", "severity", "matches"),
    [
        ("shop-*", "shop-api", {}, "high", True),
        ("shop-*", "warehouse", {}, "high", False),
        ("probe=shop-api severity=critical", "shop-api", {}, "high", False),
        ("* team=payments", "x", {"team": "payments"}, "info", True),
        ("* team=payments", "x", {"team": "search"}, "info", False),
    ],
)
def test_matcher(
    text: str, probe: str, labels: dict[str, str], severity: str, matches: bool
) -> None:
    assert Matcher.parse(text).matches(probe, labels, severity) is matches


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shop x", "expected key=value, got 'x'"),
        ("severity=urgent", "severity must be info, warning, high or critical"),
    ],
)
def test_matcher_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Matcher.parse(text)
