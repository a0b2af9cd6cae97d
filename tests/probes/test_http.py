"""The http probe against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import ValidationError

from agent.probe_spec import RunContext
from probes.http import HttpSpec, run
from tests.probes.conftest import StartTcp


def spec(url: str, **fields: Any) -> HttpSpec:
    return HttpSpec.model_validate({"name": "web", "kind": "http", "url": url, **fields})


@pytest.mark.parametrize(
    ("path", "fields", "status", "body"),
    [
        pytest.param("/json", {}, 200, {"status": "ok", "orders": {"pending": 3}}, id="json-200"),
        pytest.param("/status/503", {}, 503, None, id="503-is-a-value-not-an-error"),
        pytest.param("/status/404", {}, 404, None, id="404"),
        pytest.param(
            "/redirect", {}, 200, {"status": "ok", "orders": {"pending": 3}}, id="redirect-followed"
        ),
        pytest.param(
            "/redirect", {"follow_redirects": False}, 302, None, id="redirect-not-followed"
        ),
        pytest.param("/json-as-text", {}, 200, {"status": "ok"}, id="json-sniffed-from-text"),
        pytest.param("/broken-json", {}, 200, None, id="broken-json-is-no-body"),
        pytest.param("/text", {}, 200, None, id="plain-text"),
        pytest.param("/json", {"method": "HEAD"}, 200, None, id="head"),
    ],
)
async def test_status_and_body(
    ctx: RunContext, http_url: str, path: str, fields: dict[str, Any], status: int, body: Any
) -> None:
    result = await run(spec(http_url + path, **fields), ctx)
    assert result.error is None
    assert result.values["status"] == status
    assert result.body == body
    assert result.detail.startswith(f"HTTP {status} in ")
    assert result.latency_ms is not None and result.latency_ms > 0


async def test_sends_method_headers_and_body(ctx: RunContext, http_url: str) -> None:
    probe = spec(http_url + "/echo", method="POST", headers={"X-Test": "yes"}, body="hello")
    result = await run(probe, ctx)
    assert result.body == {"method": "POST", "body": "hello", "x_test": "yes"}


async def test_counts_body_bytes(ctx: RunContext, http_url: str) -> None:
    result = await run(spec(http_url + "/text"), ctx)
    assert result.values["body_bytes"] == len("hello")


async def test_stops_reading_at_max_body_bytes(ctx: RunContext, http_url: str) -> None:
    result = await run(spec(http_url + "/big", max_body_bytes=1000), ctx)
    assert result.error is None
    assert result.values["body_bytes"] == 1000
    assert "cut at 1000 bytes" in result.detail


async def test_latency_covers_a_slow_handler(ctx: RunContext, http_url: str) -> None:
    result = await run(spec(http_url + "/slow"), ctx)
    assert result.values["latency_ms"] >= 200
    assert result.latency_ms == result.values["latency_ms"]


async def test_a_hung_server_times_out_on_its_own(ctx: RunContext, http_url: str) -> None:
    started = time.monotonic()
    result = await run(spec(http_url + "/hang", timeout="300ms"), ctx)
    assert result.error == "timed out after 300ms"
    assert time.monotonic() - started < 2


async def test_a_closed_port_is_refused(ctx: RunContext, closed_port: int) -> None:
    result = await run(spec(f"http://127.0.0.1:{closed_port}/"), ctx)
    assert result.error == f"connect refused 127.0.0.1:{closed_port}"
    assert result.values == {}


async def test_an_unknown_host_is_a_dns_failure(ctx: RunContext) -> None:
    # .invalid never resolves (RFC 6761).
    result = await run(spec("http://opsagent-test.invalid/", timeout="5s"), ctx)
    assert result.error is not None
    assert result.error.startswith("DNS failure: opsagent-test.invalid: ")


async def test_a_server_hanging_up_is_a_read_error(ctx: RunContext, tcp_server: StartTcp) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # take the request, answer nothing

    port = await tcp_server(hang_up)
    result = await run(spec(f"http://127.0.0.1:{port}/"), ctx)
    assert result.error is not None
    assert result.error.startswith("HTTP read error: ")
    assert "\n" not in result.error


async def test_https_with_an_untrusted_cert(ctx: RunContext, https_url: str) -> None:
    result = await run(spec(https_url + "/json"), ctx)
    assert result.error is not None
    assert result.error.startswith("TLS handshake failed: certificate verify failed: ")


async def test_https_without_verification(ctx: RunContext, https_url: str) -> None:
    result = await run(spec(https_url + "/json", verify_tls=False), ctx)
    assert result.error is None
    assert result.values["status"] == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"url": "ftp://example.com/"}, "expected http://host", id="ftp-scheme"),
        pytest.param({"url": "http://"}, "invalid URL", id="no-host"),
        pytest.param({"url": "http://x/", "method": "FETCH"}, "method", id="unknown-method"),
        pytest.param(
            {"url": "http://x/", "max_body_bytes": -1}, "max_body_bytes", id="negative-max"
        ),
        pytest.param({"url": "http://x/", "verify": False}, "verify", id="unknown-key"),
    ],
)
def test_rejects_bad_specs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HttpSpec.model_validate({"name": "web", "kind": "http", **fields})
