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
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import Field, PrivateAttr, field_validator
from yarl import URL

from agent.http_client import MAX_REDIRECTS
from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation
from probes._net import describe_connect_error, root_cause, timed_out

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # httpx refused these too; yarl would take them
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
    # Parsed once here rather than by aiohttp on every run.
    _url: URL = PrivateAttr()
    _body: bytes | None = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Prepare what every run sends: the parsed URL and the encoded body."""
        super().model_post_init(context)
        self._url = URL(self.url)
        self._body = None if self.body is None else self.body.encode()

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if bad := _CONTROL.search(value):
            raise ValueError(
                f"invalid URL {value!r}: non-printable character {bad[0]!r} at position {bad.start()}"
            )
        try:
            url = URL(value)
            host = url.host
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid URL {value!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not host:
            raise ValueError(f"invalid URL {value!r}: expected http://host/... or https://host/...")
        return value


def prepare(spec: HttpSpec, ctx: RunContext) -> None:
    """Create the shared session before the first run, outside its timeout.

    Building it (the TLS context with its CA bundle) takes ~50-150 ms once; inside the
    first run it would count against a short timeout and skew the first latency.
    """
    ctx.http_session(verify=spec.verify_tls)


async def run(spec: HttpSpec, ctx: RunContext) -> Observation:
    """Send the request once, read at most `max_body_bytes` of the body, report."""
    session = ctx.http_session(verify=spec.verify_tls)
    limit = spec.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    truncated = False
    started = time.perf_counter()
    try:
        # asyncio.timeout bounds the whole exchange: connect, redirects and a slow
        # trickle of body bytes alike (the session sets no timeouts of its own).
        async with (
            asyncio.timeout(spec.timeout.total_seconds()),
            session.request(
                spec.method,
                spec._url,
                headers=spec.headers or None,
                data=spec._body,
                allow_redirects=spec.follow_redirects,
                max_redirects=MAX_REDIRECTS,
            ) as response,
        ):
            content = response.content
            while chunk := await content.readany():
                size += len(chunk)
                chunks.append(chunk)
                if size > limit:
                    truncated = True
                    break
    except TimeoutError:
        return Observation(error=timed_out(spec.timeout))
    except (aiohttp.ClientError, OSError) as exc:
        return Observation(error=_describe(exc, spec.url, spec.timeout))
    latency_ms = round((time.perf_counter() - started) * 1000, 3)

    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if truncated:
        body = body[:limit]
    status = response.status
    values: dict[str, Any] = {"status": status, "latency_ms": latency_ms, "body_bytes": len(body)}
    document = None if truncated else _parse_json(body, response.headers)
    detail = f"HTTP {status} in {latency_ms:.0f} ms"
    if truncated:
        detail += f" (body cut at {limit} bytes)"
    return Observation(values=values, body=document, detail=detail, latency_ms=latency_ms)


def _describe(exc: BaseException, url: str, timeout: timedelta) -> str:
    """One line for a failed exchange, from the socket error at the root of the chain."""
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    cause = root_cause(exc)
    if isinstance(cause, TimeoutError):
        return timed_out(timeout)
    if isinstance(exc, aiohttp.ClientConnectorError):
        host, port = exc.host, exc.port or 0  # after redirects it may differ from `url`
    else:
        target = URL(url)
        host, port = target.host or "?", target.port or 0
    reason = describe_connect_error(cause, host, port)
    if reason is not None:
        return reason
    text = cause.message if isinstance(cause, HttpProcessingError) else str(cause)
    return f"HTTP read error: {' '.join(text.split())[:200] or type(cause).__name__}"


def _parse_json(body: bytes, headers: Mapping[str, str]) -> Any:
    """The body as a JSON document when it is one, else None."""
    looks_like_json = body.lstrip()[:1] in (b"{", b"[")
    if "json" not in headers.get("content-type", "") and not looks_like_json:
        return None
    try:
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None


SPEC = HttpSpec
