"""schemathesis against `/openapi.json` of a real agent: no 500, no response off its schema.

Runs the `st` command (every check, 25 examples per operation, fixed seed; settings in
schemathesis.toml next to this file) as part of `make test`.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from agent.api.routes import ROUTES
from tests.running_agent import StartAgent, Target, agent_yaml

SETTINGS = Path(__file__).with_name("schemathesis.toml")


def st_command() -> str:
    beside = Path(sys.executable).with_name("st")
    found = str(beside) if beside.exists() else shutil.which("st")
    if found is None:
        pytest.fail("schemathesis (`st`) is not installed: pip install -e '.[dev]'")
    return found


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    start_agent: StartAgent, target: Target, tmp_path: Path
) -> None:
    running = await start_agent(agent_yaml(target.base))
    proc = await asyncio.create_subprocess_exec(
        st_command(),
        "--no-color",
        "--config-file",
        str(SETTINGS),
        "run",
        f"{running.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {running.token}",
        "--checks",
        "all",
        "--report-dir",
        str(tmp_path / "report"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 240)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Tested: 9" in text or "Tested:" in text
    assert "failed" not in text.split("SUMMARY")[-1].lower(), text


async def test_document_lists_every_route_with_its_models(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(agent_yaml(target.base))
    document = (await running.client.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert operations == {(r.method, r.path) for r in ROUTES}
    query = document["paths"]["/v1/query"]["post"]
    assert query["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/QueryRequest"
    }
    assert set(query["responses"]) == {"200", "400", "401", "422", "503"}
    history = document["paths"]["/v1/probes/{name}/history"]["get"]
    assert [p["name"] for p in history["parameters"]] == ["name", "limit"]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    schemas = document["components"]["schemas"]
    assert schemas["QueryRequest"]["additionalProperties"] is False
    assert {"ErrorBody", "StatusResponse", "ProbeResult"} <= set(schemas)
