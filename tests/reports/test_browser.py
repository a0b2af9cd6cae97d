"""The HTML report in a real headless Chromium at email width (600 px).

Driven over the DevTools protocol (aiohttp's websocket client, no extra package):
the page loads with no console error or exception, nothing overflows horizontally
(`scrollWidth <= 600`), and a screenshot is taken (kept under pytest's tmp dir).
Skips when `chromium` is not installed; fails instead under OPSAGENT_REQUIRE_SERVICES=1
(`.ci/run` installs it from the distribution's packages).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reports.data import ReportData
from reports.render import render_html
from tests.services import REQUIRED

WIDTH = 600


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
        if REQUIRED:
            pytest.fail(f"{reason} and OPSAGENT_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(reason)
    return path


class DevTools:
    """The smallest DevTools client: send a command, await its answer, keep events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == call_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    async def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(await self.ws.receive_json(timeout=30))


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    profile = tmp_path / "profile"
    process = await asyncio.create_subprocess_exec(
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield DevTools(ws)
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_report_renders_at_email_width(
    browser: DevTools, report_data: ReportData, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(report_data, title="daily", agent_name="shop-prod"), "utf-8")
    for domain in ("Page", "Runtime", "Log"):
        await browser.call(f"{domain}.enable")
    await browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=WIDTH,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    await browser.call("Page.navigate", url=page.as_uri())
    await browser.wait_for("Page.loadEventFired")
    answer = await browser.call(
        "Runtime.evaluate",
        expression="JSON.stringify([document.documentElement.scrollWidth,"
        " document.querySelectorAll('svg').length, document.title])",
        returnByValue=True,
    )
    scroll_width, svgs, title = json.loads(answer["result"]["value"])
    shot = await browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    png = base64.b64decode(shot["data"])
    (tmp_path / "report.png").write_bytes(png)

    errors = [
        e
        for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert errors == []
    assert scroll_width <= WIDTH
    assert svgs >= 2 * len(report_data.probes)
    assert title.startswith("shop-prod daily")
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
