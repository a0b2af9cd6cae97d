"""Small HTTP helpers shared by the HTTP-based notifiers."""

from __future__ import annotations

from collections.abc import Mapping


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The Retry-After header in seconds, else None.

    Only the delta-seconds form is read: Slack and nearly every API send it, and an
    HTTP date would need a clock we cannot trust to match the server's.
    """
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
