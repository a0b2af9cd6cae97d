"""The action kinds on real things: processes, a local HTTP server, an entry point."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web

from agent.errors import RemediationRefused
from agent.probe_spec import RunContext
from remediations import command, http, python, restart
from remediations._base import ActionResult, Target

TARGET = Target("probe-a", evidence=[{"id": 1}])


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RunContext]:
    context = RunContext(base_dir=tmp_path)
    yield context
    await context.aclose()


def spec_of(module: Any, **fields: Any) -> Any:
    return module.SPEC.model_validate(
        {"name": "fix", "kind": module.__name__.rsplit(".", 1)[-1], **fields}
    )


async def test_command_runs_argv_and_masks_env_secrets(ctx: RunContext) -> None:
    spec = spec_of(
        command,
        argv=[sys.executable, "-c", "import os; print('token', os.environ['TOK'])"],
        env={"TOK": "s3cret-value"},
    )
    plan = await command.plan(spec, TARGET, ctx)
    assert plan.detail["env"] == ["TOK"] and "s3cret-value" not in repr(plan)
    result = await command.run(spec, plan, ctx)
    assert result.ok and result.output.strip() == "token ***"


async def test_command_shell_only_when_asked(ctx: RunContext) -> None:
    spec = spec_of(command, argv=["echo a | tr a b"], shell=True)
    result = await command.run(spec, await command.plan(spec, TARGET, ctx), ctx)
    assert result.ok and result.output.strip() == "b"
    with pytest.raises(ValueError, match="one command line string"):
        spec_of(command, argv=["echo", "a"], shell=True)


async def test_command_timeout_kills_the_process_group(ctx: RunContext, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    spec = spec_of(command, argv=[script], shell=True, timeout="500ms")
    result = await command.run(spec, await command.plan(spec, TARGET, ctx), ctx)
    assert not result.ok and "process group killed" in result.detail
    child = int(pidfile.read_text())
    await asyncio.sleep(0.2)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


async def test_command_output_is_truncated_and_failures_reported(ctx: RunContext) -> None:
    spec = spec_of(
        command,
        argv=[sys.executable, "-c", "print('x' * 5000); raise SystemExit(3)"],
        max_output_bytes=100,
    )
    result = await command.run(spec, await command.plan(spec, TARGET, ctx), ctx)
    assert not result.ok and result.error == "exit code 3"
    assert result.output.startswith("x" * 100) and "cut at 100 bytes" in result.output


@pytest.fixture
async def admin_api() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def requeue(request: web.Request) -> web.Response:
        got.append({"auth": request.headers.get("Authorization"), "body": await request.json()})
        return web.json_response({"requeued": 2}, status=202)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application()
    app.router.add_post("/requeue", requeue)
    app.router.add_post("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", got
    await runner.cleanup()


async def test_http_sends_the_request_and_checks_the_status(
    ctx: RunContext, admin_api: tuple[str, list[dict[str, Any]]]
) -> None:
    base, got = admin_api
    spec = spec_of(
        http,
        url=f"{base}/requeue",
        headers={"Authorization": "Bearer tok-123456"},
        json={"reason": "opsagent"},
    )
    plan = await http.plan(spec, TARGET, ctx)
    assert plan.detail["headers"] == ["Authorization"] and "tok-123456" not in repr(plan)
    result = await http.run(spec, plan, ctx)
    assert result.ok and result.detail == "status 202" and '"requeued": 2' in result.output
    assert got == [{"auth": "Bearer tok-123456", "body": {"reason": "opsagent"}}]
    bad = spec_of(http, url=f"{base}/broken")
    failed = await http.run(bad, await http.plan(bad, TARGET, ctx), ctx)
    assert not failed.ok and failed.output == "boom"


async def test_http_down_target_is_a_failed_result(ctx: RunContext) -> None:
    spec = spec_of(http, url="http://127.0.0.1:9/x", timeout="2s")
    result = await http.run(spec, await http.plan(spec, TARGET, ctx), ctx)
    assert not result.ok and result.error


async def test_restart_a_systemd_unit_through_systemctl(ctx: RunContext, tmp_path: Path) -> None:
    log = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    spec = spec_of(restart, systemd_unit="shop-api.service", systemctl=[str(fake)])
    plan = await restart.plan(spec, TARGET, ctx)
    assert plan.detail["argv"] == [str(fake), "restart", "shop-api.service"]
    assert (await restart.run(spec, plan, ctx)).ok
    assert log.read_text() == "restart shop-api.service\n"


async def test_restart_a_process_signals_it_and_starts_it_again(
    ctx: RunContext, tmp_path: Path
) -> None:
    marker = f"opsagent-restart-{os.getpid()}-{id(tmp_path)}"
    argv = [sys.executable, "-c", "import time, sys; time.sleep(60)", marker]
    old = await asyncio.create_subprocess_exec(*argv, start_new_session=True)
    spec = spec_of(restart, process=marker, start=argv, timeout="5s")
    try:
        plan = await restart.plan(spec, TARGET, ctx)
        assert [p["pid"] for p in plan.detail["processes"]] == [old.pid]
        result = await restart.run(spec, plan, ctx)
        assert result.ok, result.detail
        await asyncio.wait_for(old.wait(), 5)
        again = await restart.plan(spec, TARGET, ctx)
        assert (
            len(again.detail["processes"]) == 1 and again.detail["processes"][0]["pid"] != old.pid
        )
    finally:
        for proc in psutil.process_iter(["cmdline"]):
            if marker in " ".join(proc.info.get("cmdline") or []):
                proc.kill()


def entry_ok(ctx: python.PythonContext) -> str:
    return f"batch={ctx.args['batch']} target={ctx.target.key}"


async def entry_async_fails(ctx: python.PythonContext) -> ActionResult:
    return ActionResult(False, "no luck", error="no luck")


def entry_raises(ctx: python.PythonContext) -> None:
    raise RuntimeError("index locked")


async def test_python_entry_points(ctx: RunContext) -> None:
    here = __name__
    ok = spec_of(python, entry=f"{here}:entry_ok", args={"batch": 5})
    result = await python.run(ok, await python.plan(ok, TARGET, ctx), ctx)
    assert result.ok and result.output == "batch=5 target=probe-a"
    failing = spec_of(python, entry=f"{here}:entry_async_fails")
    assert (
        await python.run(failing, await python.plan(failing, TARGET, ctx), ctx)
    ).error == "no luck"
    raising = spec_of(python, entry=f"{here}:entry_raises")
    result = await python.run(raising, await python.plan(raising, TARGET, ctx), ctx)
    assert result.error == "RuntimeError: index locked"
    with pytest.raises(RemediationRefused, match="not found"):
        await python.plan(spec_of(python, entry=f"{here}:nope"), TARGET, ctx)
    with pytest.raises(ValueError, match="invalid entry"):
        spec_of(python, entry="no_colon")
