"""The host probe reading this machine through psutil."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import ValidationError

from agent.probe_spec import RunContext
from probes.host import HostSpec, run


def spec(**fields: Any) -> HostSpec:
    return HostSpec.model_validate({"name": "box", "kind": "host", **fields})


def assert_sane(values: dict[str, Any]) -> None:
    for percent in (
        values["cpu"]["percent"],
        values["memory"]["percent"],
        values["swap"]["percent"],
        *values["disk"]["percent"].values(),
    ):
        assert 0 <= percent <= 100
    assert values["memory"]["available_mb"] > 0
    assert all(values["load"][key] >= 0 for key in ("avg1", "avg5", "avg15"))
    assert all(free >= 0 for free in values["disk"]["free_gb"].values())


async def test_values_are_sane_on_every_run(ctx: RunContext) -> None:
    for _ in range(2):  # the first run primes the CPU baseline, the second uses it
        result = await run(spec(), ctx)
        assert result.error is None
        assert_sane(result.values)
        assert "/" in result.values["disk"]["percent"]
        assert result.detail.startswith("cpu ")


async def test_first_run_measures_cpu_over_a_short_interval(ctx: RunContext) -> None:
    # A thread spinning through the whole first run keeps one core busy, so a reading
    # taken over a real interval cannot be 0 (a first psutil.cpu_percent() call would be).
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        await asyncio.sleep(0.02)
        result = await run(spec(), ctx)
    finally:
        stop.set()
        spinner.join()
    assert result.values["cpu"]["percent"] > 0
    assert "box" in ctx.state  # the baseline for the next run


async def test_reports_only_the_mounts_asked_for(ctx: RunContext) -> None:
    result = await run(spec(mounts=["/"]), ctx)
    assert set(result.values["disk"]["percent"]) == {"/"}
    assert set(result.values["disk"]["free_gb"]) == {"/"}


async def test_a_missing_mount_is_an_error_but_the_rest_is_reported(ctx: RunContext) -> None:
    result = await run(spec(mounts=["/", "/opsagent-no-such-mount"]), ctx)
    assert result.error is not None
    assert result.error.startswith("disk usage of /opsagent-no-such-mount unreadable")
    assert set(result.values["disk"]["percent"]) == {"/"}
    assert_sane(result.values)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"mounts": "/"}, id="mounts-not-a-list"),
        pytest.param({"disks": ["/"]}, id="unknown-key"),
    ],
)
def test_rejects_bad_specs(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(**fields)
