"""Serving the control API inside the agent's event loop.

aiohttp's AppRunner/TCPSite/UnixSite run on the loop they are started from and install
no signal handlers, so the agent keeps sole control of SIGTERM and SIGHUP.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from agent.api.auth import ADDR_FILE
from agent.config import ApiSection, split_listen

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 2.0
UNIX_SOCKET_MODE = 0o660


class _DropMalformedRequests(logging.Filter):
    """aiohttp logs a traceback at ERROR for every malformed request (a port scanner, a
    fuzzer); the client already got its 400, so the log keeps nothing of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], BadHttpMessage))


_drop_malformed = _DropMalformedRequests()


class ApiServer:
    """The API's listening sockets; `start()` binds, `stop()` closes and cleans up."""

    def __init__(self, app: web.Application, settings: ApiSection, data_dir: Path) -> None:
        server_log = logging.getLogger("aiohttp.server")
        if _drop_malformed not in server_log.filters:
            server_log.addFilter(_drop_malformed)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        self._settings = settings
        self._data_dir = data_dir
        self._addr_file = data_dir / ADDR_FILE
        self.url: str | None = None  # http://host:port actually bound
        self.unix_socket: Path | None = None

    async def start(self) -> None:
        """Bind the TCP address (and the Unix socket); OSError if that fails."""
        await self._runner.setup()
        host, port = split_listen(self._settings.listen)
        try:
            site = web.TCPSite(self._runner, host, port)
            await site.start()
            bound = self._tcp_address()
            self.url = f"http://{bound}"
            if self._settings.unix_socket is not None:
                await self._start_unix(self._data_dir / self._settings.unix_socket)
        except BaseException:
            await self._runner.cleanup()
            raise
        _write_atomically(self._addr_file, bound + "\n")

    async def _start_unix(self, path: Path) -> None:
        if len(os.fsencode(path)) > 107:  # sun_path's limit
            raise OSError(f"the Unix socket path is too long (over 107 bytes): {path}")
        # A socket left by a crashed agent: nobody can be listening on it, since the
        # store lock guarantees one agent per data directory. (Tiny blocking calls.)
        if path.is_socket():  # noqa: ASYNC240
            path.unlink()  # noqa: ASYNC240
        path.parent.mkdir(parents=True, exist_ok=True)
        site = web.UnixSite(self._runner, str(path))
        await site.start()
        os.chmod(path, UNIX_SOCKET_MODE)
        self.unix_socket = path

    def _tcp_address(self) -> str:
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                host, port = address[0], address[1]
                return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise OSError("the API bound no TCP address")

    async def stop(self) -> None:
        """Stop accepting, give requests in progress a moment, remove api.addr."""
        with contextlib.suppress(FileNotFoundError):
            if self.url and self._addr_file.read_text().strip() == self.url.removeprefix("http://"):
                self._addr_file.unlink()
        await self._runner.cleanup()
        if self.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                self.unix_socket.unlink()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
