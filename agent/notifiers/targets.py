"""The configured notifiers by name: how the outbox reaches a notice's target."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agent.errors import NotifyError
from agent.notices import AnyNotice, Delivery, ReportNotice
from agent.notifiers import sender_for
from agent.notifiers._slack_actions import approval_buttons
from agent.notifiers.context import NotifierSpec, NotifyContext


class Targets:
    """Delivers a notice to the notifier named by `notice.target`."""

    def __init__(self, specs: Iterable[NotifierSpec], *, agent_name: str) -> None:
        self._specs = {s.name: s for s in specs}
        # Approve/Reject buttons appear only on APPROVAL notices; pressing them needs a
        # Slack notifier with a signing_secret (else Slack shows an error to the presser).
        self._ctx = NotifyContext(agent_name=agent_name, block_hooks=(approval_buttons,))

    def update(self, specs: Iterable[NotifierSpec]) -> None:
        """Use a reloaded config's notifiers; clients stay open."""
        self._specs = {s.name: s for s in specs}

    async def deliver(self, notice: AnyNotice, previous_ref: Mapping[str, str] | None) -> Delivery:
        """Send one notice; NotifyError (permanent) when its target is no longer configured."""
        spec = self._specs.get(notice.target)
        if spec is None:
            raise NotifyError(f"notifier {notice.target!r} is not configured", permanent=True)
        if isinstance(notice, ReportNotice):
            from reports.deliver import send_stored  # reports import the notifiers, not back

            return await send_stored(spec, notice, self._ctx)
        return await sender_for(spec.kind)(spec, notice, self._ctx.for_delivery(previous_ref))

    async def aclose(self) -> None:
        """Close shared clients."""
        await self._ctx.aclose()
