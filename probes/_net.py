"""One-line reasons for the ways a network target can be down, shared by http, tcp and tls.

A down target is a result, not an exception: the probes catch what the socket layer
raises and turn it into `connect refused 127.0.0.1:5432`, `DNS failure: ...`,
`TLS handshake failed: ...` or `timed out after 2s`.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
from datetime import timedelta

from agent.durations import format_duration

_ERRNO = re.compile(r"\[Errno (-?\d+)\]")


def timed_out(timeout: timedelta) -> str:
    """The reason for a run cut by its timeout, in the config's own units."""
    return f"timed out after {format_duration(timeout)}"


def address(host: str, port: int) -> str:
    """`host:port`, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain.

    Client libraries wrap socket errors (aiohttp in httpx-aiohttp, which even maps a
    refused connection to `httpx.ConnectTimeout`), so the wrapper's type cannot be
    trusted; the original OSError at the bottom of the chain can.
    """
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc


def describe_connect_error(exc: BaseException, host: str, port: int) -> str | None:
    """A one-line reason for a socket-level failure, or None if `exc` is not one."""
    where = address(host, port)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS handshake failed: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        # OpenSSL's reason codes read better as words: WRONG_VERSION_NUMBER -> wrong version number
        reason = exc.reason.replace("_", " ").lower() if exc.reason else str(exc)
        return f"TLS handshake failed: {reason}"
    if isinstance(exc, socket.gaierror):
        return f"DNS failure: {host}: {exc.strerror}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connect refused {where}"
    if isinstance(exc, TimeoutError):
        return None  # the caller knows the timeout and says "timed out after 2s"
    if isinstance(exc, ConnectionResetError):
        return f"connection reset by {where}"
    if isinstance(exc, OSError):
        # Python 3.11 merges the errors of several addresses (localhost -> ::1 and
        # 127.0.0.1) into one OSError without errno; refused on all is still "refused".
        text = str(exc)
        codes = set(_ERRNO.findall(text))
        if exc.errno is None and codes == {str(errno.ECONNREFUSED)}:
            return f"connect refused {where}"
        return f"connect failed {where}: {exc.strerror or text}"
    return None
