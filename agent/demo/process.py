"""Start, kill and stop the demo shop as a child process.

The shop runs in its own session so a Ctrl-C in the terminal reaches the demo only,
which then stops the shop in order (SIGTERM, then SIGKILL after a grace period). The
shop also watches the demo's pid and exits if the demo dies without cleaning up, so no
path leaves an orphan behind.

The agent may restart a killed shop itself (the demo's `restart-shop` remediation):
that shop is not our `Popen` child. `ShopProcess` therefore also knows the shop by its
command line (`agent.demo.shop --port PORT --data-dir`, which only this demo's shop
has), so killing, stopping and "is it running" cover a shop whoever started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil


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
    def pattern(self) -> str:
        """The command-line substring of this shop, whoever started it."""
        return shop_pattern(self.port)

    @property
    def pid(self) -> int | None:
        """The running shop's pid (our child, or one the agent started), or None."""
        if self._child_running:
            assert self._proc is not None
            return self._proc.pid
        others = self._others()
        return others[0].pid if others else None

    @property
    def running(self) -> bool:
        """True while a shop on our port is alive (our child, or one the agent started)."""
        return self._child_running or bool(self._others())

    @property
    def _child_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _others(self) -> list[psutil.Process]:
        """Live shops on our port that are not our `Popen` child (the agent restarted them)."""
        own = self._proc.pid if self._proc is not None else None
        return [p for p in shop_processes(self.pattern) if p.pid != own]

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
        """SIGKILL the shop, as a crash would, and reap it (whoever started it)."""
        others = self._others()
        if self._proc is not None and self._child_running:
            self._proc.send_signal(signal.SIGKILL)
        for proc in others:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self._reap(5.0)
        _wait_gone(others, 5.0)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the shop, SIGKILL it after `grace` seconds, and reap it.

        Synchronous on purpose: it must also work from a `finally` while the event loop
        is being cancelled. A shop the agent started is stopped the same way.
        """
        others = self._others()
        for proc in others:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        if self._proc is not None and self._child_running:
            self._proc.terminate()
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        for proc in _wait_gone(others, grace):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self._reap(5.0)
        _wait_gone(others, 5.0)

    def _reap(self, timeout: float) -> None:
        if self._proc is not None:
            self._proc.wait(timeout)


def shop_pattern(port: int) -> str:
    """The part of a shop's command line that names its port (and only that shop's)."""
    return f"agent.demo.shop --port {port} --data-dir"


def shop_processes(pattern: str) -> list[psutil.Process]:
    """Live processes whose command line contains `pattern` (zombies count as gone)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        if pattern in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until `procs` have exited (or are zombies); those still alive after `timeout`.

    Polls instead of `psutil.wait_procs`: a shop the agent started is reaped by asyncio's
    child watcher in this process, and a second `waitpid` would race it.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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
