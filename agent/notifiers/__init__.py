"""Notifier kinds: one module each, registered once in `KINDS`.

Every module holds a `<Kind>Spec(NotifierSpec)` with `kind: Literal["<module name>"]`,
an `async def send(spec, notice, ctx) -> Delivery` and `SPEC = <Kind>Spec`. To add a
kind, add its module and one entry below; the config's union of notifier specs and the
outbox's lookup are both built from this tuple. `context` holds the shared spec fields
and `NotifyContext`; modules starting with `_` are helpers. Neither is a kind.

A failed send raises `agent.errors.NotifyError`: `permanent=True` when retrying cannot
help (bad token, unknown channel, refused login), `retry_after` when the service said
how long to wait (HTTP 429). Anything else a sender raises is a bug.
"""

from __future__ import annotations

from types import ModuleType
from typing import cast, get_args

from agent.errors import NotifyError
from agent.notifiers import console, email, slack, slack_webhook, webhook
from agent.notifiers.context import NotifierSpec, NotifyContext, Sender

KINDS: tuple[ModuleType, ...] = (console, email, slack, slack_webhook, webhook)

__all__ = [
    "KINDS",
    "NotifierSpec",
    "NotifyContext",
    "Sender",
    "kind_of",
    "sender_for",
    "spec_types",
]


def kind_of(spec_type: type[NotifierSpec]) -> str:
    """The value of a spec class's `kind: Literal[...]` field."""
    (kind,) = get_args(spec_type.model_fields["kind"].annotation)
    return cast(str, kind)


def spec_types() -> tuple[type[NotifierSpec], ...]:
    """Every notifier kind's spec class, in registry order."""
    return tuple(cast(type[NotifierSpec], module.SPEC) for module in KINDS)


# Each `send` takes its own spec type; the config's discriminated union guarantees a
# spec only ever reaches the sender of its kind, hence the cast.
_SENDERS: dict[str, Sender] = {kind_of(module.SPEC): cast(Sender, module.send) for module in KINDS}


def sender_for(kind: str) -> Sender:
    """The `send` function of a notifier kind; NotifyError (permanent) for an unknown kind."""
    try:
        return _SENDERS[kind]
    except KeyError:
        raise NotifyError(f"unknown notifier kind {kind!r}", permanent=True) from None
