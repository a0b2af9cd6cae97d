"""The process probe against real child processes."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from agent.probe_spec import RunContext
from probes.process import ProcessSpec, run

Spawn = Callable[..., subprocess.Popen[bytes]]


def spec(**fields: Any) -> ProcessSpec:
    return ProcessSpec.model_validate({"name": "procs", "kind": "process", **fields})


@pytest.fixture
def marker() -> str:
    """A token no other process on the machine has in its command line."""
    return f"opsagent-test-{uuid.uuid4().hex}"


@pytest.fixture
def spawn(marker: str) -> Iterator[Spawn]:
    """Start Python children carrying `marker` as an argument; all are killed after."""
    children: list[subprocess.Popen[bytes]] = []

    def start(code: str = "import time; time.sleep(30)") -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, "-c", code, marker])
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


async def test_counts_a_child_then_sees_it_gone(ctx: RunContext, spawn: Spawn, marker: str) -> None:
    child = spawn()
    probe = spec(cmdline=marker)
    result = await run(probe, ctx)
    assert result.error is None
    assert result.values["count"] == 1
    assert result.values["rss_mb"] > 1
    assert result.detail.startswith("1 process, ")

    child.kill()
    child.wait()
    result = await run(probe, ctx)
    assert result.values["count"] == 0
    assert result.error == f"no process matches cmdline ~ {marker!r}"


@pytest.mark.parametrize(
    ("fields", "count"),
    [
        pytest.param({"process_name": "python"}, 2, id="name-and-cmdline"),
        pytest.param({"process_name": "^no-such-name$"}, 0, id="name-excludes"),
        pytest.param({}, 2, id="cmdline-only"),
    ],
)
async def test_matches_name_and_cmdline_together(
    ctx: RunContext, spawn: Spawn, marker: str, fields: dict[str, Any], count: int
) -> None:
    spawn()
    spawn()
    result = await run(spec(cmdline=marker, min_count=0, **fields), ctx)
    assert result.values["count"] == count
    assert result.error is None


async def test_fewer_than_min_count_is_an_error(ctx: RunContext, spawn: Spawn, marker: str) -> None:
    spawn()
    result = await run(spec(cmdline=marker, min_count=3), ctx)
    assert result.values["count"] == 1
    assert result.error == "1 process matches, expected at least 3"


async def test_reports_no_match_for_both_criteria(ctx: RunContext, marker: str) -> None:
    result = await run(spec(process_name="^nothing$", cmdline=marker), ctx)
    assert result.error == f"no process matches name ~ '^nothing$' and cmdline ~ {marker!r}"


async def test_never_matches_the_agent_itself(ctx: RunContext) -> None:
    own_cmdline = " ".join(psutil.Process().cmdline())
    await run(spec(cmdline=re.escape(own_cmdline), min_count=0), ctx)
    assert os.getpid() not in ctx.state["procs"]


async def test_cpu_percent_is_measured_between_runs(
    ctx: RunContext, spawn: Spawn, marker: str
) -> None:
    spawn("while True: pass")
    probe = spec(cmdline=marker)
    first = await run(probe, ctx)
    assert first.values["cpu_percent"] == 0  # no previous sample yet
    await asyncio.sleep(0.3)
    second = await run(probe, ctx)
    assert second.values["cpu_percent"] > 20  # a busy loop uses about one core


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({}, "give process_name, cmdline or both", id="nothing-to-match"),
        pytest.param({"cmdline": "shop("}, "invalid regular expression", id="bad-regex"),
        pytest.param({"cmdline": "x", "min_count": -1}, "min_count", id="negative-min-count"),
        pytest.param({"pattern": "x"}, "pattern", id="unknown-key"),
    ],
)
def test_rejects_bad_specs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**fields)
