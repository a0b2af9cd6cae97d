"""`POST /v1/reports/{name}` and `GET /v1/reports`, and the CLI's `report`/`reports` through them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.api.test_cli_api import cli
from tests.running_agent import StartAgent, Target, agent_yaml

REPORTS = """
reports:
  - {name: daily, cron: "0 7 * * *", period: 24h, sections: [availability]}
  - {name: weekly, every: 7d, period: 7d}
"""


async def test_generate_and_list(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(agent_yaml(target.base) + REPORTS)
    client = running.client

    made = await client.post("/v1/reports/daily", json={"period": "2026-11-01..2026-11-02"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["name"] == "daily" and body["trigger"] == "api"
    assert body["period_start"].startswith("2026-11-01T00:00:00")
    assert body["period_end"].startswith("2026-11-02T00:00:00")
    assert body["send_state"] == "not sent" and body["deliveries"] == []
    html = Path(body["html_path"])
    assert html.parent == running.data_dir / "reports" and html.suffix == ".html"
    page = await asyncio.to_thread(html.read_text, "utf-8")
    assert page.startswith("<!DOCTYPE html>") and "AVAILABILITY" in page.upper()

    default = await client.post("/v1/reports/weekly")  # no body: its own period, ending now
    assert default.status_code == 201, default.text
    assert default.json()["id"] == body["id"] + 1

    listed = await client.get("/v1/reports")
    assert listed.status_code == 200
    answer = listed.json()
    assert [r["name"] for r in answer["reports"]] == ["weekly", "daily"]
    configured = {c["name"]: c for c in answer["configured"]}
    assert configured["daily"]["schedule"] == "cron 0 7 * * *"
    assert configured["daily"]["next_run"] is not None
    assert configured["weekly"]["period_s"] == 7 * 86400

    only = await client.get("/v1/reports", params={"name": "daily"})
    assert [r["id"] for r in only.json()["reports"]] == [body["id"]]


async def test_bad_requests_name_the_field(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(agent_yaml(target.base) + REPORTS)
    client = running.client

    unknown = await client.post("/v1/reports/monthly")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": "no report named 'monthly' (reports: daily, weekly)",
        "field": "name",
        "problems": [],
    }
    backwards = await client.post("/v1/reports/daily", json={"period": "2026-11-02..2026-11-01"})
    assert backwards.status_code == 422 and backwards.json()["field"] == "period"
    assert "ends before it starts" in backwards.json()["error"]
    garbage = await client.post("/v1/reports/daily", json={"period": "yesterday"})
    assert garbage.status_code == 422 and garbage.json()["field"] == "period"
    no_targets = await client.post("/v1/reports/daily", json={"send": True})
    assert no_targets.status_code == 422 and no_targets.json()["field"] == "send"
    assert (await client.get("/v1/reports")).json()["reports"] == []  # nothing was generated


async def test_openapi_lists_the_report_endpoints(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(agent_yaml(target.base))
    document = (await running.client.get("/openapi.json")).json()
    assert set(document["paths"]["/v1/reports"]) == {"get"}
    post = document["paths"]["/v1/reports/{name}"]["post"]
    assert "201" in post["responses"] and "404" in post["responses"]


async def test_cli_report_and_reports_through_the_agent(
    start_agent: StartAgent, target: Target, tmp_path: Path
) -> None:
    running = await start_agent(agent_yaml(target.base) + REPORTS)
    config = str(running.config_path)
    out = tmp_path / "daily.txt"

    made = await cli("report", "-c", config, "--period", "24h", "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("report daily #1, ")  # the first configured report
    assert "AVAILABILITY" in await asyncio.to_thread(out.read_text, "utf-8")

    listed = await cli("reports", "-c", config, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["trigger"] for r in json.loads(listed.stdout)["reports"]] == ["api"]
    table = await cli("reports", "-c", config)
    assert "#1" in table.stdout and "cron 0 7 * * *" in table.stdout

    unknown = await cli("report", "-c", config, "--name", "monthly")
    assert unknown.returncode == 2
    assert "no report named 'monthly' (reports: daily, weekly)" in unknown.stderr
