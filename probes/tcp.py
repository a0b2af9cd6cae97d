r"""Open a TCP connection, optionally send a line and wait for an expected reply.

Values: `connected` (1 or 0), `latency_ms` (the connect time), `received_bytes`. The
target is `host` and `port`, or the address of a named source (`source: shop` probes
the shop's PostgreSQL server without repeating its address).

```yaml
probes:
  - name: shop-db-port
    kind: tcp
    # Probe the address of this source from `sources:` (postgres, mysql or redis);
    # give either `source` or `port`, not both.
    source: shop
    every: 30s
    timeout: 2s
    expect: [connected == 1]

  - name: cache-ping
    kind: tcp
    # The host to connect to; an IP address or a name.
    host: 127.0.0.1
    # The TCP port, 1 to 65535.
    port: 6379
    # Bytes to send once connected (YAML escapes such as \r\n work in double quotes).
    send: "PING\r\n"
    # Read until this text arrives; the run fails if the connection closes or the
    # timeout passes first. Without it nothing is read.
    receive: "+PONG"
    every: 30s
    timeout: 2s
    expect: [latency_ms < 50]
```
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from agent.errors import ProbeError
from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation
from agent.sources import MysqlSource, PostgresSource, RedisSource
from probes._net import address, describe_connect_error, timed_out

_READ_CHUNK = 4096


class TcpSpec(ProbeSpec):
    """A TCP connection to host:port or to a named source's address."""

    kind: Literal["tcp"]
    host: str = Field(default="127.0.0.1", description="The host to connect to.")
    port: int | None = Field(default=None, ge=1, le=65535, description="The TCP port.")
    source: str | None = Field(
        default=None, description="Connect to this source's address instead of host/port."
    )
    send: str | None = Field(default=None, description="Text sent once connected (UTF-8).")
    receive: str | None = Field(
        default=None, description="Text that must be read back before the timeout."
    )

    @model_validator(mode="after")
    def _one_target(self) -> TcpSpec:
        if (self.port is None) == (self.source is None):
            raise ValueError("give exactly one of `port` (with `host`) or `source`")
        if self.source is not None and "host" in self.model_fields_set:
            raise ValueError("`host` cannot be combined with `source`: the source gives the host")
        return self


async def run(spec: TcpSpec, ctx: RunContext) -> Observation:
    """Connect, send, read until `receive` shows up; every failure is a one-line error."""
    host, port = resolve_address(spec, ctx)
    where = address(host, port)
    started = time.perf_counter()
    values: dict[str, Any] = {"connected": 0}
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(spec.timeout.total_seconds()):
            reader, writer = await asyncio.open_connection(host, port)
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            values.update(connected=1, latency_ms=latency_ms, received_bytes=0)
            if spec.send is not None:
                writer.write(spec.send.encode())
                await writer.drain()
            if spec.receive is not None and not await _read_until(reader, spec.receive, values):
                return Observation(
                    values=values,
                    latency_ms=latency_ms,
                    error=f"connection closed before {spec.receive!r} was received "
                    f"({values['received_bytes']} bytes read)",
                )
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()  # the peer may reset instead of closing politely
    except TimeoutError:
        reason = timed_out(spec.timeout)
        if values["connected"] and spec.receive is not None:
            reason += f" waiting for {spec.receive!r} ({values['received_bytes']} bytes read)"
        return Observation(values=values, latency_ms=values.get("latency_ms"), error=reason)
    except OSError as exc:
        reason = describe_connect_error(exc, host, port) or f"connect failed {where}: {exc}"
        return Observation(values=values, latency_ms=values.get("latency_ms"), error=reason)
    finally:
        if writer is not None:
            writer.close()  # synchronous and idempotent, so it also runs on cancellation
    detail = f"connected to {where} in {latency_ms:.1f} ms"
    if spec.receive is not None:
        detail += f", received {spec.receive!r}"
    return Observation(values=values, detail=detail, latency_ms=latency_ms)


async def _read_until(reader: asyncio.StreamReader, wanted: str, values: dict[str, Any]) -> bool:
    """Read until `wanted` appears (True) or EOF (False); counts bytes into `values`."""
    needle = wanted.encode()
    window = b""  # only the tail that could hold a split needle is kept, not the whole stream
    while True:
        chunk = await reader.read(_READ_CHUNK)
        if not chunk:
            return False
        values["received_bytes"] += len(chunk)
        window = window[-(len(needle) - 1) :] + chunk if len(needle) > 1 else chunk
        if needle in window:
            return True


def resolve_address(spec: TcpSpec, ctx: RunContext) -> tuple[str, int]:
    """The (host, port) to connect to: the spec's own, or its source's."""
    if spec.port is not None:
        return spec.host, spec.port
    assert spec.source is not None  # guaranteed by the spec's validator
    source = ctx.sources.get(spec.source)
    if source is None:
        raise ProbeError(f"unknown source {spec.source!r}")
    if isinstance(source, PostgresSource):
        if source.dsn:
            return _dsn_address(source.dsn, source.host, source.port)
        return source.host, source.port
    if isinstance(source, MysqlSource):
        return source.host, source.port
    if isinstance(source, RedisSource):
        url = urlsplit(source.url)
        if url.scheme not in ("redis", "rediss") or not url.hostname:
            raise ProbeError(f"source {spec.source!r} has no TCP address in its URL")
        return url.hostname, url.port or 6379
    raise ProbeError(f"source {spec.source!r} is a {source.kind} file, not a network service")


_KEYWORD = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def _dsn_address(dsn: str, default_host: str, default_port: int) -> tuple[str, int]:
    """Host and port of a libpq DSN, URL (`postgresql://u@h:5432/db`) or `host=h port=5432`.

    Of a multi-host DSN the first host is taken. A Unix-socket directory is refused:
    there is no TCP port to probe.
    """
    try:
        if "://" in dsn:
            netloc = urlsplit(dsn).netloc.rpartition("@")[2].split(",")[0]
            first = urlsplit(f"//{netloc}")
            host, port = first.hostname or default_host, first.port or default_port
        else:
            words = {key: value.strip("'") for key, value in _KEYWORD.findall(dsn)}
            host = (words.get("hostaddr") or words.get("host") or default_host).split(",")[0]
            port = int(words.get("port", "").split(",")[0] or default_port)
    except ValueError as exc:  # a port that is not a number
        raise ProbeError(f"cannot read host and port from the DSN: {exc}") from None
    if host.startswith("/"):
        raise ProbeError(f"the DSN points to a Unix socket ({host}), not a TCP port")
    return host, port


SPEC = TcpSpec
