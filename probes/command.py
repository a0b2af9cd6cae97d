"""Run a command (argv, no shell) and read values from what it prints.

Values: `exit_code`, plus what stdout holds: a JSON object (numbers, strings and
booleans, nested objects allowed) or `key=value` lines (numbers become numbers, the
rest stays text). An exit code outside `ok_exit_codes` is an error carrying the last
line of stderr. The command runs in its own process group; on timeout or cancellation
the whole group is terminated, then killed, so nothing it started is left behind.

```yaml
probes:
  - name: queue-depth
    kind: command
    # The program and its arguments; no shell is involved, so no quoting or pipes.
    argv: [/usr/local/bin/queue-stats, --queue, orders]
    # Variables added to the agent's own environment.
    env: {QUEUE_HOST: 127.0.0.1}
    # The working directory; a relative path is taken from the config file's folder.
    # Default: the config file's folder.
    cwd: null
    # Exit codes that mean the command itself worked.
    ok_exit_codes: [0]
    # At most this many bytes of stdout are kept and parsed.
    max_output_bytes: 65536
    every: 1m
    timeout: 10s
    expect: [exit_code == 0, depth < 1000]
```
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from agent.probe_spec import ProbeSpec, RunContext
from agent.results import Observation
from probes._net import timed_out

_GRACE_S = 1.0  # between SIGTERM and SIGKILL of the process group
_STDERR_TAIL = 4096  # only the last stderr line is reported
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class CommandSpec(ProbeSpec):
    """A program run as argv, its exit code and the values it prints."""

    kind: Literal["command"]
    argv: list[str] = Field(min_length=1, description="The program and its arguments.")
    env: dict[str, str] = Field(default_factory=dict, description="Added environment variables.")
    cwd: Path | None = Field(default=None, description="Working directory.")
    ok_exit_codes: list[int] = Field(
        default_factory=lambda: [0], min_length=1, description="Exit codes that are not errors."
    )
    max_output_bytes: int = Field(default=65536, ge=0, description="Stdout kept for parsing.")

    @field_validator("argv")
    @classmethod
    def _program_named(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("the program (argv[0]) must not be empty")
        return value


async def run(spec: CommandSpec, ctx: RunContext) -> Observation:
    """Run the command once with the probe's timeout and parse its output."""
    program = spec.argv[0]
    cwd = ctx.base_dir / spec.cwd if spec.cwd is not None else ctx.base_dir
    if not cwd.is_dir():
        return Observation(error=f"working directory not found: {cwd}")
    started = time.perf_counter()
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **spec.env},
            cwd=cwd,
            start_new_session=True,  # its own process group, so all of it can be killed
        )
    except FileNotFoundError:
        return Observation(error=f"command not found: {program}")
    except PermissionError:
        return Observation(error=f"permission denied: {program}")
    except OSError as exc:
        return Observation(error=f"cannot run {program}: {exc.strerror or exc}")

    try:
        async with asyncio.timeout(spec.timeout.total_seconds()):
            (stdout, cut), (stderr, _) = await asyncio.gather(
                _read(proc.stdout, spec.max_output_bytes, keep="head"),
                _read(proc.stderr, _STDERR_TAIL, keep="tail"),
            )
            code = await proc.wait()
    except TimeoutError:
        await _stop_group(proc)
        return Observation(error=f"{timed_out(spec.timeout)} (process group killed)")
    except BaseException:  # cancelled by the runner (or a bug): never leave the group behind
        await _stop_group(proc)
        raise
    latency_ms = round((time.perf_counter() - started) * 1000, 3)

    values = {**parse_output(stdout.decode(errors="replace"), cut), "exit_code": code}
    detail = f"exit {code} in {latency_ms:.0f} ms"
    if cut:
        detail += f" (stdout cut at {spec.max_output_bytes} bytes)"
    error = None
    if code not in spec.ok_exit_codes:
        error = f"exit code {code}" if code >= 0 else f"killed by {_signal_name(-code)}"
        last = _last_line(stderr.decode(errors="replace"))
        if last:
            error += f": {last}"
    return Observation(values=values, detail=detail, error=error, latency_ms=latency_ms)


async def _read(
    stream: asyncio.StreamReader | None, limit: int, *, keep: Literal["head", "tail"]
) -> tuple[bytes, bool]:
    """Read a pipe to EOF keeping `limit` bytes; the rest is drained so the child never blocks."""
    kept, total = bytearray(), 0
    if stream is None:
        return b"", False
    while chunk := await stream.read(65536):
        total += len(chunk)
        if keep == "head":
            kept += chunk[: max(0, limit - len(kept))]
        else:
            kept += chunk
            del kept[:-limit]
    return bytes(kept), total > limit


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, give it a short grace, SIGKILL what is left, reap."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(_GRACE_S):
            await proc.wait()
    except TimeoutError:
        pass
    finally:
        # Also when this wait is itself cancelled; and unconditionally, because
        # grandchildren may ignore SIGTERM or outlive the group leader.
        _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # With start_new_session the child leads a group whose id is its pid; the kernel
    # does not reuse that id while any member of the group is alive.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def parse_output(text: str, cut: bool = False) -> dict[str, Any]:
    """Values from stdout: a JSON object, else `key=value` lines; anything else is ignored."""
    stripped = text.strip()
    if stripped.startswith("{"):
        with contextlib.suppress(ValueError):
            document = json.loads(stripped)
            if isinstance(document, dict):
                return _scalars(document)
    lines = text.splitlines()
    if cut and lines:
        lines.pop()  # the last line may have been cut in the middle
    values: dict[str, Any] = {}
    for line in lines:
        key, sep, raw = line.partition("=")
        key, raw = key.strip(), raw.strip()
        if sep and _KEY.match(key):
            values[key] = _number(raw)
    return values


def _number(raw: str) -> int | float | str:
    if _INT.match(raw):
        return int(raw)
    if _FLOAT.match(raw):
        return float(raw)
    return raw


def _scalars(document: dict[str, Any]) -> dict[str, Any]:
    """Keep numbers, strings, booleans and nested objects; drop lists, nulls, NaN."""
    out: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            out[key] = _scalars(value)
        elif isinstance(value, bool | int | str) or (
            isinstance(value, float) and math.isfinite(value)
        ):
            out[key] = value
    return out


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


SPEC = CommandSpec
