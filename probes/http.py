"""Request an HTTP(S) URL and report the status, the latency and the body.

Values: `status`, `latency_ms` (until the body is read), `body_bytes`. A JSON body is
exposed to expectations as `json` (`json.status == "ok"`). A non-2xx status is a
value, not an error: the expectations decide. Connection problems are errors.

```yaml
probes:
  - name: shop-api
    kind: http
    # The URL to request; http:// and https:// only.
    url: http://127.0.0.1:8080/health
    # The request method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    method: GET
    # Extra request headers.
    headers: {Accept: application/json}
    # A request body sent as is; none by default.
    body: null
    # Whether to follow 3xx redirects; with false the 3xx status is the result.
    follow_redirects: true
    # Whether to verify the server's TLS certificate for https URLs.
    verify_tls: true
    # At most this many body bytes are read; the rest is not downloaded.
    max_body_bytes: 1000000
    # The shared settings of every probe, with their defaults.
    every: 30s
    timeout: 10s
    expect: [status == 200, latency_ms < 500, json.status == "ok"]
    severity: critical
```
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator

from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation
from probes._net import describe_connect_error, root_cause, timed_out

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class HttpSpec(ProbeSpec):
    """An HTTP(S) request and what to do with its answer."""

    kind: Literal["http"]
    url: str = Field(description="The URL to request; http:// and https:// only.")
    method: Method = Field(default="GET", description="The request method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    body: str | None = Field(default=None, description="A request body sent as is.")
    follow_redirects: bool = Field(default=True, description="Whether to follow 3xx redirects.")
    verify_tls: bool = Field(default=True, description="Whether to verify the TLS certificate.")
    max_body_bytes: int = Field(
        default=1_000_000, ge=0, description="At most this many body bytes are read."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid URL {value!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"invalid URL {value!r}: expected http://host/... or https://host/...")
        return value


def prepare(spec: HttpSpec, ctx: RunContext) -> None:
    """Create the shared client before the first run, outside its timeout.

    Building the client (imports, TLS context) takes ~50-150 ms once; inside the first
    run it would count against a short timeout and skew the first latency.
    """
    ctx.http(verify=spec.verify_tls)


async def run(spec: HttpSpec, ctx: RunContext) -> Observation:
    """Send the request once, read at most `max_body_bytes` of the body, report."""
    client = ctx.http(verify=spec.verify_tls)
    seconds = spec.timeout.total_seconds()
    body = bytearray()
    truncated = False
    started = time.perf_counter()
    try:
        # asyncio.timeout bounds the whole exchange; the per-request timeout only
        # bounds each socket operation, so a slow trickle of bytes would escape it.
        async with (
            asyncio.timeout(seconds),
            client.stream(
                spec.method,
                spec.url,
                headers=spec.headers,
                content=spec.body,
                timeout=seconds,
                follow_redirects=spec.follow_redirects,
            ) as response,
        ):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > spec.max_body_bytes:
                    truncated = True
                    del body[spec.max_body_bytes :]
                    break
    except TimeoutError:
        return Observation(error=timed_out(spec.timeout))
    except httpx.HTTPError as exc:
        return Observation(error=_describe(exc, spec.timeout))
    latency_ms = round((time.perf_counter() - started) * 1000, 3)

    values: dict[str, Any] = {
        "status": response.status_code,
        "latency_ms": latency_ms,
        "body_bytes": len(body),
    }
    document = None if truncated else _parse_json(bytes(body), response.headers)
    detail = f"HTTP {response.status_code} in {latency_ms:.0f} ms"
    if truncated:
        detail += f" (body cut at {spec.max_body_bytes} bytes)"
    return Observation(values=values, body=document, detail=detail, latency_ms=latency_ms)


def _describe(exc: httpx.HTTPError, timeout: timedelta) -> str:
    """One line for a failed exchange, from the socket error at the root of the chain."""
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    cause = root_cause(exc)
    if isinstance(cause, TimeoutError) or (
        cause is exc and isinstance(exc, httpx.TimeoutException)
    ):
        return timed_out(timeout)
    host, port = "?", 0
    if _has_request(exc):  # after redirects the failing URL may differ from spec.url
        url = exc.request.url
        host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
    reason = describe_connect_error(cause, host, port)
    if reason is not None:
        return reason
    text = str(cause) or type(cause).__name__
    return f"HTTP read error: {text.splitlines()[0][:200]}"


def _has_request(exc: httpx.HTTPError) -> bool:
    # httpx raises RuntimeError from `.request` when the error was not tied to one.
    try:
        exc.request  # noqa: B018
    except RuntimeError:
        return False
    return True


def _parse_json(body: bytes, headers: httpx.Headers) -> Any:
    """The body as a JSON document when it is one, else None."""
    looks_like_json = body.lstrip()[:1] in (b"{", b"[")
    if "json" not in headers.get("content-type", "") and not looks_like_json:
        return None
    try:
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None


SPEC = HttpSpec
