"""Render `ReportData` to a self-contained HTML page and to plain text.

jinja2 with autoescape on the HTML template (probe names, titles and reasons come from
the monitored systems) and `StrictUndefined` (a typo in a template is an error, never an
empty cell). The HTML has its CSS inline in a `<style>` block and its charts as inline
SVG from `reports.charts`: one file, no scripts, no external requests, at most 600 px
wide so it reads in an email client.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from reports import charts
from reports.data import ReportData
from reports.settings import SECTIONS, Section

_TEMPLATES = Path(__file__).parent / "templates"


def pct(value: float | None, digits: int = 2) -> str:
    """`99.95 %`, or `n/a` when nothing was counted."""
    return "n/a" if value is None else f"{value:.{digits}f} %"


def delta(current: float | None, previous: float | None) -> str:
    """Change in percentage points: `+0.12 pp`, `-1.00 pp`, or empty."""
    if current is None or previous is None:
        return ""
    return f"{current - previous:+.2f} pp"


def duration(seconds: float | None) -> str:
    """`40s`, `5m`, `1h 5m`, `2d 3h`; `n/a` for None."""
    if seconds is None:
        return "n/a"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m" if not secs else f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def ms(value: float | None) -> str:
    """`125 ms`, `n/a`."""
    return "n/a" if value is None else f"{value:.0f} ms"


def number(value: float | None) -> str:
    """Whole numbers without decimals, others with two; thousands separated."""
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def when(value: datetime) -> str:
    """`2026-11-01 10:05 UTC`."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), disabled_extensions=("txt.j2",), default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=pct, delta=delta, duration=duration, ms=ms, number=number, when=when)
    env.globals.update(
        sparkline=charts.sparkline,
        strip=charts.availability_strip,
        bars=charts.bars,
        color=charts.availability_color,
    )
    return env


def _values(
    data: ReportData, title: str, sections: Sequence[Section], agent_name: str
) -> dict[str, Any]:
    return {
        "data": data,
        "title": title,
        "sections": list(sections),
        "agent_name": agent_name,
    }


def subject(data: ReportData, title: str, agent_name: str) -> str:
    """`[opsagent] shop-prod daily report 2026-11-01: 93.18 % available, 3 incidents`."""
    day = data.period.start.strftime("%Y-%m-%d")
    return (
        f"[opsagent] {agent_name} {title} {day}: {pct(data.availability)} available, "
        f"{data.incidents.total} incident{'s' if data.incidents.total != 1 else ''}"
    )


def render_html(
    data: ReportData,
    *,
    title: str = "report",
    sections: Sequence[Section] = SECTIONS,
    agent_name: str = "opsagent",
) -> str:
    """The self-contained HTML page."""
    values = _values(data, title, sections, agent_name)
    return _environment().get_template("report.html.j2").render(values)


def render_text(
    data: ReportData,
    *,
    title: str = "report",
    sections: Sequence[Section] = SECTIONS,
    agent_name: str = "opsagent",
) -> str:
    """The plain-text version (the email's first part)."""
    values = _values(data, title, sections, agent_name)
    return _environment().get_template("report.txt.j2").render(values)
