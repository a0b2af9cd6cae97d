"""POST every notice as JSON to a URL of your own: a chat bridge, a ticket system, a script.

The body is the notice itself plus a one-line `text`:

    {"schema": "opsagent.notice/1", "text": "🔔 CRITICAL shop-api failing — timed out after 1s",
     "id": 7, "event": "opened", "target": "ops-hook", "agent_name": "shop-prod",
     "created_at": "...", "actor": null, "comment": null,
     "incident": {"id": 42, "probe": "shop-api", "severity": "critical", "state": "open", ...}}

A 2xx answer is a delivery. 408, 429 and 5xx answers, timeouts and connection errors
are retried (429 honours `Retry-After`); any other answer is permanent, since sending
the same body again gets the same answer. Redirects are not followed.

Every header value is held as a secret (headers usually carry tokens): write them
from the environment, e.g. `Authorization: "Bearer ${HOOK_TOKEN}"`.

```yaml
notify:
  - name: ops-hook
    kind: webhook
    # Where to POST; http:// or https://.
    url: https://hooks.example.com/opsagent
    # Extra request headers, e.g. a token from the environment.
    headers: {Authorization: "Bearer ${HOOK_TOKEN}"}
    # Longest wait for the answer before the post counts as failed (and is retried).
    timeout: 10s
```
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from agent.durations import Duration
from agent.errors import NotifyError
from agent.notices import Delivery, Notice
from agent.notifiers._http import retry_after_seconds
from agent.notifiers._text import EVENT_EMOJI, detail, headline
from agent.notifiers.context import NotifierSpec, NotifyContext
from agent.redaction import Redactor

SCHEMA = "opsagent.notice/1"
_RETRIED = frozenset({408, 429})


class WebhookSpec(NotifierSpec):
    """A URL that receives each notice as a JSON POST."""

    kind: Literal["webhook"]
    url: str = Field(description="Where to POST; http:// or https://.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers; values are held as secrets."
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="Longest wait for the answer."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


def payload(notice: Notice) -> dict[str, Any]:
    """The JSON body for one notice."""
    text = f"{EVENT_EMOJI[notice.event]} {headline(notice)} — {detail(notice)}"
    return {"schema": SCHEMA, "text": text, **notice.model_dump(mode="json")}


async def send(spec: WebhookSpec, notice: Notice, ctx: NotifyContext) -> Delivery:
    """POST the notice and judge the answer by its status."""
    headers = {name: value.get_secret_value() for name, value in spec.headers.items()}
    redactor = Redactor(headers.values())
    what = f"webhook {redactor.redact(spec.url)}"
    try:
        async with ctx.http_session().post(
            spec.url,
            json=payload(notice),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=spec.timeout.total_seconds()),
            allow_redirects=False,
        ) as response:
            status = response.status
            retry_after = retry_after_seconds(response.headers)
            # A short excerpt helps explain a refusal; the rest is not worth reading.
            excerpt = (await response.content.read(200)).decode("utf-8", "replace").strip()
    except TimeoutError:
        raise NotifyError(f"{what}: no answer within {spec.timeout.total_seconds():g}s") from None
    except aiohttp.ClientError as exc:
        raise NotifyError(f"{what}: {redactor.redact(str(exc) or type(exc).__name__)}") from None
    if 200 <= status < 300:
        return Delivery(ref={"status": str(status)}, detail=f"HTTP {status}")
    reason = f"{what}: HTTP {status}" + (f": {redactor.redact(excerpt)}" if excerpt else "")
    if status == 429:
        raise NotifyError(reason, retry_after=retry_after)
    if status >= 500 or status in _RETRIED:
        raise NotifyError(reason)
    raise NotifyError(reason, permanent=True)


SPEC = WebhookSpec
