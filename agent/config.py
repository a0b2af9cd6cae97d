"""The whole agent.yaml as one strict, frozen pydantic tree.

Build it with `agent.config_loader.load_config()`: the loader adds YAML line numbers
to every error, interpolates `${VAR}`, resolves relative paths and runs the
cross-field checks (unique names, references, `timeout < every`).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from agent.durations import Duration
from agent.incidents.settings import IncidentSettings, MaintenanceWindow
from agent.notifiers import NotifierSpec
from agent.notifiers import spec_types as notifier_spec_types
from agent.probe_spec import NAME_PATTERN, ProbeSpec, StrictModel
from agent.sources import SourceSpec
from probes import spec_types
from remediations import spec_types as remediation_spec_types
from remediations._base import Mode, RemediationSpec
from reports.settings import ReportSpec

if TYPE_CHECKING:
    AnyProbe = ProbeSpec
    AnyNotifier = NotifierSpec
    AnyRemediation = RemediationSpec
else:
    # The discriminated union is built from the registry in probes/__init__.py, so a
    # new kind is one module plus one line there.
    AnyProbe = Annotated[Union[spec_types()], Field(discriminator="kind")]  # noqa: UP007
    AnyNotifier = Annotated[Union[notifier_spec_types()], Field(discriminator="kind")]  # noqa: UP007
    AnyRemediation = Annotated[Union[remediation_spec_types()], Field(discriminator="kind")]  # noqa: UP007


def split_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:8765` / `[::1]:8765` / `localhost:0` -> (host, port); ValueError if malformed."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(
            f"invalid listen address {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8765"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


class ApiSection(StrictModel):
    """The control API: HTTP on loopback (and optionally a Unix socket), bearer token."""

    # Declared before `listen` so that the listen check can read it.
    allow_remote: bool = Field(
        default=False,
        description="Allow a non-loopback `listen` address. The API speaks plain HTTP: "
        "expose it only behind a TLS proxy.",
    )
    listen: str = Field(
        default="127.0.0.1:8765",
        description="HOST:PORT of the API; port 0 picks a free port (written to <data_dir>/api.addr).",
    )
    unix_socket: Path | None = Field(
        default=None,
        description="Also serve the API on this Unix socket (mode 0660); relative to data_dir.",
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without the token (for a local Prometheus)."
    )

    @field_validator("listen")
    @classmethod
    def _loopback_only(cls, value: str, info: ValidationInfo) -> str:
        host, _ = split_listen(value)
        if not info.data.get("allow_remote", False) and not is_loopback(host):
            raise ValueError(
                f"{host} is not a loopback address: the control API would be reachable from "
                "other machines; listen on 127.0.0.1 or set agent.api.allow_remote: true"
            )
        return value


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
    api: ApiSection = Field(default_factory=ApiSection)
    heartbeat_url: SecretStr | None = Field(
        default=None,
        description="Dead man's switch: pinged every heartbeat_every while probes run on time "
        "(e.g. a healthchecks.io URL). Held as a secret.",
    )
    heartbeat_method: Literal["GET", "POST"] = Field(
        default="GET", description="POST sends a small JSON summary as the body."
    )
    heartbeat_every: Duration = Field(default=timedelta(seconds=60))
    self_check_every: Duration = Field(
        default=timedelta(seconds=30),
        description="How often the built-in `opsagent-self` probe checks that probes run on time.",
    )
    self_check_max_lag: Duration = Field(
        default=timedelta(seconds=5),
        description="The self-check fails when probe runs start later than this (p99).",
    )

    @field_validator("heartbeat_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def store_path(self) -> Path:
        """The DuckDB file."""
        return self.data_dir / "opsagent.duckdb"


class GuardSection(StrictModel):
    """The safety limits over every remediation, whoever asks for it."""

    kill_switch: bool = Field(
        default=False, description="When true no remediation runs at all (plans are refused)."
    )
    mode: Mode = Field(
        default="auto",
        description="The most a remediation may do: the stricter of this and each remediation's "
        "own `mode` applies (off < shadow < approval < auto). `shadow` here turns every "
        "remediation into a dry run.",
    )
    max_runs_per_hour: int = Field(
        default=30, ge=1, description="Runs allowed across all remediations and targets per hour."
    )


SourceName = Annotated[str, Field(pattern=NAME_PATTERN)]


class Config(StrictModel):
    """The root of agent.yaml."""

    agent: AgentSection = Field(default_factory=AgentSection)
    sources: dict[SourceName, SourceSpec] = Field(default_factory=dict)
    probes: list[AnyProbe] = Field(default_factory=list)
    notify: list[AnyNotifier] = Field(
        default_factory=list,
        description="Where incident notices go (Slack, email, webhooks, console).",
    )
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    reports: list[ReportSpec] = Field(
        default_factory=list, description="Periodic reports, generated and emailed by the agent."
    )
    remediations: list[AnyRemediation] = Field(
        default_factory=list,
        description="Repairs a probe may name in `remediation:`; each runs plan -> guard -> "
        "execute -> verify.",
    )
    guard: GuardSection = Field(default_factory=GuardSection)

    def remediation(self, name: str) -> RemediationSpec | None:
        """The remediation with this name, if any."""
        return next((r for r in self.remediations if r.name == name), None)

    def probe(self, name: str) -> ProbeSpec | None:
        """The probe with this name, if any (a scan: index it where it is called per result)."""
        return next((p for p in self.probes if p.name == name), None)
