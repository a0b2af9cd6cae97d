"""Small inline SVG charts for the HTML report: no scripts, no external files.

Each function takes plain numbers and returns `Markup` (safe to insert in an
autoescaped template); every text it draws is escaped. Coordinates are rounded to one
decimal so the output is stable for golden files. Charts scale to their container
(`width: 100%` with a viewBox), so they never overflow a 600 px email.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

GOOD = "#2e7d32"
WARN = "#f9a825"
BAD = "#c62828"
EMPTY = "#e0e0e0"
INK = "#1565c0"


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _svg(width: int, height: int, body: str, label: str, *, stretch: bool = True) -> Markup:
    """Stretched charts (lines, strips) fill the width at a fixed height; others keep
    their aspect ratio so their text is not distorted."""
    size = f'height="{height}" preserveAspectRatio="none"' if stretch else ""
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" {size} role="img" '
        f'aria-label="{escape(label)}" style="display:block;max-width:{width}px">{body}</svg>'
    )


def sparkline(
    values: Sequence[float | None],
    *,
    width: int = 120,
    height: int = 24,
    color: str = INK,
    label: str = "trend",
) -> Markup:
    """A line through the values; None leaves a gap. Flat data draws a middle line."""
    points = [v for v in values if v is not None]
    if not points:
        return _svg(width, height, "", f"{label}: no data")
    low, high = min(points), max(points)
    span = high - low
    step = width / max(len(values) - 1, 1)
    pad = 2.0
    lines: list[list[str]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            if lines[-1]:
                lines.append([])
            continue
        y = height / 2 if span == 0 else pad + (high - value) / span * (height - 2 * pad)
        lines[-1].append(f"{_n(index * step)},{_n(y)}")
    body = "".join(
        f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(line)}"/>'
        if len(line) > 1
        else f'<circle cx="{line[0].split(",")[0]}" cy="{line[0].split(",")[1]}" r="1.5" '
        f'fill="{color}"/>'
        for line in lines
        if line
    )
    return _svg(width, height, body, label)


def availability_color(percent: float | None) -> str:
    """Green at 99.9 % and above, amber from 99 %, red below; grey when nothing counted."""
    if percent is None:
        return EMPTY
    if percent >= 99.9:
        return GOOD
    return WARN if percent >= 99.0 else BAD


def availability_strip(
    values: Sequence[float | None],
    *,
    width: int = 240,
    height: int = 14,
    label: str = "availability",
) -> Markup:
    """One cell per bucket, coloured by its availability."""
    if not values:
        return _svg(width, height, "", f"{label}: no data")
    cell = width / len(values)
    body = "".join(
        f'<rect x="{_n(i * cell)}" y="0" width="{_n(max(cell - 1, 0.5))}" height="{height}" '
        f'fill="{availability_color(v)}"/>'
        for i, v in enumerate(values)
    )
    return _svg(width, height, body, label)


def bars(
    items: Sequence[tuple[str, float]],
    *,
    width: int = 560,
    bar_height: int = 16,
    color: str = INK,
    label: str = "bars",
) -> Markup:
    """Horizontal bars with their label and value, scaled to the largest value."""
    if not items:
        return _svg(width, bar_height, "", f"{label}: no data")
    label_w = 160
    value_w = 60
    room = width - label_w - value_w
    top = max(value for _, value in items) or 1.0
    rows: list[str] = []
    for index, (name, value) in enumerate(items):
        y = index * (bar_height + 4)
        length = room * value / top
        rows.append(
            f'<text x="0" y="{y + bar_height - 4}" font-size="11" fill="#333">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{_n(max(length, 1))}" height="{bar_height}" '
            f'fill="{color}"/>'
            f'<text x="{_n(label_w + length + 4)}" y="{y + bar_height - 4}" font-size="11" '
            f'fill="#333">{_n(value)}</text>'
        )
    height = len(items) * (bar_height + 4)
    return _svg(width, height, "".join(rows), label, stretch=False)
