"""What a config reload changes, decided by one pure function.

Probes and sources are applied live (the dispatcher keeps the counters of probes that
stay; pipeline state is untouched, so nothing re-alerts). A few settings are bound when
the process starts: the data directory (the store is open), the API's sockets and the
dispatcher's concurrency limit. A change to those is NOT applied: it is reported and
logged, and the running value stays in force until a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.config import Config
from agent.errors import OpsAgentError


@dataclass(frozen=True)
class ReloadPlan:
    """The config to run with after a reload, and what differs from the running one."""

    config: Config  # the new config, with the restart-only settings kept as they run
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)
    other_changes: bool = False  # settings other than probes changed

    @property
    def changed(self) -> bool:
        """True when anything at all differs."""
        return bool(self.added or self.removed or self.rescheduled or self.other_changes)

    def summary(self) -> str:
        """One line for the log."""
        if not self.changed:
            return "no changes"
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.rescheduled),
            )
            if names
        ]
        if self.other_changes:
            parts.append("other settings changed")
        return "; ".join(parts)


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """Compare the running config with a freshly loaded one."""
    old_agent, new_agent = running.agent, new.agent
    not_applied: list[str] = []

    def keep(what: str, old: object, wanted: object) -> None:
        if old != wanted:
            not_applied.append(f"{what} changed ({old} -> {wanted}): takes effect after a restart")

    keep("agent.data_dir", old_agent.data_dir, new_agent.data_dir)
    keep("agent.max_in_flight", old_agent.max_in_flight, new_agent.max_in_flight)
    for key in ("listen", "unix_socket", "allow_remote"):
        keep(f"agent.api.{key}", getattr(old_agent.api, key), getattr(new_agent.api, key))
    effective_agent = new_agent.model_copy(
        update={
            "data_dir": old_agent.data_dir,
            "max_in_flight": old_agent.max_in_flight,
            # metrics_public is read per request: it applies live.
            "api": old_agent.api.model_copy(
                update={"metrics_public": new_agent.api.metrics_public}
            ),
        }
    )
    effective = new.model_copy(update={"agent": effective_agent})

    old_probes = {p.name: p for p in running.probes}
    new_probes = {p.name: p for p in new.probes}
    return ReloadPlan(
        config=effective,
        added=[n for n in new_probes if n not in old_probes],
        removed=[n for n in old_probes if n not in new_probes],
        rescheduled=[n for n, p in new_probes.items() if n in old_probes and old_probes[n] != p],
        not_applied=not_applied,
        # Anything else (agent settings, sources, sections added later) applies live.
        other_changes=effective.model_copy(update={"probes": running.probes}) != running,
    )


class ReloadUnavailable(OpsAgentError):
    """The agent cannot reload: it was started from a config object, not a file."""
