"""Run an argv in its own process group with a timeout: the `command` and `restart` kinds.

The pattern is the `command` probe's: a new session (so the whole group can be
signalled), stdout and stderr drained concurrently and kept up to a limit, and on
timeout or cancellation SIGTERM to the group, a short grace, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from probes._net import timed_out
from probes.command import _read, _stop_group


@dataclass(frozen=True)
class Finished:
    """How a process ended: exit code (None when cut by the timeout) and what it printed."""

    exit_code: int | None
    output: str
    error: str | None


async def run_argv(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    limit_s: float,
    max_output: int,
) -> Finished:
    """Run `argv` to completion or until `limit_s`; never leaves its process group behind."""
    if not cwd.is_dir():  # noqa: ASYNC240 - one stat, like the command probe
        return Finished(None, "", f"working directory not found: {cwd}")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError:
        return Finished(None, "", f"command not found: {argv[0]}")
    except PermissionError:
        return Finished(None, "", f"permission denied: {argv[0]}")
    except OSError as exc:
        return Finished(None, "", f"cannot run {argv[0]}: {exc.strerror or exc}")
    try:
        async with asyncio.timeout(limit_s):
            output, cut = await _read(proc.stdout, max_output, keep="head")
            code = await proc.wait()
    except TimeoutError:
        await _stop_group(proc)
        return Finished(None, "", f"{timed_out(timedelta(seconds=limit_s))} (process group killed)")
    except BaseException:
        await _stop_group(proc)
        raise
    text = output.decode(errors="replace")
    if cut:
        text += f"\n... (output cut at {max_output} bytes)"
    error = None if code == 0 else f"exit code {code}" if code > 0 else f"killed by signal {-code}"
    return Finished(code, text, error)
