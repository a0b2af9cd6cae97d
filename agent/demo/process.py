"""Start, kill and stop the demo shop as a child process.

The shop runs in its own session so a Ctrl-C in the terminal reaches the demo only,
which then stops the shop in order (SIGTERM, then SIGKILL after a grace period). The
shop also watches its parent and exits if the demo dies without cleaning up, so no
path leaves an orphan behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


class ShopStartError(RuntimeError):
    """The shop process exited or did not answer /health in time."""


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ShopProcess:
    """One shop child process on a fixed port; it can be killed and started again."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        python: str = sys.executable,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.python = python
        self.log_path = log_path or data_dir / "shop.log"
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The shop's root URL, e.g. `http://127.0.0.1:8080`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The running child's pid, or None when it is not running."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Spawn the shop (no-op if it runs); output goes to `log_path`, appended."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.python, "-m", "agent.demo.shop",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--parent-pid", str(os.getpid()),
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, within: float = 15.0) -> None:
        """Wait until /health answers 200; raises ShopStartError if the child exits first."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
            while True:
                if not self.running:
                    code = self._proc.returncode if self._proc is not None else None
                    raise ShopStartError(
                        f"the demo shop exited (code {code}) before answering; see {self.log_path}"
                    )
                try:
                    if (await client.get(f"{self.base_url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise ShopStartError(
                        f"the demo shop did not answer on {self.base_url} within {within:.0f}s"
                    )
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the shop, as a crash would, and reap it."""
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGKILL)
        self._reap(5.0)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the shop, SIGKILL it after `grace` seconds, and reap it.

        Synchronous on purpose: it must also work from a `finally` while the event loop
        is being cancelled.
        """
        if self._proc is not None and self.running:
            self._proc.terminate()
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap(5.0)

    def _reap(self, timeout: float) -> None:
        if self._proc is not None:
            self._proc.wait(timeout)


async def launch_shop(
    data_dir: Path,
    *,
    first_port: int | None = None,
    attempts: int = 3,
    extra_args: Sequence[str] = (),
) -> ShopProcess:
    """Start a shop on `first_port` (default: a free one) and wait for it to answer.

    A port picked free can be taken before the child binds it; then a fresh free port
    is tried, up to `attempts` times in all, so check `.port` on the result.
    Raises ShopStartError when every attempt failed.
    """
    port = first_port or free_port()
    for attempt in range(attempts):
        shop = ShopProcess(data_dir, port, extra_args=extra_args)
        shop.start()
        try:
            await shop.wait_ready()
            return shop
        except ShopStartError:
            shop.stop()
            if attempt == attempts - 1:
                raise
            port = free_port()
        except BaseException:  # cancelled (Ctrl-C) while waiting: leave no child behind
            shop.stop()
            raise
    raise AssertionError("unreachable")
