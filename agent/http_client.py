"""The shared HTTP clients.

`make_session` is what the `http` probe uses: a plain `aiohttp.ClientSession`. Measured
on the bench machine (one process, 50 in flight, 4,000 keep-alive requests), aiohttp
alone costs ~200-290 µs of CPU per request, and httpx's API over the aiohttp transport
(`httpx-aiohttp`) ~590 µs: at thousands of probes per second that layer alone was half
the agent's CPU. httpx's own transport is no alternative: it collapses under
concurrency (180 probes/s with 50 in flight, p99 ~1 s), which would raise false "slow
endpoint" alerts. See BENCHMARKS.md.

The heartbeat ping uses the same session: the agent itself never loads httpx (the CLI's
API client does).
"""

from __future__ import annotations

import ssl

import aiohttp

from agent import __version__

USER_AGENT = f"opsagent/{__version__}"
# Same as httpx's defaults, which the http probe used before: an idle pooled connection
# is closed after 5 s, and at most 20 redirects are followed.
KEEPALIVE_S = 5.0
MAX_REDIRECTS = 20


def tls_context(*, verify: bool) -> ssl.SSLContext:
    """The TLS settings of the probes (as httpx made them): certifi's CAs, or no checks."""
    if not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx; else the system's CAs
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def make_session(*, verify: bool = True, max_connections: int = 1000) -> aiohttp.ClientSession:
    """A pooled aiohttp session for probes; call inside the running event loop.

    No aiohttp timeouts: every request is bounded by the probe's own `asyncio.timeout`
    (one timer instead of several per request). Cookies are kept per session, from any
    host including IP addresses, as the httpx client did. `trust_env` is off: a probe
    measures the target, not a proxy from the environment.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_S,
        ssl=tls_context(verify=verify),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )
