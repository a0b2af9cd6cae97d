"""Call an admin endpoint: one HTTP request whose answer must have an expected status.

The plan records the method, the URL (any password in it masked) and the header
names; header values and the body may hold tokens and are never stored. The answer's
body is kept (cut at `max_output_bytes`) with secrets masked.

```yaml
remediations:
  - name: requeue-payments
    kind: http
    # The request.
    method: POST
    url: "http://127.0.0.1:8080/admin/payments/requeue"
    # Request headers (values are not stored; use ${ENV} for tokens).
    headers: {Authorization: "Bearer ${SHOP_ADMIN_TOKEN}"}
    # A JSON body; `{evidence}` is replaced by the incident's evidence rows.
    json: {reason: opsagent}
    # Statuses that mean the repair was accepted.
    expect_status: [200, 202, 204]
    # Verify the server's TLS certificate.
    verify_tls: true
    # At most this many bytes of the answer are kept.
    max_output_bytes: 4096
    mode: approval
    timeout: 10s
```
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import aiohttp
from pydantic import Field

from agent.probe_spec import RunContext
from agent.redaction import Redactor
from remediations._base import ActionResult, Plan, RemediationSpec, Target, truncate


class HttpSpec(RemediationSpec):
    """An HTTP request that repairs something."""

    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="POST", description="The method."
    )
    url: str = Field(description="The URL.")
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    json_body: Any = Field(default=None, alias="json", description="A JSON body.")
    expect_status: list[int] = Field(
        default_factory=lambda: [200, 201, 202, 204], min_length=1, description="Accepted statuses."
    )
    verify_tls: bool = Field(default=True, description="Verify the TLS certificate.")
    max_output_bytes: int = Field(default=4096, ge=0, description="Answer bytes kept.")


def _body(spec: HttpSpec, target: Target) -> Any:
    if spec.json_body == "{evidence}":
        return target.evidence
    if isinstance(spec.json_body, dict):
        return {k: (target.evidence if v == "{evidence}" else v) for k, v in spec.json_body.items()}
    return spec.json_body


def _redactor(spec: HttpSpec) -> Redactor:
    return Redactor(spec.headers.values())


async def plan(spec: HttpSpec, target: Target, ctx: RunContext) -> Plan:
    """The request that would be sent; nothing is sent."""
    url = _redactor(spec).redact(spec.url)
    return Plan(
        spec.name,
        "http",
        target.key,
        f"{spec.method} {url}",
        detail={
            "method": spec.method,
            "url": url,
            "headers": sorted(spec.headers),
            "body": _body(spec, target) is not None,
            "evidence_rows": len(target.evidence),
        },
    )


async def run(spec: HttpSpec, plan: Plan, ctx: RunContext) -> ActionResult:
    """Send the request; success is an expected status within the timeout."""
    redactor = _redactor(spec)
    session = ctx.http_session(verify=spec.verify_tls)
    body = spec.json_body if spec.json_body != "{evidence}" else None
    try:
        async with asyncio.timeout(spec.timeout.total_seconds()):
            async with session.request(
                spec.method, spec.url, headers=spec.headers, json=body
            ) as answer:
                raw = await answer.content.read(spec.max_output_bytes + 1)
                status = answer.status
    except TimeoutError:
        return ActionResult(False, "timed out", error=f"no answer within {spec.timeout}")
    except (aiohttp.ClientError, OSError) as exc:
        reason = redactor.redact(str(exc) or type(exc).__name__)
        return ActionResult(False, reason, error=reason)
    output = redactor.redact(truncate(raw.decode(errors="replace"), spec.max_output_bytes))
    if status not in spec.expect_status:
        return ActionResult(
            False,
            f"status {status}",
            output,
            error=f"status {status}, expected {spec.expect_status}",
        )
    return ActionResult(True, f"status {status}", output)


SPEC = HttpSpec
