"""`/metrics`: Prometheus text that prometheus-client's own parser reads, conventional names."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import Histogram
from tests.running_agent import StartAgent, Target, agent_yaml, wait_until

PER_PROBE = {
    "opsagent_probe_up": "gauge",
    "opsagent_probe_latency_seconds": "gauge",
    "opsagent_probe_last_success_timestamp_seconds": "gauge",
    "opsagent_probe_runs": "counter",
    "opsagent_probe_missed_runs": "counter",
    "opsagent_probe_overlapping_runs": "counter",
}
STORE = {
    "opsagent_store_write_seconds": "gauge",
    "opsagent_store_batch_size": "gauge",
    "opsagent_store_rows_written": "counter",
    "opsagent_store_queue_depth": "gauge",
    "opsagent_store_writer_up": "gauge",
}


async def test_metrics_parse_with_conventional_names(
    start_agent: StartAgent, target: Target
) -> None:
    running = await start_agent(agent_yaml(target.base))

    async def stored() -> bool:
        return running.agent.running_store().stats().rows_written >= 6

    await wait_until(stored)
    answer = await running.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}

    for name, kind in {**PER_PROBE, **STORE}.items():
        assert families[name].type == kind, name
    for family in families.values():
        assert family.name.startswith(("opsagent_", "process_"))
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        assert not family.name.endswith(("_ms", "_milliseconds"))  # base units only

    def sample(name: str, probe: str) -> float:
        family = families[name.removesuffix("_total")]
        (value,) = [
            s.value for s in family.samples if s.labels.get("probe") == probe and s.name == name
        ]
        return value

    assert sample("opsagent_probe_up", "web") == 1.0
    assert sample("opsagent_probe_up", "web-strict") == 0.0
    assert 0 < sample("opsagent_probe_latency_seconds", "web") < 5
    assert sample("opsagent_probe_runs_total", "web") >= 3
    assert sample("opsagent_probe_missed_runs_total", "web") == 0
    assert sample("opsagent_probe_last_success_timestamp_seconds", "web") > 1.7e9
    assert families["opsagent_store_rows_written"].samples[0].value >= 6

    lag = families["opsagent_scheduler_lag_seconds"]
    assert lag.type == "histogram"
    buckets = [s for s in lag.samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 6
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)  # cumulative

    async with httpx.AsyncClient(base_url=running.url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401


async def test_metrics_public_opens_metrics_only(start_agent: StartAgent, target: Target) -> None:
    running = await start_agent(
        agent_yaml(target.base, api='{listen: "127.0.0.1:0", metrics_public: true}')
    )
    async with httpx.AsyncClient(base_url=running.url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 200
        assert (await anonymous.get("/v1/status")).status_code == 401
        document = (await anonymous.get("/openapi.json")).status_code
        assert document == 401
    spec = (await running.client.get("/openapi.json")).json()
    assert spec["paths"]["/metrics"]["get"]["security"] == []
    assert "security" not in spec["paths"]["/v1/status"]["get"]


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram([0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.buckets() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert histogram.total == 3.65
