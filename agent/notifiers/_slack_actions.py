"""Approve/Reject buttons on Slack messages, and reading the button presses Slack sends.

A notice of a repair awaiting approval (`NoticeEvent.APPROVAL`) gets two buttons whose
value is the run id. When someone presses one, Slack POSTs a signed form to the agent's
`/v1/slack/actions`; `verified_actions` checks the signature with the notifier's signing
secret (slack-sdk's verifier: HMAC-SHA256, at most 5 minutes old) and returns the
presses. Whether the person may act is `allowed`; the API acts through the same
remediation service as the CLI, so the guard and the audit are the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from agent.notices import Notice, NoticeEvent

APPROVE, REJECT = "opsagent_approve", "opsagent_reject"


def approval_buttons(notice: Notice) -> Sequence[dict[str, Any]]:
    """The Approve/Reject actions block for an APPROVAL notice; [] for any other."""
    if notice.event is not NoticeEvent.APPROVAL or notice.approval_run is None:
        return []
    run = str(notice.approval_run)
    return [
        {
            "type": "actions",
            "block_id": f"opsagent_run_{run}",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": f"Approve run #{run}"},
                    "value": run,
                },
                {
                    "type": "button",
                    "action_id": REJECT,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Reject"},
                    "value": run,
                },
            ],
        }
    ]


@dataclass(frozen=True)
class Press:
    """One button press: who, which run, approve or reject."""

    user_id: str
    user_name: str
    run_id: int
    approve: bool

    @property
    def actor(self) -> str:
        """How the audit names the person."""
        return f"{self.user_name or self.user_id} via slack"


class BadRequest(ValueError):
    """The request is not a valid, signed Slack interaction."""


def verified_actions(
    body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str]
) -> tuple[str, list[Press]]:
    """(the notifier whose secret signed it, its presses); BadRequest when not a signed
    Slack interaction. `secrets` maps notifier names to signing secrets."""
    from slack_sdk.signature import SignatureVerifier

    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    signer = next(
        (
            name
            for name, secret in secrets.items()
            if SignatureVerifier(secret).is_valid(body, timestamp, signature)
        ),
        None,
    )
    if signer is None:
        raise BadRequest("the request is not signed with a configured Slack signing secret")
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
    except (KeyError, IndexError, UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("expected a form field `payload` holding JSON") from None
    user = payload.get("user") or {}
    presses: list[Press] = []
    for action in payload.get("actions") or []:
        action_id = action.get("action_id")
        value = str(action.get("value", ""))
        if action_id in (APPROVE, REJECT) and value.isdigit():
            presses.append(
                Press(
                    user_id=str(user.get("id", "")),
                    user_name=str(user.get("username") or user.get("name") or ""),
                    run_id=int(value),
                    approve=action_id == APPROVE,
                )
            )
    return signer, presses


def allowed(press: Press, allowed_users: Iterable[str]) -> bool:
    """May this person act? Their Slack user ID or user name is in `allowed_users`."""
    names = set(allowed_users)
    return bool(press.user_id and press.user_id in names) or bool(
        press.user_name and press.user_name in names
    )
