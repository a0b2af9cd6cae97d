"""The shared HTTP client: httpx's API over the aiohttp transport.

httpx's own transport collapses under concurrency (measured: 180 probes/s with 50 in
flight, p99 ~1 s), which would raise false "slow endpoint" alerts; the same API over
aiohttp held ~3,500/s. See BENCHMARKS.md.
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import HttpxAiohttpClient


def make_client(*, verify: bool = True, max_connections: int = 1000) -> httpx.AsyncClient:
    """Create a pooled client; timeouts are set per request by the probe."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    client: httpx.AsyncClient = HttpxAiohttpClient(
        verify=verify, limits=limits, trust_env=False, timeout=None
    )
    return client
