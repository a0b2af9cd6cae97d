"""Redis through redis-py's asyncio client, one client (and connection pool) per source.

The password comes from the source's `password`/`password_file` (else from the URL).
A command that meets a dead connection (Redis restarted, the connection killed) is
sent once more, at once, on a new connection: a stale pooled connection costs nothing,
and a server that is down still fails the call immediately (no rounds of backoff).
Replies are decoded as UTF-8 (invalid bytes become `\\x..` escapes). The client sets
no name, so an ACL user needs no `CLIENT SETNAME` right. Redis has no read-only
session: the `redis` probe only sends reading commands, and callers of `execute` must
do the same.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast
from urllib.parse import unquote, urlsplit

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent.connectors import SourceError
from agent.connectors._sql import one_line, seconds, source_error
from agent.redaction import Redactor
from agent.sources import RedisSource

T = TypeVar("T")
CONNECT_TIMEOUT = 5.0
_ERRNO = re.compile(r"Error (-?\d+) connecting to")


class RedisSourceConnector:
    """A `RedisConnector` for one Redis source."""

    dialect: Literal["redis"] = "redis"

    def __init__(self, name: str, spec: RedisSource) -> None:
        self.name = name
        self._spec = spec
        url = urlsplit(spec.url)
        self._where = f"{url.hostname or '127.0.0.1'}:{url.port or 6379}"
        self._user = unquote(url.username) if url.username else "default"
        password = spec.password.get_secret_value() if spec.password else None
        secrets = [s for s in (password, url.password and unquote(url.password)) if s]
        self._redactor = Redactor(secrets)
        self._password = password
        self._client: Redis | None = None

    def client(self) -> Redis:
        """The shared client, created on first use (creating it does not connect)."""
        if self._client is None:
            self._client = Redis.from_url(
                self._spec.url,
                password=self._password,  # None keeps a password given in the URL
                socket_connect_timeout=CONNECT_TIMEOUT,
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[redis.exceptions.ConnectionError],
                decode_responses=True,
                encoding_errors="backslashreplace",
            )
        return self._client

    async def execute(self, *args: Any, timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        """Send one raw command and return redis-py's parsed reply."""

        def command(client: Redis) -> Awaitable[Any]:
            return cast(Awaitable[Any], client.execute_command(*args))  # type: ignore[no-untyped-call]

        return await self.call(command, timeout=timeout)

    async def call(self, fn: Callable[[Redis], Awaitable[T]], *, timeout: float = 10.0) -> T:  # noqa: ASYNC109
        """Run `fn(client)` within `timeout`; every failure becomes a SourceError."""
        try:
            async with asyncio.timeout(timeout):
                return await fn(self.client())
        except TimeoutError:
            raise SourceError(f"timed out after {seconds(timeout)} ({self._where})") from None
        except redis.exceptions.RedisError as exc:
            raise self._describe(exc) from None

    async def aclose(self) -> None:
        """Close the client and its connections (the next call creates a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _describe(self, exc: redis.exceptions.RedisError) -> SourceError:
        text = one_line(str(exc)) or type(exc).__name__
        if isinstance(exc, redis.exceptions.AuthenticationError) or "WRONGPASS" in text:
            return source_error(f"authentication failed for user '{self._user}'", self._redactor)
        if isinstance(exc, redis.exceptions.TimeoutError):
            return SourceError(f"timed out ({self._where}): {text}")
        if isinstance(exc, redis.exceptions.ConnectionError):
            match = _ERRNO.search(text)
            if match and match[1] == "111":  # ECONNREFUSED
                return SourceError(f"connect refused {self._where}")
            if match:
                return source_error(f"connect failed {self._where}: {text}", self._redactor)
            return source_error(f"connection lost: {text}", self._redactor)
        return source_error(text, self._redactor)
