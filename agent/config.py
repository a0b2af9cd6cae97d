"""The whole agent.yaml as one strict, frozen pydantic tree.

Build it with `agent.config_loader.load_config()`: the loader adds YAML line numbers
to every error, interpolates `${VAR}`, resolves relative paths and runs the
cross-field checks (unique names, references, `timeout < every`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from agent.durations import Duration
from agent.probe_spec import NAME_PATTERN, ProbeSpec, StrictModel
from agent.sources import SourceSpec
from probes import spec_types

if TYPE_CHECKING:
    AnyProbe = ProbeSpec
else:
    # The discriminated union is built from the registry in probes/__init__.py, so a
    # new kind is one module plus one line there.
    AnyProbe = Annotated[Union[spec_types()], Field(discriminator="kind")]  # noqa: UP007


class AgentSection(StrictModel):
    """Settings of the agent process itself."""

    name: str = Field(default="opsagent", description="Shown in alerts and reports.")
    data_dir: Path = Field(
        default=Path("./var"),
        description="Holds the DuckDB store (opsagent.duckdb); relative to the config file.",
    )
    retention: Duration = Field(
        default=timedelta(days=30), description="Results older than this are deleted."
    )
    compact_every: Duration = Field(
        default=timedelta(hours=24),
        description="How often the store file is compacted after retention deletes rows.",
    )
    shutdown_grace: Duration = Field(
        default=timedelta(seconds=10),
        description="On SIGTERM, how long to wait for probes in flight before cutting them.",
    )
    max_in_flight: int = Field(
        default=2000, ge=1, description="Probe runs allowed at once; more wait their turn."
    )

    @property
    def store_path(self) -> Path:
        """The DuckDB file."""
        return self.data_dir / "opsagent.duckdb"


SourceName = Annotated[str, Field(pattern=NAME_PATTERN)]


class Config(StrictModel):
    """The root of agent.yaml."""

    agent: AgentSection = Field(default_factory=AgentSection)
    sources: dict[SourceName, SourceSpec] = Field(default_factory=dict)
    probes: list[AnyProbe] = Field(default_factory=list)

    def probe(self, name: str) -> ProbeSpec | None:
        """The probe with this name, if any."""
        return next((p for p in self.probes if p.name == name), None)
