"""The `reports:` settings model and the config-to-report glue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.config import Config
from agent.incidents.models import Policy
from reports.data import collect
from reports.generate import parse_period, period_ending, policies, request_for, write
from reports.settings import SECTIONS, ReportSpec, check_reports
from tests.reports.dataset import PERIOD, open_store

NOW = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)


def test_defaults() -> None:
    spec = ReportSpec.model_validate({"name": "daily", "cron": "0 7 * * *"})
    assert spec.period == timedelta(hours=24)
    assert tuple(spec.sections) == SECTIONS
    assert spec.every is None and spec.minutes_saved_per_fix == 15


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "d"}, "set exactly one of cron and every"),
        ({"name": "d", "cron": "0 7 * * *", "every": "1h"}, "set exactly one of cron and every"),
        ({"name": "d", "cron": "0 7 * *"}, "invalid cron expression"),
        ({"name": "d", "every": "1h", "slo": {"api": 100}}, "must be above 0 and below 100"),
        ({"name": "d", "every": "1h", "sections": ["noise", "noise"]}, "listed twice"),
        ({"name": "d", "every": "1h", "sections": ["weather"]}, "Input should be"),
        ({"name": "d", "every": "1h", "recipients": []}, "Extra inputs are not permitted"),
        ({"name": "d e", "every": "1h"}, "d e"),
    ],
    ids=[
        "no-schedule",
        "two-schedules",
        "bad-cron",
        "slo-100",
        "dup-section",
        "bad-section",
        "unknown-key",
        "bad-name",
    ],
)
def test_invalid(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReportSpec.model_validate(fields)


def test_cross_checks() -> None:
    raw = [
        {"name": "daily", "every": "1d", "notify": ["ops-email"]},
        {"name": "daily", "every": "1d", "notify": ["nobody", "ops-slack"]},
        "not a mapping",
    ]
    assert check_reports(raw, {"ops-email": "email", "ops-slack": "slack"}) == [
        (("reports", 1, "name"), "duplicate report name 'daily' (first used by reports[0])"),
        (
            ("reports", 1, "notify", 0),
            "unknown notifier 'nobody' (notify: ops-email, ops-slack)",
        ),
        (
            ("reports", 1, "notify", 1),
            "'ops-slack' is a slack notifier: reports are sent by email",
        ),
    ]
    assert check_reports(None, {}) == []


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("24h", NOW - timedelta(hours=24), NOW),
        ("7d", NOW - timedelta(days=7), NOW),
        (
            "2026-11-01..2026-11-02",
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 11, 2, tzinfo=UTC),
        ),
        (
            "2026-11-01T06:00..2026-11-01T07:30+01:00",
            datetime(2026, 11, 1, 6, tzinfo=UTC),
            datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
        ),
    ],
)
def test_parse_period(text: str, start: datetime, end: datetime) -> None:
    period = parse_period(text, NOW)
    assert (period.start, period.end) == (start, end)


@pytest.mark.parametrize("text", ["yesterday", "2026-11-02..2026-11-01", "2026-13-01..2026-11-02"])
def test_parse_period_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_period(text, NOW)


def _config() -> Config:
    return Config.model_validate(
        {
            "agent": {"name": "shop-prod"},
            "probes": [
                {
                    "name": "api",
                    "kind": "http",
                    "url": "http://127.0.0.1/",
                    "failures": 2,
                    "labels": {"group": "web"},
                },
                {"name": "db", "kind": "http", "url": "http://127.0.0.1/db", "labels": {}},
            ],
            "maintenance": [
                {"name": "nightly", "cron": "0 3 * * *", "duration": "2h", "match": "api"}
            ],
        }
    )


def test_request_for_config() -> None:
    spec = ReportSpec.model_validate({"name": "daily", "every": "1d", "slo": {"*": 99.5}})
    request = request_for(spec, _config(), PERIOD)
    assert request.groups == {"api": "web"}
    assert [(w.start.day, w.start.hour, w.match) for w in request.windows] == [
        (31, 3, "api"),
        (1, 3, "api"),
    ]
    assert request.slo == {"*": 99.5}
    assert period_ending(spec, NOW).start == NOW - timedelta(days=1)


def test_policies_for_known_and_removed_probes() -> None:
    lookup = policies(_config())
    assert lookup("api").failures == 2
    assert lookup("db").failures == 3
    assert lookup("gone") == Policy(failures=3, successes=2)


async def test_written_under_the_data_dir(tmp_path: Path) -> None:
    config = _config()
    spec = ReportSpec.model_validate({"name": "daily", "every": "1d", "sections": ["noise"]})
    store = await open_store(tmp_path / "store.duckdb")
    try:
        request = request_for(spec, config, PERIOD)
        data = await store.run(
            lambda con: collect(con, request, now=NOW, policy_for=policies(config))
        )
    finally:
        await store.close()
    assert data.probes[0].excluded == 2  # the cron window covers api 03:00-05:00
    html_path, text_path = write(data, spec, tmp_path / "var", config.agent.name)
    assert html_path == tmp_path / "var" / "reports" / "daily-20261102T0000Z.html"
    assert "shop-prod daily" in text_path.read_text()
    assert "NOISE" in text_path.read_text() and "INCIDENTS" not in text_path.read_text()
