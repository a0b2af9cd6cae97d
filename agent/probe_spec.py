"""The fields every probe kind shares, and the context a probe runs in.

A probe kind is one module in `probes/`: a `<Kind>Spec(ProbeSpec)` with
`kind: Literal["<kind>"]`, an `async def run(spec, ctx) -> Observation`, and
`SPEC = <Kind>Spec` so the registry can find it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.durations import Duration
from agent.expectations import Expect

if TYPE_CHECKING:
    import aiohttp

    from agent.connectors import RedisConnector, SqlConnector
    from agent.sources import SourceSpec

Severity = Literal["info", "warning", "high", "critical"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_NAME = re.compile(NAME_PATTERN)


class StrictModel(BaseModel):
    """Base for every config model: unknown keys rejected, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def check_name(value: str) -> str:
    """Validate a config name (probe, source, ...): letters, digits, `_`, `.`, `-`."""
    if not _NAME.match(value):
        raise ValueError(
            f"invalid name {value!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    return value


class ProbeSpec(StrictModel):
    """Fields shared by every probe kind."""

    name: str = Field(description="Unique probe name; used in alerts, the store and the CLI.")
    kind: str
    every: Duration = Field(default=timedelta(seconds=30), description="How often the probe runs.")
    timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="Hard limit for one run; a run still going is cut and recorded as failed. "
        "Must be shorter than `every`; default 10s, or 80% of `every` when that is shorter.",
    )
    jitter: Duration | None = Field(
        default=None,
        description="Random delay added to each run to spread load; default 10% of `every`, at most 5s.",
    )
    expect: list[Expect] = Field(
        default_factory=list,
        description="Expressions over the result's values that must all hold, e.g. `status == 200`.",
    )
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    # Incident behaviour; unset means the `incidents:` section's default.
    failures: int | None = Field(
        default=None, ge=1, description="Consecutive failures that open an incident."
    )
    successes: int | None = Field(
        default=None, ge=1, description="Consecutive passes that resolve it."
    )
    for_: Duration | None = Field(
        default=None,
        alias="for",
        description="Open only after failing this long (replaces the `failures` count).",
    )
    notify: list[str] | None = Field(
        default=None, description="Notifier names for this probe's incidents."
    )
    incident_per: str | None = Field(
        default=None,
        description="An evidence field (e.g. `id`): one incident per value instead of one per probe.",
    )
    remediation: str | None = Field(
        default=None,
        description="The remediation (by name) to request when this probe's incident opens.",
    )

    _check_name = field_validator("name")(classmethod(lambda cls, v: check_name(v)))

    @model_validator(mode="after")
    def _default_timeout(self) -> ProbeSpec:
        # A probe every 5s with no timeout given gets 4s, not an error about 10s >= 5s.
        if "timeout" not in self.model_fields_set:
            object.__setattr__(self, "timeout", min(timedelta(seconds=10), self.every * 0.8))
        return self

    @property
    def effective_jitter(self) -> timedelta:
        """The jitter in force: the configured one, else 10% of `every` capped at 5s."""
        if self.jitter is not None:
            return self.jitter
        return min(self.every * 0.1, timedelta(seconds=5))


@dataclass
class RunContext:
    """Long-lived things probes share: HTTP clients, sources, per-probe state.

    Probes hold no instance state of their own; what must survive between runs
    (a psutil process cache, a connection pool) lives here, keyed by probe name.
    """

    base_dir: Path = field(default_factory=Path.cwd)
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    _sessions: dict[bool, aiohttp.ClientSession] = field(default_factory=dict)
    # --- data-store connectors (agent/connectors), one per source, opened lazily ---
    connectors: dict[str, Any] = field(default_factory=dict)

    def connector(self, name: str) -> SqlConnector | RedisConnector:
        """The shared connector of source `name`, created on first use (it connects lazily)."""
        found: SqlConnector | RedisConnector | None = self.connectors.get(name)
        if found is None:
            from agent.connectors import open_connector
            from agent.errors import ProbeError

            if name not in self.sources:
                raise ProbeError(f"unknown source {name!r}")
            found = self.connectors[name] = open_connector(
                name, self.sources[name], base_dir=self.base_dir
            )
        return found

    # --- end of data-store connectors ---

    def http_session(self, *, verify: bool = True) -> aiohttp.ClientSession:
        """The shared aiohttp session (pooled), one per TLS mode: the `http` probes and the heartbeat."""
        session = self._sessions.get(verify)
        if session is None:
            from agent.http_client import make_session

            session = self._sessions[verify] = make_session(verify=verify)
        return session

    async def aclose(self) -> None:
        """Close every shared client."""
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()
        connectors, self.connectors = self.connectors, {}
        for connector in connectors.values():
            await connector.aclose()
