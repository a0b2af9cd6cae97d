"""The http probe against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
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
        pytest.param({"url": "http://x/\n"}, "non-printable", id="control-character"),
        pytest.param({"url": "http://x:99999/"}, "invalid URL", id="port-out-of-range"),
    ],
)
def test_rejects_bad_specs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HttpSpec.model_validate({"name": "web", "kind": "http", **fields})


# --- the finer points of the exchange, against a second app ---------------------------


@pytest.fixture
async def odd_url(closed_port: int) -> AsyncIterator[str]:
    """Redirect loops and chains, compressed bodies, and an echo of the request headers."""

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def to_closed(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{closed_port}/gone")

    async def see_other(request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/headers")

    async def gzipped(request: web.Request) -> web.Response:
        body = gzip.compress(b'{"status": "ok", "pad": "' + b"x" * 500 + b'"}')
        return web.Response(
            body=body, content_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    async def headers(request: web.Request) -> web.Response:
        return web.json_response(
            {"method": request.method, "body": await request.text(), **request.headers}
        )

    app = web.Application()
    app.router.add_get("/loop", loop)
    app.router.add_get("/to-closed", to_closed)
    app.router.add_post("/see-other", see_other)
    app.router.add_get("/gzip", gzipped)
    app.router.add_route("*", "/headers", headers)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    await runner.cleanup()


async def test_endless_redirects_are_a_failure(ctx: RunContext, odd_url: str) -> None:
    result = await run(spec(odd_url + "/loop"), ctx)
    assert result.error == "too many redirects"


async def test_a_redirect_to_a_dead_port_names_that_port(
    ctx: RunContext, odd_url: str, closed_port: int
) -> None:
    result = await run(spec(odd_url + "/to-closed"), ctx)
    assert result.error == f"connect refused 127.0.0.1:{closed_port}"


async def test_see_other_turns_a_post_into_a_get(ctx: RunContext, odd_url: str) -> None:
    result = await run(spec(odd_url + "/see-other", method="POST", body="order=1"), ctx)
    assert result.values["status"] == 200
    assert result.body["method"] == "GET" and result.body["body"] == ""


async def test_a_compressed_body_is_decoded_and_counted_decoded(
    ctx: RunContext, odd_url: str
) -> None:
    result = await run(spec(odd_url + "/gzip"), ctx)
    assert result.body is not None and result.body["status"] == "ok"
    assert result.values["body_bytes"] == len(b'{"status": "ok", "pad": "' + b"x" * 500 + b'"}')


async def test_the_request_says_who_sends_it(ctx: RunContext, odd_url: str) -> None:
    probe = spec(odd_url + "/headers", method="PUT", body="hi", headers={"X-Trace": "t1"})
    result = await run(probe, ctx)
    assert result.body["User-Agent"].startswith("opsagent/")
    assert result.body["X-Trace"] == "t1"
    assert result.body["Content-Length"] == "2" and result.body["body"] == "hi"
    assert result.body["method"] == "PUT"


async def test_something_that_is_not_http_is_a_read_error(
    ctx: RunContext, tcp_server: StartTcp
) -> None:
    async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    port = await tcp_server(ssh)
    result = await run(spec(f"http://127.0.0.1:{port}/"), ctx)
    assert result.error is not None
    assert result.error.startswith("HTTP read error: Bad status line")
    assert "\n" not in result.error


async def test_a_body_cut_short_is_a_read_error(ctx: RunContext, tcp_server: StartTcp) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a"')
        await writer.drain()

    port = await tcp_server(short)
    result = await run(spec(f"http://127.0.0.1:{port}/"), ctx)
    assert result.error is not None
    assert result.error.startswith("HTTP read error: Not enough data")


async def test_runs_share_one_session_per_tls_mode(ctx: RunContext, http_url: str) -> None:
    await run(spec(http_url + "/json"), ctx)
    await run(spec(http_url + "/text"), ctx)
    assert ctx.http_session() is ctx.http_session(verify=True)
    assert ctx.http_session(verify=False) is not ctx.http_session()
    await ctx.aclose()
    assert ctx.http_session().closed is False  # a fresh one after close
