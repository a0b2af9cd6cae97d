"""The systemd notify protocol (sd_notify(3)), hand-written: no dependency for 40 lines.

systemd passes `NOTIFY_SOCKET` (a Unix datagram socket path, or an abstract name
starting with `@`) to a `Type=notify` service, and `WATCHDOG_USEC` when `WatchdogSec=`
is set. Each notification is one datagram of `KEY=VALUE` lines. Outside systemd none of
this is set and every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends READY/RELOADING/STOPPING/WATCHDOG/STATUS to systemd when it listens."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._failed = False

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> Notifier:
        """Read the variables systemd set, and remove them from `env`.

        Removed so that children (command probes) do not inherit them and cannot speak
        for the agent (sd_notify's `unset_environment`).
        """
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        usec_text = env.get("WATCHDOG_USEC", "")
        pid_text = env.get("WATCHDOG_PID", "")
        for key in _ENV_KEYS:
            env.pop(key, None)
        usec = int(usec_text) if usec_text.isdigit() and int(usec_text) > 0 else None
        if pid_text and pid_text != str(os.getpid()):
            usec = None  # the watchdog is meant for another process
        return cls(address, usec)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec), None when not asked for."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines; False when it could not be sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            if not self._failed:  # once: a gone socket must not flood the log every ping
                log.warning("systemd notify to %s failed: %s", self.address, exc)
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """The service is up (startup finished, or a reload finished)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """A reload started; systemd wants the monotonic time with it (systemd >= 253)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown started."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Still alive and well."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status`."""
        return self.notify(f"STATUS={text}")
