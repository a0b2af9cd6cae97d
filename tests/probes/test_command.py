"""The command probe running real programs (this Python), timeouts included."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from agent.probe_spec import RunContext
from probes.command import CommandSpec, parse_output, run


def spec(*argv: str, **fields: Any) -> CommandSpec:
    return CommandSpec.model_validate(
        {"name": "cmd", "kind": "command", "argv": list(argv), **fields}
    )


def python(code: str, *args: str, **fields: Any) -> CommandSpec:
    return spec(sys.executable, "-c", code, *args, **fields)


@pytest.mark.parametrize(
    ("code", "values"),
    [
        pytest.param(
            "print('depth=42\\nratio=0.5\\nstate=green\\nbad key=1\\n=x\\nno equals sign')",
            {"depth": 42, "ratio": 0.5, "state": "green"},
            id="key-value-lines",
        ),
        pytest.param(
            "import json; print(json.dumps({'depth': 42, 'queue': {'lag': 1.5, 'name': 'orders'},"
            " 'ok': True, 'items': [1], 'none': None}))",
            {"depth": 42, "queue": {"lag": 1.5, "name": "orders"}, "ok": True},
            id="json-object",
        ),
        pytest.param("print('exit_code=9')", {}, id="exit-code-not-overridden"),
        pytest.param("pass", {}, id="no-output"),
    ],
)
async def test_parses_values_from_stdout(
    ctx: RunContext, code: str, values: dict[str, Any]
) -> None:
    result = await run(python(code), ctx)
    assert result.error is None
    assert result.values == {**values, "exit_code": 0}
    assert result.detail.startswith("exit 0 in ")


@pytest.mark.parametrize(
    ("text", "cut", "values"),
    [
        pytest.param(
            "n=-5\nf=1e3\ng=+2.5\nv=1.2.3\nx=nan",
            False,
            {"n": -5, "f": 1000.0, "g": 2.5, "v": "1.2.3", "x": "nan"},
            id="numbers-and-text",
        ),
        pytest.param("  spaced  =  7  ", False, {"spaced": 7}, id="whitespace"),
        pytest.param('{"a": NaN, "b": 1}', False, {"b": 1}, id="json-nan-dropped"),
        pytest.param("[1, 2]", False, {}, id="json-array-ignored"),
        pytest.param("{broken\na=1", False, {"a": 1}, id="broken-json-falls-back"),
        pytest.param("a=1\nb=2", True, {"a": 1}, id="cut-drops-last-line"),
    ],
)
def test_parse_output(text: str, cut: bool, values: dict[str, Any]) -> None:
    assert parse_output(text, cut) == values


@pytest.mark.parametrize(
    ("code", "fields", "error"),
    [
        pytest.param(
            "import sys; print('first', file=sys.stderr); print('boom: disk full', file=sys.stderr); sys.exit(3)",
            {},
            "exit code 3: boom: disk full",
            id="exit-3-with-stderr",
        ),
        pytest.param("import sys; sys.exit(2)", {}, "exit code 2", id="exit-2-silent"),
        pytest.param(
            "import sys; print('x' * 500, file=sys.stderr); sys.exit(1)",
            {},
            "exit code 1: " + "x" * 200,
            id="long-stderr-truncated",
        ),
        pytest.param(
            "import sys; sys.exit(3)", {"ok_exit_codes": [0, 3]}, None, id="exit-3-allowed"
        ),
        pytest.param(
            "import os; os.kill(os.getpid(), 9)", {}, "killed by SIGKILL", id="killed-by-signal"
        ),
    ],
)
async def test_exit_codes(
    ctx: RunContext, code: str, fields: dict[str, Any], error: str | None
) -> None:
    result = await run(python(code, **fields), ctx)
    assert result.error == error
    assert isinstance(result.values["exit_code"], int)


@pytest.mark.parametrize(
    "program",
    [
        pytest.param("opsagent-no-such-command", id="not-on-path"),
        pytest.param("/nonexistent/bin/tool", id="absolute-path"),
    ],
)
async def test_a_missing_program(ctx: RunContext, program: str) -> None:
    result = await run(spec(program), ctx)
    assert result.error == f"command not found: {program}"


async def test_a_program_that_is_not_executable(ctx: RunContext, tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\necho ok\n")
    script.chmod(0o644)
    result = await run(spec(str(script)), ctx)
    assert result.error == f"permission denied: {script}"


async def test_env_is_added_to_the_inherited_environment(ctx: RunContext) -> None:
    code = "import os; print('value=' + os.environ['OPSAGENT_TEST']); print('has_path=%d' % ('PATH' in os.environ))"
    result = await run(python(code, env={"OPSAGENT_TEST": "hello"}), ctx)
    assert result.values == {"value": "hello", "has_path": 1, "exit_code": 0}


@pytest.mark.parametrize(
    ("cwd", "expected"),
    [
        pytest.param(None, ".", id="default-base-dir"),
        pytest.param("work", "work", id="relative-to-base-dir"),
    ],
)
async def test_working_directory(ctx: RunContext, cwd: str | None, expected: str) -> None:
    (ctx.base_dir / "work").mkdir()
    result = await run(python("import os; print('cwd=' + os.getcwd())", cwd=cwd), ctx)
    assert result.values["cwd"] == str((ctx.base_dir / expected).resolve())


async def test_a_missing_working_directory(ctx: RunContext) -> None:
    result = await run(python("pass", cwd="nowhere"), ctx)
    assert result.error == f"working directory not found: {ctx.base_dir / 'nowhere'}"


async def test_large_output_is_drained_and_cut(ctx: RunContext) -> None:
    # 1 MB on each pipe would block a child whose reader stopped at the limit.
    code = "import sys; sys.stdout.write('n=1\\n' * 250_000); sys.stderr.write('e' * 1_000_000)"
    result = await run(python(code, max_output_bytes=1002, timeout="10s"), ctx)
    assert result.error is None
    assert result.values == {"n": 1, "exit_code": 0}  # the cut line "n=" was dropped
    assert "stdout cut at 1002 bytes" in result.detail


# --- timeouts and cancellation kill the whole process group ----------------------------

# The child starts a grandchild that ignores SIGTERM, writes both pids, and sleeps.
FAMILY = """
import os, signal, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {grandchild.pid}")
time.sleep(60)
"""


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting for its new parent (a container's init may never reap it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def all_dead(pids: list[int]) -> bool:
    """True once every pid is dead; SIGKILL is delivered asynchronously, so allow 2 s."""
    for _ in range(100):
        if all(dead(pid) for pid in pids):
            return True
        await asyncio.sleep(0.02)
    return False


async def pids_from(path: Path) -> list[int]:
    """The pids the child wrote, once it has written them (polled: it runs concurrently)."""
    for _ in range(200):
        text = await asyncio.to_thread(lambda: path.read_text() if path.exists() else "")
        if text:
            return [int(pid) for pid in text.split()]
        await asyncio.sleep(0.02)
    raise AssertionError("the child never wrote its pids")


async def test_timeout_kills_the_whole_process_group(ctx: RunContext, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    result = await run(python(FAMILY, str(pidfile), timeout="1500ms"), ctx)
    elapsed = time.monotonic() - started
    assert result.error == "timed out after 1s500ms (process group killed)"
    assert elapsed < 1.5 + 1.0 + 1.0  # timeout + SIGTERM grace + slack
    pids = await pids_from(pidfile)
    assert len(pids) == 2
    assert await all_dead(pids)


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace(ctx: RunContext) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    started = time.monotonic()
    result = await run(python(code, timeout="300ms"), ctx)
    assert result.error == "timed out after 300ms (process group killed)"
    assert 1.2 <= time.monotonic() - started < 3


async def test_cancellation_kills_the_whole_process_group(ctx: RunContext, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    task = asyncio.create_task(run(python(FAMILY, str(pidfile), timeout="30s"), ctx))
    pids = await pids_from(pidfile)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await all_dead(pids)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"argv": []}, "at least 1 item", id="empty-argv"),
        pytest.param({"argv": [""]}, "must not be empty", id="empty-program"),
        pytest.param({"argv": "echo hi"}, "valid list", id="shell-string"),
        pytest.param(
            {"argv": ["true"], "ok_exit_codes": []}, "at least 1 item", id="no-ok-exit-codes"
        ),
        pytest.param({"argv": ["true"], "shell": True}, "shell", id="unknown-key"),
    ],
)
def test_rejects_bad_specs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CommandSpec.model_validate({"name": "cmd", "kind": "command", **fields})
