"""Report fixtures: the hand-computed data set collected at a frozen time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.incidents.models import Policy
from reports.data import HealingFigures, ReportData, ReportRequest, collect
from tests.reports.dataset import GROUPS, PERIOD, WINDOWS, open_store

NOW = datetime(2026, 11, 2, 0, 5, tzinfo=UTC)

# Fixed so the goldens do not depend on whether this checkout has the remediation table.
HEALING = HealingFigures(
    recorded=True,
    by_state={"ineffective": 1, "refused": 1, "succeeded": 1},
    refused_by_guard={"cooldown": 1},
    fixed=1,
    minutes_saved=20.0,
)


@pytest.fixture
async def report_data(tmp_path: Path) -> ReportData:
    """The data set's report, frozen at NOW, with fixed self-healing figures."""
    store = await open_store(tmp_path / "store.duckdb")
    request = ReportRequest(
        period=PERIOD, windows=WINDOWS, groups=GROUPS, slo={"api": 99.0}, minutes_saved_per_fix=20
    )
    policy = Policy(failures=2, successes=1)
    try:
        data = await store.run(
            lambda con: collect(con, request, now=NOW, policy_for=lambda _: policy)
        )
    finally:
        await store.close()
    return data.model_copy(update={"healing": HEALING})
