"""Incidents and silences through the control API: a real agent, a real HTTP target.

`shop-api` opens an incident after 2 failures; `shop-batch` has `for: 1h`, so while it
fails its incident stays pending (nobody told), which is what acknowledging refuses.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.running_agent import RunningAgent, StartAgent, Target, agent_yaml, wait_until


def incident_yaml(base: str) -> str:
    """Two failing-on-demand probes, a console notifier (to stderr), quick thresholds."""
    probes = f"""
  - {{name: shop-api, kind: http, url: "{base}/ok", every: 100ms, expect: [status == 200],
     severity: critical, labels: {{team: shop}}}}
  - {{name: shop-batch, kind: http, url: "{base}/ok", every: 100ms, expect: [status == 200],
     severity: warning, for: 1h}}
"""
    return agent_yaml(base, probes=probes) + (
        "notify: [{name: console, kind: console, stream: stderr}]\n"
        "incidents: {notify: [console], failures: 2, successes: 2, tick_every: 200ms}\n"
    )


async def incidents(running: RunningAgent, **params: Any) -> list[dict[str, Any]]:
    answer = await running.client.get("/v1/incidents", params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["incidents"]
    return found


async def open_incident(running: RunningAgent, probe: str = "shop-api") -> dict[str, Any]:
    """Wait for `probe`'s incident to be open (and its opened notice sent); return it."""
    found: dict[str, Any] = {}

    async def opened() -> bool:
        rows = [i for i in await incidents(running) if i["probe"] == probe]
        if not rows:
            return False
        detail = (await running.client.get(f"/v1/incidents/{rows[0]['id']}")).json()
        found.update(rows[0])
        return any(n["state"] == "sent" for n in detail["notifications"])

    await wait_until(opened)
    return found


def error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text)
    body: dict[str, Any] = answer.json()
    return body


async def test_an_outage_is_listed_detailed_counted_and_measured(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(incident_yaml(target.base))
    await wait_until(lambda: _runs(running, 4))
    assert await incidents(running) == []
    status = (await running.client.get("/v1/status")).json()
    assert status["incidents"] == {
        "pending": 0,
        "open": 0,
        "acknowledged": 0,
        "by_severity": {"critical": 0, "high": 0, "warning": 0, "info": 0},
        "suppressed": 0,
        "silences": 0,
    }
    assert status["notifications"] == {"pending": 0, "dead": 0, "sent": 0}

    target.healthy = False
    incident = await open_incident(running)
    assert incident["state"] == "open" and incident["severity"] == "critical"
    assert incident["title"] == "shop-api failing"
    assert incident["summary"] == "status == 200 failed: status is 503"
    assert incident["labels"] == {"team": "shop"} and incident["suppressed_by"] is None
    assert incident["values"]["status"] == 503

    detail = (await running.client.get(f"/v1/incidents/{incident['id']}")).json()
    assert detail["incident"]["id"] == incident["id"]
    assert [e["event"] for e in detail["events"]] == ["pending", "opened"]
    assert detail["events"][1]["to_state"] == "open" and detail["events"][1]["actor"] == "opsagent"
    (notice,) = detail["notifications"]
    assert (notice["event"], notice["target"], notice["state"]) == ("opened", "console", "sent")
    assert notice["attempts"] == 1 and notice["sent_at"] is not None

    status = (await running.client.get("/v1/status")).json()
    counts = status["incidents"]
    assert (counts["open"], counts["pending"]) == (1, 1)  # shop-batch waits for its hour
    assert counts["by_severity"]["critical"] == 1 and counts["by_severity"]["warning"] == 0
    assert status["notifications"]["sent"] == 1 and status["notifications"]["dead"] == 0

    text = (await running.client.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    open_by = {s.labels["severity"]: s.value for s in families["opsagent_incidents_open"].samples}
    assert open_by == {"critical": 1.0, "high": 0.0, "warning": 0.0, "info": 0.0}
    assert families["opsagent_notifications_pending"].type == "gauge"
    assert families["opsagent_notifications_dead"].type == "counter"
    sent = families["opsagent_notifications_sent"].samples[0]
    assert (sent.name, sent.value) == ("opsagent_notifications_sent_total", 1.0)

    # Pending incidents are not listed by default; `all` adds resolved ones, `limit` cuts.
    assert [i["probe"] for i in await incidents(running)] == ["shop-api"]
    assert len(await incidents(running, all="true", limit=1)) == 1
    assert error(await running.client.get("/v1/incidents?all=yes"), 422)["field"] == "all"
    assert error(await running.client.get("/v1/incidents?limit=0"), 422)["field"] == "limit"
    missing = error(await running.client.get("/v1/incidents/999999"), 404)
    assert missing == {"error": "no incident #999999", "field": "id", "problems": []}
    assert error(await running.client.get("/v1/incidents/abc"), 422)["field"] == "id"
    assert error(await running.client.get("/v1/incidents/0"), 422)["field"] == "id"


async def test_acknowledge_and_resolve(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(incident_yaml(target.base))
    target.healthy = False
    incident = await open_incident(running)
    path = f"/v1/incidents/{incident['id']}"

    bad = error(await running.client.post(f"{path}/ack", json={"expires_in": "soon"}), 422)
    assert bad["field"] == "expires_in" and "invalid duration 'soon'" in bad["error"]
    assert error(await running.client.post(f"{path}/ack", json={"who": "x"}), 422)["field"] == "who"
    assert (
        error(await running.client.post("/v1/incidents/77777/ack", json={}), 404)["field"] == "id"
    )

    acked = await running.client.post(
        f"{path}/ack", json={"actor": "alice", "comment": "on it", "expires_in": "1h"}
    )
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert (body["state"], body["acknowledged_by"], body["ack_comment"]) == (
        "acknowledged",
        "alice",
        "on it",
    )
    expires = datetime.fromisoformat(body["ack_expires_at"])
    acked_at = datetime.fromisoformat(body["acknowledged_at"])
    assert expires - acked_at == timedelta(hours=1)
    by_default = (await running.client.post(f"{path}/ack", json={})).json()
    assert by_default["acknowledged_by"] == "api" and by_default["ack_expires_at"] is None

    # The pending incident of shop-batch (for: 1h) cannot be acknowledged yet.
    assert "shop-batch" not in {i["probe"] for i in await incidents(running)}
    (pending,) = [i for i in await incidents(running, all="true") if i["probe"] == "shop-batch"]
    assert pending["state"] == "pending" and pending["opened_at"] is None
    batch_id = pending["id"]
    refused = error(await running.client.post(f"/v1/incidents/{batch_id}/ack", json={}), 409)
    assert "still pending" in refused["error"] and refused["field"] == "id"

    resolved = await running.client.post(
        f"{path}/resolve", json={"actor": "bob", "comment": "restarted by hand"}
    )
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["state"], resolved.json()["resolution"]) == ("resolved", "manual")
    again = error(await running.client.post(f"{path}/resolve", json={}), 409)
    assert again["error"] == (
        f"incident #{incident['id']} is already resolved (manual): only an open incident "
        "can be resolved"
    )
    late_ack = error(await running.client.post(f"{path}/ack", json={}), 409)
    assert "already resolved" in late_ack["error"]

    detail = (await running.client.get(path)).json()
    events = [(e["event"], e["actor"], e["reason"]) for e in detail["events"]]
    assert events[2:] == [
        ("acknowledged", "alice", "on it"),
        ("acknowledged", "api", ""),
        ("resolved", "bob", "manual"),
        ("comment", "bob", "restarted by hand"),
    ]
    assert [n["event"] for n in detail["notifications"]] == [
        "opened",
        "acknowledged",
        "acknowledged",
        "resolved",
    ]
    listed = {i["id"]: i for i in await incidents(running, all="true")}
    assert listed[incident["id"]]["state"] == "resolved"


async def test_silences(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(incident_yaml(target.base))
    target.healthy = False
    incident = await open_incident(running)

    for body, field, words in (
        ({"matcher": "shop-* nonsense", "duration": "2h", "reason": "x"}, "matcher", "key=value"),
        (
            {"matcher": "shop-* severity=urgent", "duration": "2h", "reason": "x"},
            "matcher",
            "severity",
        ),
        ({"matcher": "  ", "duration": "2h", "reason": "x"}, "matcher", "must name a probe"),
        ({"matcher": "shop-*", "duration": "soon", "reason": "x"}, "duration", "invalid duration"),
        ({"matcher": "shop-*", "duration": "0s", "reason": "x"}, "duration", "longer than 0s"),
        ({"matcher": "shop-*", "duration": "400d", "reason": "x"}, "duration", "at most 366d"),
        ({"matcher": "shop-*", "duration": "2h", "reason": " "}, "reason", "must say why"),
        ({"matcher": "shop-*", "duration": "2h"}, "reason", "Field required"),
        ({"matcher": "shop-*", "duration": 7200, "reason": "x"}, "duration", "string"),
    ):
        refused = error(await running.client.post("/v1/silences", json=body), 422)
        assert refused["field"] == field and words in refused["error"], (body, refused)

    created = await running.client.post(
        "/v1/silences",
        json={
            "matcher": "shop-* severity=critical",
            "duration": "2h",
            "reason": "deploying",
            "end_on_resolve": True,
        },
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["matcher"] == "shop-* severity=critical" and silence["created_by"] == "api"
    assert silence["active"] is True and silence["ended_at"] is None
    starts, ends = (datetime.fromisoformat(silence[k]) for k in ("starts_at", "ends_at"))
    assert ends - starts == timedelta(hours=2)
    (listed,) = (await running.client.get("/v1/silences")).json()["silences"]
    assert listed["id"] == silence["id"]
    (shown,) = await incidents(running)
    assert shown["suppressed_by"] == f"silence #{silence['id']} (deploying)"
    assert (await running.client.get("/v1/status")).json()["incidents"]["suppressed"] == 1
    detail = (await running.client.get(f"/v1/incidents/{incident['id']}")).json()
    assert detail["events"][-1]["event"] == "silenced"

    # It ends when the incident it covers resolves.
    resolved = await running.client.post(f"/v1/incidents/{incident['id']}/resolve", json={})
    assert resolved.status_code == 200
    assert (await running.client.get("/v1/silences")).json()["silences"] == []
    (ended,) = (await running.client.get("/v1/silences?all=true")).json()["silences"]
    assert ended["active"] is False and ended["ended_at"] is not None
    over = error(await running.client.delete(f"/v1/silences/{silence['id']}"), 409)
    assert over["error"].startswith(f"silence #{silence['id']} already ended at ")

    other = (
        await running.client.post(
            "/v1/silences",
            json={"matcher": "*", "duration": "30m", "reason": "night", "created_by": "carol"},
        )
    ).json()
    deleted = await running.client.delete(f"/v1/silences/{other['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["active"] is False and deleted.json()["created_by"] == "carol"
    assert error(await running.client.delete(f"/v1/silences/{other['id']}"), 409)["field"] == "id"
    assert (
        error(await running.client.delete("/v1/silences/4242"), 404)["error"] == "no silence #4242"
    )
    assert error(await running.client.delete("/v1/silences/x"), 422)["field"] == "id"


async def _runs(running: RunningAgent, at_least: int) -> bool:
    return running.agent.running_store().stats().rows_written >= at_least
