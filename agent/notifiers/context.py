"""The fields every notifier shares, and the context a notifier sends in.

A notifier kind is one module in `agent/notifiers/`: a `<Kind>Spec(NotifierSpec)` with
`kind: Literal["<kind>"]`, an `async def send(spec, notice, ctx) -> Delivery` and
`SPEC = <Kind>Spec`. Notifiers hold no state of their own; what outlives one call (HTTP
sessions, Slack clients, per-channel pacers, TLS contexts) lives in `NotifyContext`.

The previous-delivery contract
------------------------------
The outbox keeps one `ctx` for the agent's life and, for every notice, calls::

    delivery = await send(spec, notice, ctx.for_delivery(previous_ref))

where `previous_ref` is the `Delivery.ref` it recorded for the *same incident on the
same target* the last time a send succeeded (None for the first one). `for_delivery`
returns a shallow copy that shares every client and pacer but carries its own
`previous_ref`, so concurrent sends never see each other's refs. Each notifier returns
the ref to keep for the next notice: Slack returns the incident's root message
`{channel, ts}` again after an update, email the root `{message_id}`, so later notices
always thread on the first one.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from agent.notices import Delivery, Notice
from agent.notifiers._logs import SDK_LOGGER
from agent.notifiers._pacer import Pacer
from agent.probe_spec import StrictModel, check_name

if TYPE_CHECKING:
    import aiohttp
    from slack_sdk.web.async_client import AsyncWebClient
    from slack_sdk.webhook.async_client import AsyncWebhookClient


class NotifierSpec(StrictModel):
    """Fields shared by every notifier kind."""

    name: str = Field(description="Unique notifier name; notices and `notify:` lists use it.")
    kind: str

    _check_name = field_validator("name")(classmethod(lambda cls, v: check_name(v)))


BlockHook = Callable[[Notice], Sequence[dict[str, Any]]]
"""Returns extra Slack blocks for a notice (e.g. Approve/Reject buttons); [] for none."""

Sender = Callable[[Any, Notice, "NotifyContext"], Awaitable[Delivery]]
"""The shape of every notifier's `send(spec, notice, ctx)`."""


@dataclass
class _Shared:
    """The long-lived, mutable part of a context; every copy points at the same one."""

    session: aiohttp.ClientSession | None = None
    slack_clients: dict[tuple[str, str], AsyncWebClient] = field(default_factory=dict)
    slack_webhooks: dict[str, AsyncWebhookClient] = field(default_factory=dict)
    pacers: dict[Hashable, Pacer] = field(default_factory=dict)
    tls_contexts: dict[tuple[str | None, bool], ssl.SSLContext] = field(default_factory=dict)


@dataclass(frozen=True)
class NotifyContext:
    """What a notifier may use besides its spec and the notice.

    Create one per agent (`NotifyContext(agent_name=...)`), pass
    `ctx.for_delivery(previous_ref)` to each `send`, and `await ctx.aclose()` on shutdown.
    Clients are created lazily on first use, inside the running event loop.
    """

    agent_name: str = "opsagent"
    previous_ref: Mapping[str, str] | None = None
    """The Delivery.ref of this incident's last successful send to this target, or None."""
    slack_interval: float = 1.0
    """Seconds between two messages posted to one Slack channel (Slack allows ~1/s)."""
    block_hooks: tuple[BlockHook, ...] = ()
    """Extension point: each hook adds Slack blocks (buttons) before the context line."""
    _shared: _Shared = field(default_factory=_Shared, repr=False)

    def for_delivery(self, previous_ref: Mapping[str, str] | None) -> NotifyContext:
        """A copy for one send, sharing every client, carrying this incident's last ref."""
        return replace(self, previous_ref=dict(previous_ref) if previous_ref else None)

    def http_session(self) -> aiohttp.ClientSession:
        """One aiohttp session for every HTTP notifier (pooled connections).

        Per-request limits come from each spec's `timeout`; the session's own total
        timeout is only a backstop.
        """
        import aiohttp

        session = self._shared.session
        if session is None or session.closed:
            session = self._shared.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=300)
            )
        return session

    def slack_client(self, token: str, base_url: str) -> AsyncWebClient:
        """The Web API client for one token and API base URL, created once.

        slack-sdk's own retry handlers are disabled (`retry_handlers=[]`): the outbox
        owns retries, honouring `NotifyError.retry_after`, and a hidden in-client retry
        would hold the sender and double-post on ambiguous failures.
        """
        key = (token, base_url)
        client = self._shared.slack_clients.get(key)
        if client is None:
            from slack_sdk.web.async_client import AsyncWebClient

            client = AsyncWebClient(
                token=token,
                base_url=base_url,
                session=self.http_session(),
                retry_handlers=[],
                logger=SDK_LOGGER,
                user_agent_prefix=f"opsagent/{self.agent_name}",
            )
            self._shared.slack_clients[key] = client
        return client

    def slack_webhook(self, url: str) -> AsyncWebhookClient:
        """The incoming-webhook client for one URL, created once (retries disabled too)."""
        client = self._shared.slack_webhooks.get(url)
        if client is None:
            from slack_sdk.webhook.async_client import AsyncWebhookClient

            client = AsyncWebhookClient(
                url=url,
                session=self.http_session(),
                retry_handlers=[],
                logger=SDK_LOGGER,
                user_agent_prefix=f"opsagent/{self.agent_name}",
            )
            self._shared.slack_webhooks[url] = client
        return client

    def pacer(self, key: Hashable, interval: float | None = None) -> Pacer:
        """The pacer for one destination (e.g. a Slack channel), shared by all senders."""
        pacer = self._shared.pacers.get(key)
        if pacer is None:
            step = self.slack_interval if interval is None else interval
            pacer = self._shared.pacers[key] = Pacer(step)
        return pacer

    def tls_context(self, ca_file: Path | None, validate: bool) -> ssl.SSLContext:
        """A client TLS context, built once per (CA file, validation) pair.

        Loading a CA bundle reads and parses files; doing it per email would cost
        tens of milliseconds each time.
        """
        key = (str(ca_file) if ca_file else None, validate)
        context = self._shared.tls_contexts.get(key)
        if context is None:
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if not validate:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._shared.tls_contexts[key] = context
        return context

    async def aclose(self) -> None:
        """Close the shared HTTP session; clients made from it become unusable."""
        shared = self._shared
        if shared.session is not None:
            await shared.session.close()
        shared.session = None
        shared.slack_clients.clear()
        shared.slack_webhooks.clear()
        shared.pacers.clear()
