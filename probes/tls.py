"""Complete a TLS handshake and report the server certificate's expiry.

Values: `days_left` (fractional days until notAfter, negative once expired),
`not_after` (ISO 8601, UTC), `issuer` and `subject` (their CN, else `O=..., OU=...`),
`latency_ms` (connect plus handshake). A failed handshake or a certificate that does
not verify is an error with the reason; with `verify: false` the certificate is read
anyway, so an expired one is reported as negative `days_left`.

```yaml
probes:
  - name: shop-cert
    kind: tls
    # The host to connect to.
    host: shop.example.com
    # The TLS port.
    port: 443
    # The name sent as SNI and checked against the certificate; default: host.
    server_name: null
    # Whether the certificate must chain to a trusted CA and match server_name.
    verify: true
    # A PEM file of CA certificates to trust instead of the system's (a private CA);
    # a relative path is read from the config file's folder.
    ca_file: null
    every: 1h
    timeout: 5s
    expect: [days_left > 14]
    severity: high
```
"""

from __future__ import annotations

import asyncio
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation
from probes._net import address, describe_connect_error, timed_out
from probes._x509 import parse_certificate


class TlsSpec(ProbeSpec):
    """A TLS endpoint whose certificate is checked."""

    kind: Literal["tls"]
    host: str = Field(description="The host to connect to.")
    port: int = Field(default=443, ge=1, le=65535, description="The TLS port.")
    server_name: str | None = Field(
        default=None, description="Name sent as SNI and verified; default: host."
    )
    verify: bool = Field(
        default=True, description="Whether the certificate must verify; without, it is still read."
    )
    ca_file: Path | None = Field(
        default=None, description="PEM file of CA certificates to trust instead of the system's."
    )


async def run(spec: TlsSpec, ctx: RunContext) -> Observation:
    """Handshake, decode the peer certificate, report days left until it expires."""
    server_name = spec.server_name or spec.host
    try:
        context = _context(spec, ctx)
    except (OSError, ssl.SSLError) as exc:
        return Observation(error=f"cannot load ca_file {spec.ca_file}: {exc}")
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(spec.timeout.total_seconds()):
            _, writer = await asyncio.open_connection(
                spec.host, spec.port, ssl=context, server_hostname=server_name
            )
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    except TimeoutError:
        return Observation(error=timed_out(spec.timeout))
    except OSError as exc:  # ssl.SSLError is an OSError too
        reason = describe_connect_error(exc, spec.host, spec.port)
        return Observation(error=reason or f"connect failed {address(spec.host, spec.port)}: {exc}")
    finally:
        # Not awaited: a TLS close waits for the peer's close_notify (up to 30 s), and a
        # server that never sends one must not turn a good reading into a timeout.
        if writer is not None:
            writer.close()
    if not der:
        return Observation(latency_ms=latency_ms, error="the server sent no certificate")
    try:
        cert = parse_certificate(der)
    except ValueError as exc:
        return Observation(latency_ms=latency_ms, error=f"unreadable certificate: {exc}")

    days_left = round((cert.not_after - datetime.now(UTC)).total_seconds() / 86400, 3)
    values = {
        "days_left": days_left,
        "not_after": cert.not_after.isoformat(),
        "issuer": cert.issuer,
        "subject": cert.subject,
        "latency_ms": latency_ms,
    }
    detail = f"{cert.subject} expires {cert.not_after:%Y-%m-%d} ({days_left:.1f} days left)"
    return Observation(values=values, detail=detail, latency_ms=latency_ms)


def _context(spec: TlsSpec, ctx: RunContext) -> ssl.SSLContext:
    """A client context; with verify off it still completes the handshake and keeps the cert."""
    if not spec.verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if spec.ca_file is None:
        return ssl.create_default_context()
    ca_file = spec.ca_file if spec.ca_file.is_absolute() else ctx.base_dir / spec.ca_file
    return ssl.create_default_context(cafile=str(ca_file))


SPEC = TlsSpec
