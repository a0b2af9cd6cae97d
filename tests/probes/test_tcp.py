"""The tcp probe against real listeners on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from agent.errors import ProbeError
from agent.probe_spec import RunContext
from agent.sources import SourceSpec
from probes.tcp import TcpSpec, run
from tests.probes.conftest import StartTcp, silent

BANNER = b"SSH-2.0-OpenSSH_test\r\n"


def spec(**fields: Any) -> TcpSpec:
    return TcpSpec.model_validate({"name": "port", "kind": "tcp", **fields})


async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(BANNER)
    await writer.drain()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readline())
    await writer.drain()


async def split_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # The expected text arrives in two packets: the probe must join them.
    writer.write(b"SS")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(b"H-2.0\r\n")
    await writer.drain()


async def test_connects(ctx: RunContext, tcp_server: StartTcp) -> None:
    port = await tcp_server(silent)
    result = await run(spec(port=port), ctx)
    assert result.error is None
    assert result.values["connected"] == 1
    assert result.values["received_bytes"] == 0
    assert result.latency_ms is not None and result.latency_ms > 0
    assert result.detail.startswith(f"connected to 127.0.0.1:{port} in ")


@pytest.mark.parametrize(
    ("handler", "fields"),
    [
        pytest.param(banner, {"receive": "SSH-2.0"}, id="banner"),
        pytest.param(echo, {"send": "PING\r\n", "receive": "PING"}, id="echo"),
        pytest.param(split_banner, {"receive": "SSH-2.0"}, id="reply-split-in-two-reads"),
    ],
)
async def test_receives_expected_text(
    ctx: RunContext, tcp_server: StartTcp, handler: Any, fields: dict[str, Any]
) -> None:
    port = await tcp_server(handler)
    result = await run(spec(port=port, **fields), ctx)
    assert result.error is None
    assert result.values["received_bytes"] > 0
    assert f"received {fields['receive']!r}" in result.detail


async def test_reply_without_expected_text(ctx: RunContext, tcp_server: StartTcp) -> None:
    port = await tcp_server(banner)
    result = await run(spec(port=port, receive="+PONG"), ctx)
    assert (
        result.error == f"connection closed before '+PONG' was received ({len(BANNER)} bytes read)"
    )
    assert result.values["connected"] == 1


async def test_silent_server_times_out_waiting(ctx: RunContext, tcp_server: StartTcp) -> None:
    port = await tcp_server(silent)
    result = await run(spec(port=port, receive="hello", timeout="200ms"), ctx)
    assert result.error == "timed out after 200ms waiting for 'hello' (0 bytes read)"
    assert result.values["connected"] == 1


async def test_closed_port_is_refused(ctx: RunContext, closed_port: int) -> None:
    result = await run(spec(port=closed_port), ctx)
    assert result.error == f"connect refused 127.0.0.1:{closed_port}"
    assert result.values == {"connected": 0}


async def test_unknown_host_is_a_dns_failure(ctx: RunContext) -> None:
    result = await run(spec(host="opsagent-test.invalid", port=80, timeout="5s"), ctx)
    assert result.error is not None
    assert result.error.startswith("DNS failure: opsagent-test.invalid")


SOURCES = TypeAdapter(SourceSpec)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            {"kind": "postgres", "dsn": "postgresql://shop@127.0.0.1:{port}/shop"},
            id="postgres-url-dsn",
        ),
        pytest.param(
            {"kind": "postgres", "dsn": "postgresql://a:b@127.0.0.1:{port},10.0.0.9:5432/shop"},
            id="postgres-multi-host-dsn",
        ),
        pytest.param(
            {"kind": "postgres", "dsn": "host=127.0.0.1 port={port} dbname=shop"},
            id="postgres-keyword-dsn",
        ),
        pytest.param(
            {"kind": "postgres", "host": "127.0.0.1", "port": "{port}"}, id="postgres-fields"
        ),
        pytest.param({"kind": "mysql", "host": "127.0.0.1", "port": "{port}"}, id="mysql"),
        pytest.param({"kind": "redis", "url": "redis://127.0.0.1:{port}/0"}, id="redis"),
    ],
)
async def test_connects_to_a_sources_address(
    ctx: RunContext, tcp_server: StartTcp, source: dict[str, str]
) -> None:
    port = await tcp_server(silent)
    filled = {key: value.format(port=port) for key, value in source.items()}
    ctx.sources["db"] = SOURCES.validate_python(filled)
    result = await run(spec(source="db"), ctx)
    assert result.error is None
    assert result.detail.startswith(f"connected to 127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(None, "unknown source 'db'", id="unknown-source"),
        pytest.param({"kind": "sqlite", "path": "shop.db"}, "is a sqlite file", id="sqlite-file"),
        pytest.param(
            {"kind": "postgres", "dsn": "host=/run/postgresql dbname=shop"},
            "Unix socket",
            id="unix-socket-dsn",
        ),
        pytest.param(
            {"kind": "redis", "url": "unix:///run/redis.sock"}, "no TCP address", id="redis-socket"
        ),
    ],
)
async def test_a_source_without_tcp_address_is_a_probe_error(
    ctx: RunContext, source: dict[str, str] | None, message: str
) -> None:
    if source is not None:
        ctx.sources["db"] = SOURCES.validate_python(source)
    with pytest.raises(ProbeError, match=message):
        await run(spec(source="db"), ctx)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({}, "exactly one of", id="no-target"),
        pytest.param({"port": 5432, "source": "shop"}, "exactly one of", id="port-and-source"),
        pytest.param(
            {"source": "shop", "host": "10.0.0.1"}, "cannot be combined", id="host-and-source"
        ),
        pytest.param({"port": 0}, "greater than or equal to 1", id="port-zero"),
        pytest.param({"port": 65536}, "less than or equal to 65535", id="port-too-big"),
    ],
)
def test_rejects_bad_specs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**fields)
