"""From config to a finished report: the glue the scheduler, the CLI and the API call.

```python
period = parse_period("7d", now)                      # or "2026-11-01..2026-11-08"
request = request_for(spec, config, period)
data = await store.run(lambda con: collect(con, request, now=now, policy_for=policies(config)))
html_path, text_path = write(data, spec, config.agent.data_dir, config.agent.name)
```
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from agent.config import Config
from agent.durations import parse_duration
from agent.incidents.models import Policy
from agent.incidents.settings import policy_for
from reports.data import Period, ReportData, ReportRequest, windows_from
from reports.render import render_html, render_text
from reports.settings import ReportSpec


def _moment(text: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC when it names no zone)."""
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid date {text!r}: expected e.g. 2026-11-01 or 2026-11-01T07:00"
        ) from None
    if len(text) == 10:
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_period(text: str, now: datetime) -> Period:
    """`24h`, `7d` (ending now) or `FROM..TO` (ISO dates or date-times, UTC)."""
    if ".." in text:
        first, _, last = text.partition("..")
        start, end = _moment(first), _moment(last)
    else:
        length = parse_duration(text)
        start, end = now - length, now
    if end <= start:
        raise ValueError(f"invalid period {text!r}: it ends before it starts")
    return Period(start=start, end=end)


def period_ending(spec: ReportSpec, now: datetime) -> Period:
    """A scheduled report's period: `spec.period` up to now."""
    return Period(start=now - spec.period, end=now)


def request_for(spec: ReportSpec, config: Config, period: Period) -> ReportRequest:
    """What to compute for `spec`: groups from the probes' `group` label, maintenance
    windows from the config, the spec's SLO targets and value names."""
    groups = {p.name: p.labels["group"] for p in config.probes if "group" in p.labels}
    return ReportRequest(
        period=period,
        windows=windows_from(config.maintenance, period),
        groups=groups,
        slo=dict(spec.slo),
        integrity_values=tuple(spec.integrity_values),
        longest=spec.longest,
        minutes_saved_per_fix=spec.minutes_saved_per_fix,
    )


def policies(config: Config) -> Callable[[str], Policy]:
    """Each probe's incident policy for the replay; the defaults for removed probes."""
    by_name = {p.name: policy_for(p, config.incidents) for p in config.probes}
    default = Policy(
        failures=config.incidents.failures,
        successes=config.incidents.successes,
        flap_window=config.incidents.flap_window,
        flap_threshold=config.incidents.flap_threshold,
    )
    return lambda probe: by_name.get(probe, default)


def write(data: ReportData, spec: ReportSpec, data_dir: Path, agent_name: str) -> tuple[Path, Path]:
    """Store the HTML and text under `<data_dir>/reports/`; returns both paths.

    Named `<name>-<period end>` (to the second); a second report with the same name and
    end gets `-2`, `-3`...: a stored report's files are never overwritten, so a queued
    email always sends the report it was queued for.
    """
    folder = Path(data_dir) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    end = data.period.end.astimezone(UTC)
    stem = (
        f"{spec.name}-{end:%Y%m%dT%H%MZ}"
        if end.second == 0
        else f"{spec.name}-{end:%Y%m%dT%H%M%SZ}"
    )
    sections = list(spec.sections)
    html = render_html(data, title=spec.name, sections=sections, agent_name=agent_name)
    text = render_text(data, title=spec.name, sections=sections, agent_name=agent_name)
    for n in range(1, 1000):
        suffix = "" if n == 1 else f"-{n}"
        html_path, text_path = folder / f"{stem}{suffix}.html", folder / f"{stem}{suffix}.txt"
        try:
            with html_path.open("x", encoding="utf-8") as out:  # "x": never overwrite
                out.write(html)
        except FileExistsError:
            continue
        text_path.write_text(text, "utf-8")
        return html_path, text_path
    raise OSError(f"too many reports named {stem} in {folder}")


__all__ = [
    "parse_period",
    "period_ending",
    "policies",
    "request_for",
    "write",
]
