"""Real targets on loopback for the probe tests: HTTP, TCP and TLS servers on port 0."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from agent.probe_spec import RunContext

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
StartTcp = Callable[..., Awaitable[int]]


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RunContext]:
    """A fresh run context rooted in the test's temp folder; its clients are closed after."""
    context = RunContext(base_dir=tmp_path)
    yield context
    await context.aclose()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def tcp_server() -> AsyncIterator[StartTcp]:
    """Start asyncio TCP servers on ephemeral ports: `port = await tcp_server(handler, ssl=...)`."""
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[None]] = set()

    async def start(handler: StreamHandler, ssl: ssl.SSLContext | None = None) -> int:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass  # the probe hung up first: expected in these tests
            finally:
                writer.close()
                handlers.discard(task)

        server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
    for task in list(handlers):  # handlers that wait forever (silent servers)
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*handlers, return_exceptions=True)
    for server in servers:
        await server.wait_closed()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept and never say anything (cut by the test's teardown)."""
    await asyncio.Event().wait()


# --- HTTP ---------------------------------------------------------------------------


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status page")


async def _json(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "orders": {"pending": 3}})


async def _json_as_text(request: web.Request) -> web.Response:
    return web.Response(text='{"status": "ok"}', content_type="text/plain")


async def _broken_json(request: web.Request) -> web.Response:
    return web.Response(text="{not json", content_type="application/json")


async def _text(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _echo(request: web.Request) -> web.Response:
    body = await request.text()
    return web.json_response(
        {"method": request.method, "body": body, "x_test": request.headers.get("X-Test")}
    )


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/json")


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 100_000)


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(0.2)
    return web.json_response({"status": "ok"})


async def _hang(request: web.Request) -> web.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/json", _json)
    app.router.add_get("/json-as-text", _json_as_text)
    app.router.add_get("/broken-json", _broken_json)
    app.router.add_get("/text", _text)
    app.router.add_get("/redirect", _redirect)
    app.router.add_get("/big", _big)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/hang", _hang)
    return app


async def _serve(ssl_context: ssl.SSLContext | None) -> AsyncIterator[str]:
    runner = web.AppRunner(_app(), handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context else "http"
    yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    await runner.cleanup()


@pytest.fixture
async def http_url() -> AsyncIterator[str]:
    """Base URL of a real aiohttp server with the routes above."""
    async for url in _serve(None):
        yield url


@pytest.fixture
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture
async def https_url(ca: trustme.CA) -> AsyncIterator[str]:
    """The same app over TLS, with a certificate from `ca` for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async for url in _serve(context):
        yield url


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """A TLS server context presenting `cert`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def write_ca(ca: trustme.CA, path: Path) -> Path:
    """Write the CA certificate as PEM (for the tls probe's ca_file)."""
    ca.cert_pem.write_to_path(str(path))
    return path
