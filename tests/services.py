"""Helpers for tests that need a real server on loopback.

A test that needs PostgreSQL, MariaDB or Redis calls `require_tcp(...)`: it skips with
a clear reason when the server is absent, and fails instead when
OPSAGENT_REQUIRE_SERVICES=1 (CI sets it), so a missing server never turns CI green.
"""

from __future__ import annotations

import os
import socket

import pytest

REQUIRED = os.environ.get("OPSAGENT_REQUIRE_SERVICES") == "1"


def server_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_tcp(name: str, host: str, port: int) -> None:
    """Skip (or fail under OPSAGENT_REQUIRE_SERVICES=1) unless host:port answers."""
    if server_answers(host, port):
        return
    reason = f"{name} is not answering on {host}:{port}"
    if REQUIRED:
        pytest.fail(f"{reason} and OPSAGENT_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """An ephemeral port that was free a moment ago (for child processes that must bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
