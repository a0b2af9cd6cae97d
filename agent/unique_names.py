"""The one rule every named config list shares: names are unique within their section."""

from __future__ import annotations

from typing import Any

Loc = tuple[str | int, ...]


def unique_names(
    entries: Any, section: str, what: str
) -> tuple[dict[str, int], list[tuple[Loc, str]]]:
    """Each name's first index in `section` (a raw YAML list), and a problem per duplicate.

    Entries that are not mappings, or have no string name, are skipped: other checks
    report them.
    """
    first: dict[str, int] = {}
    problems: list[tuple[Loc, str]] = []
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(
                (
                    (section, i, "name"),
                    f"duplicate {what} name {name!r} (first used by {section}[{first[name]}])",
                )
            )
        else:
            first[name] = i
    return first, problems
