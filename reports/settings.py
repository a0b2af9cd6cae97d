"""The `reports:` section of agent.yaml: which reports, when, for which period, to whom.

```yaml
reports:
  - name: daily
    # When to generate it: a five-field cron expression (UTC)...
    cron: "0 7 * * *"
    # ...or a fixed interval instead (set exactly one of cron and every).
    every: null
    # The period covered, ending when the report is generated; compared with the one before.
    period: 24h
    # Notifier names (email notifiers) that receive it.
    notify: [ops-email]
    # The sections shown, in this order; all by default.
    sections: [availability, incidents, healing, integrity, noise]
    # Availability targets in percent, by probe name or glob; none by default.
    slo: {shop-api: 99.9, "*": 99.0}
    # Operator minutes one verified automatic fix saves.
    minutes_saved_per_fix: 15
    # The result values shown under data integrity (from sql and reconcile probes).
    integrity_values: [stuck, mismatched, amount_at_risk]
    # How many of the longest incidents are shown with their timelines.
    longest: 5
```
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.durations import Duration
from agent.probe_spec import StrictModel, check_name
from agent.unique_names import unique_names
from reports.data import DEFAULT_INTEGRITY_VALUES

Section = Literal["availability", "incidents", "healing", "integrity", "noise"]
SECTIONS: tuple[Section, ...] = ("availability", "incidents", "healing", "integrity", "noise")


class ReportSpec(StrictModel):
    """One scheduled report."""

    name: str = Field(description="The report's name (`opsagent report --name`).")
    cron: str | None = Field(default=None, description="Five-field cron expression (UTC).")
    every: Duration | None = Field(default=None, description="A fixed interval instead of cron.")
    period: Duration = Field(default=timedelta(hours=24), description="The period covered.")
    notify: list[str] = Field(default_factory=list, description="Notifier names to send it to.")
    sections: list[Section] = Field(
        default_factory=lambda: list(SECTIONS), min_length=1, description="Sections, in order."
    )
    slo: dict[str, float] = Field(
        default_factory=dict, description="Availability targets (percent) by probe name or glob."
    )
    minutes_saved_per_fix: float = Field(
        default=15.0, ge=0, description="Operator minutes one verified automatic fix saves."
    )
    integrity_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INTEGRITY_VALUES),
        description="Result values shown under data integrity.",
    )
    longest: int = Field(default=5, ge=0, le=50, description="Longest incidents shown.")

    _name = field_validator("name")(classmethod(lambda cls, v: check_name(v)))

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value

    @field_validator("slo")
    @classmethod
    def _valid_targets(cls, value: dict[str, float]) -> dict[str, float]:
        for probe, target in value.items():
            if not 0 < target < 100:
                raise ValueError(f"slo target for {probe!r} must be above 0 and below 100")
        return value

    @field_validator("sections")
    @classmethod
    def _unique_sections(cls, value: list[Section]) -> list[Section]:
        if len(set(value)) != len(value):
            raise ValueError("a section is listed twice")
        return value

    @property
    def schedule(self) -> str:
        """`cron 0 7 * * *` or `every 1d`, for listings and logs."""
        from agent.durations import format_duration

        if self.cron is not None:
            return f"cron {self.cron}"
        return f"every {format_duration(self.every) if self.every else '?'}"

    @model_validator(mode="after")
    def _one_schedule(self) -> ReportSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError("set exactly one of cron and every")
        if self.period <= timedelta(0):
            raise ValueError("period must be positive")
        return self


def check_reports(
    reports: Any, notifiers: Mapping[str, str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-checks for the config root, on the raw `reports:` list (so they report even
    when other fields are bad): unique names, and `notify:` names an email notifier.

    `notifiers` maps each configured notifier's name to its kind. Returns every problem
    as (path, message), the path as a tuple for the loader to find the line.
    """
    errors: list[tuple[tuple[str | int, ...], str]] = []
    if not isinstance(reports, list):
        return errors
    known = ", ".join(sorted(notifiers)) or "none defined"
    errors += unique_names(reports, "reports", "report")[1]
    for index, report in enumerate(reports):
        if not isinstance(report, dict):
            continue
        targets = report.get("notify")
        for j, target in enumerate(targets if isinstance(targets, list) else []):
            if not isinstance(target, str):
                continue
            if target not in notifiers:
                errors.append(
                    (
                        ("reports", index, "notify", j),
                        f"unknown notifier {target!r} (notify: {known})",
                    )
                )
            elif notifiers[target] != "email":
                errors.append(
                    (
                        ("reports", index, "notify", j),
                        f"{target!r} is a {notifiers[target]} notifier: reports are sent by email",
                    )
                )
    return errors
