"""Golden files of the HTML and text reports; charts; escaping.

Regenerate the goldens after an intended change with
`OPSAGENT_UPDATE_GOLDEN=1 pytest tests/reports` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reports import charts
from reports.data import HealingFigures, ReportData
from reports.render import duration, render_html, render_text, subject

GOLDEN = Path(__file__).parent / "golden"


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("OPSAGENT_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with OPSAGENT_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def test_html_golden(report_data: ReportData) -> None:
    _check_golden("daily.html", render_html(report_data, title="daily", agent_name="shop-prod"))


def test_text_golden(report_data: ReportData) -> None:
    _check_golden("daily.txt", render_text(report_data, title="daily", agent_name="shop-prod"))


def test_subject(report_data: ReportData) -> None:
    assert subject(report_data, "daily", "shop-prod") == (
        "[opsagent] shop-prod daily 2026-11-01: 93.18 % available, 3 incidents"
    )


def test_sections_chosen_and_ordered(report_data: ReportData) -> None:
    text = render_text(report_data, sections=["noise", "availability"])
    assert "INCIDENTS" not in text and "SELF-HEALING" not in text
    assert text.index("NOISE") < text.index("AVAILABILITY")


def test_no_remediations_recorded(report_data: ReportData) -> None:
    empty = HealingFigures(
        recorded=False, by_state={}, refused_by_guard={}, fixed=0, minutes_saved=0
    )
    data = report_data.model_copy(update={"healing": empty})
    assert "no remediations recorded" in render_html(data)
    assert "no remediations recorded" in render_text(data)


def test_html_escapes_data(report_data: ReportData) -> None:
    probe = report_data.probes[0].model_copy(update={"probe": "<script>x</script>"})
    data = report_data.model_copy(update={"probes": (probe, *report_data.probes[1:])})
    html = render_html(data)
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>x</script>" in render_text(data)  # text is not HTML


def test_html_is_self_contained(report_data: ReportData) -> None:
    html = render_html(report_data)
    assert "<script" not in html and "<link" not in html and "src=" not in html
    assert html.count("<svg") >= 2 * len(report_data.probes) + 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "n/a"),
        (0, "0s"),
        (40, "40s"),
        (300, "5m"),
        (330, "5m 30s"),
        (3900, "1h 5m"),
        (183600, "2d 3h"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_sparkline_gaps_and_flat() -> None:
    svg = charts.sparkline([1, 2, None, 3, 3], width=40, height=10)
    assert svg.count("<polyline") == 2
    assert 'points="0,8 10,5"' in svg
    assert charts.sparkline([5, 5], width=10, height=10).count('points="0,5 10,5"') == 1
    assert "no data" in charts.sparkline([None, None])


def test_strip_colours() -> None:
    svg = charts.availability_strip([100.0, 99.5, 50.0, None], width=40)
    fills = [charts.GOOD, charts.WARN, charts.BAD, charts.EMPTY]
    assert [svg.index(f'fill="{f}"') for f in fills] == sorted(
        svg.index(f'fill="{f}"') for f in fills
    )


def test_bars_escape_labels() -> None:
    svg = charts.bars([("a<b", 2.0), ("c", 1.0)])
    assert "a&lt;b" in svg and 'width="340"' in svg
