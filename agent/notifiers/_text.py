"""Wording shared by every notifier, so Slack, email and the console say the same thing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent.notices import IncidentSnapshot, Notice, NoticeEvent

EVENT_EMOJI: dict[NoticeEvent, str] = {
    NoticeEvent.OPENED: "🔔",
    NoticeEvent.ACKNOWLEDGED: "👀",
    NoticeEvent.SILENCED: "🔕",
    NoticeEvent.RESOLVED: "✅",
    NoticeEvent.REMINDER: "⏰",
    NoticeEvent.ESCALATED: "📣",
    NoticeEvent.FLAPPING: "🔁",
    NoticeEvent.APPROVAL: "🛠️",
}
SEVERITY_EMOJI: dict[str, str] = {"critical": "🔴", "high": "🟠", "warning": "🟡", "info": "🔵"}
RESOLVED_EMOJI = "✅"
MAX_EVIDENCE_ROWS = 10
_MAX_CELL = 40


def format_age(value: timedelta) -> str:
    """A human duration: `45s`, `4m 12s`, `2h 5m`, `3d 4h` (two units at most)."""
    seconds = max(0, int(value.total_seconds()))
    units = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
    parts: list[str] = []
    for unit, size in units:
        count, seconds = divmod(seconds, size)
        if count or (unit == "s" and not parts):
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def format_time(value: datetime) -> str:
    """`2024-05-01 12:00:00 UTC`; naive times are taken as UTC, as the store keeps them."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _elapsed(start: datetime, end: datetime) -> timedelta:
    # Mixing naive (store) and aware (caller) times must not raise in a notifier.
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return end - start


def state_label(incident: IncidentSnapshot) -> str:
    """The incident's state with its overlays: `acknowledged by alice, silenced`."""
    label: str = incident.state
    if incident.state == "acknowledged" and incident.acknowledged_by:
        label = f"acknowledged by {incident.acknowledged_by}"
    elif incident.state == "resolved" and incident.resolution:
        label = f"resolved ({incident.resolution})"
    overlays = [
        name
        for name, on in (
            ("silenced", incident.silenced),
            ("flapping", incident.flapping),
            ("in maintenance", incident.maintenance),
        )
        if on
    ]
    return ", ".join([label, *overlays])


def headline(notice: Notice) -> str:
    """`CRITICAL shop-api failing` for an opening, `RESOLVED shop-api failing` after."""
    word = (
        notice.incident.severity.upper()
        if notice.event is NoticeEvent.OPENED
        else notice.event.value.upper()
    )
    return f"{word} {notice.incident.title}"


def detail(notice: Notice) -> str:
    """One line saying what happened in this event, with the actor and comment if any."""
    incident = notice.incident
    event = notice.event
    age = format_age(_elapsed(incident.opened_at, notice.created_at))
    by = f" by {notice.actor}" if notice.actor else ""
    if event is NoticeEvent.OPENED:
        text = incident.summary
    elif event is NoticeEvent.ACKNOWLEDGED:
        text = f"acknowledged{by}"
    elif event is NoticeEvent.SILENCED:
        text = f"silenced{by}"
    elif event is NoticeEvent.RESOLVED:
        end = incident.resolved_at or notice.created_at
        how = incident.resolution or "resolved"
        text = f"{how} after {format_age(_elapsed(incident.opened_at, end))}"
    elif event is NoticeEvent.REMINDER:
        text = f"still {incident.state} after {age}, not acknowledged: {incident.summary}"
    elif event is NoticeEvent.ESCALATED:
        text = f"not acknowledged after {age}: {incident.summary}"
    elif event is NoticeEvent.APPROVAL:
        text = f"a repair awaits approval (run #{notice.approval_run})"
    else:  # FLAPPING
        text = "changing state too often; no more pages until it is stable"
    if notice.comment:
        text = f"{text}: {notice.comment}"
    return text


def console_line(notice: Notice) -> str:
    """`🔔 OPENED       critical  shop-api failing — timed out after 1s`."""
    emoji = EVENT_EMOJI[notice.event]
    event = notice.event.value.upper()
    return f"{emoji} {event:<12} {notice.incident.severity:<8}  {notice.incident.title} — {detail(notice)}"


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # one row per line, whatever the data holds
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def evidence_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Columns (in first-seen order) and the first rows as short strings."""
    shown = rows[:MAX_EVIDENCE_ROWS]
    columns: list[str] = []
    for row in shown:
        columns.extend(key for key in row if key not in columns)
    return columns, [[_cell(row.get(column)) for column in columns] for row in shown]


def evidence_text(rows: list[dict[str, Any]]) -> str:
    """The evidence as an aligned plain-text table, for code blocks and text emails."""
    columns, cells = evidence_table(rows)
    if not columns:
        return ""
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [columns, *cells]
    ]
    return "\n".join(lines)


def evidence_caption(rows: list[dict[str, Any]]) -> str:
    """`Evidence` or `Evidence (first 10 of 37 rows)`."""
    if len(rows) > MAX_EVIDENCE_ROWS:
        return f"Evidence (first {MAX_EVIDENCE_ROWS} of {len(rows)} rows)"
    return "Evidence"


def links(incident: IncidentSnapshot, link_base: str | None) -> list[tuple[str, str]]:
    """(text, url) pairs: the incident's own page under `link_base`, then its links."""
    found: list[tuple[str, str]] = []
    if link_base:
        found.append(
            (f"Incident #{incident.id}", f"{link_base.rstrip('/')}/incidents/{incident.id}")
        )
    found.extend(incident.links.items())
    return found
