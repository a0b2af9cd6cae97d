"""Probe throughput: the real agent running 100 to 5,000 HTTP probes against a local server.

Run with `.venv/bin/python bench/probe_throughput.py` (`--quick` for a ~20 s smoke run,
`--help` for the rest). Everything stays on 127.0.0.1 and every loop is bounded.

Three kinds of process, so each number belongs to one of them:

- a small aiohttp.web server (this file with `--role server`) listening on several
  loopback ports, answering `{"status":"ok"}`; it counts connections and requests and
  times its own handler, and reports them (and its CPU) on a separate control port;
- one agent process per scenario (`--role agent`): the real `agent.daemon.Agent` built
  with `agent.config_loader.parse_config(text, base_dir=tmp, env={})`, its DuckDB store
  in a temp dir, logging set up as `opsagent run` does (to a file). After a warm-up it
  records, over a steady-state window, every `ProbeResult` it is told of through
  `Agent.subscribe`, its own CPU and RSS (psutil), the store's `rows_written`, and the
  dispatcher's missed/overlapping runs, then writes them as JSON;
- Debian's `prometheus-blackbox-exporter`, when installed, driven at the same targets
  by a bounded concurrent aiohttp loop in this (parent) process.

The parent prints a table and rewrites the `## Probe throughput` section of
BENCHMARKS.md (only that section; notes between the `probe-throughput-notes` markers
are kept). `--at-commit REV` measures a commit's code (exported with `git archive`)
rather than a working tree others may be editing; `--wait-quiet SECONDS` first waits for
other load on the machine to drop; each scenario's row shows the load it ran under.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import psutil
from aiohttp import web

if TYPE_CHECKING:
    from agent.results import ProbeResult

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
SECTION = "## Probe throughput"
NOTES_START = "<!-- probe-throughput-notes:start -->"
NOTES_END = "<!-- probe-throughput-notes:end -->"
BODY = b'{"status":"ok"}'
N_PORTS = 8
SERVER_MAX_LIFETIME_S = 1800.0  # the server exits on its own after this, whatever happens
SHUTDOWN_LIMIT_S = 120.0  # an agent that takes longer to stop is cut (and reported)
EXPECT = ["status == 200", 'json.status == "ok"', "latency_ms < 500"]
BLACKBOX_BINARIES = ("prometheus-blackbox-exporter", "blackbox_exporter")


# -- scenarios and their results ---------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One agent run: `probes` HTTP probes every `every`, measured over `window` seconds."""

    key: str
    probes: int
    every: str
    close: bool = False  # send `Connection: close`: a new TCP connection per run
    jitter: str | None = None  # None: the agent's default (10 % of every, at most 5s)
    warmup: float = 3.0
    window: float = 12.0

    @property
    def offered_per_s(self) -> float:
        """Runs per second the schedule asks for."""
        return self.probes / _seconds(self.every)


@dataclass
class AgentRun:
    """What one agent process measured over its steady-state window."""

    key: str
    probes: int
    config_load_s: float
    window_s: float
    results: int
    probes_per_s: float  # results of any status
    ok_per_s: float  # results that passed every expectation
    not_ok: int
    failures: dict[str, int]
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    cpu_pct: float  # of one core, the whole agent process
    loop_thread_cpu_pct: float  # the event loop's thread alone
    other_threads_cpu_pct: float  # the DuckDB writer and the rest
    threads_cpu_pct: dict[str, float]  # per thread, busiest first
    rss_mb: float  # at the end of the window
    rss_max_mb: float
    stored: int
    stored_per_s: float
    store_queue_end: int
    store_flush_p99_ms: float
    missed: int
    overlaps: int
    log_warnings: int
    server_requests: int
    server_connections: int
    server_handle_p50_us: float
    server_handle_p99_us: float
    server_cpu_pct: float
    machine_busy_pct: float  # every process on the machine, % of one core (nproc x 100 max)
    shutdown_s: float  # from stop.set() to Agent.run() returning; inf: cut after the limit
    steal_pct: float  # CPU the hypervisor gave to someone else while we wanted it
    profile_top: str = ""
    # RSS at the end split as /proc/PID/status does: private memory (heap, Python objects)
    # and mapped files (code pages of Python, DuckDB, ... shared and reclaimable).
    rss_anon_mb: float = math.nan
    rss_file_mb: float = math.nan
    gc_pct: float = math.nan  # time in the garbage collector, % of the window

    @property
    def others_pct(self) -> float:
        """CPU used by neither the agent nor the target server (other work on the machine)."""
        return max(0.0, self.machine_busy_pct - self.cpu_pct - self.server_cpu_pct)


@dataclass
class BlackboxRun:
    """blackbox_exporter driven at the same targets."""

    version: str
    concurrency: int
    window_s: float
    probes: int
    probes_per_s: float
    failed: int
    duration_p50_ms: float
    duration_p99_ms: float
    cpu_pct: float  # the exporter's process, % of one core
    driver_cpu_pct: float  # this bench's client loop
    server_connections: int
    server_cpu_pct: float
    machine_busy_pct: float


@dataclass
class Plan:
    """The scenarios of one bench run and which result answers which target."""

    scenarios: list[Scenario]
    blackbox_window: float
    blackbox_concurrency: int
    quick: bool = False


def full_plan() -> Plan:
    """The real run: ~4-5 minutes."""
    w, slow = 3.0, 20.0  # every 10s: two whole periods
    return Plan(
        scenarios=[
            Scenario("base-keep", 1, "200ms", warmup=2.0, window=4.0),
            Scenario("base-close", 1, "200ms", close=True, warmup=2.0, window=4.0),
            Scenario("s1-1000", 1000, "1s"),
            Scenario("s1-5000", 5000, "1s"),
            Scenario("s2-5000", 5000, "1s", close=True),
            Scenario("s2-500x1s", 500, "1s", close=True),
            Scenario("s3-5000x10s", 5000, "10s", warmup=w, window=slow),
            Scenario("s3-500x1s", 500, "1s"),
            Scenario("s3-5000x10s-j9s", 5000, "10s", jitter="9s", warmup=w, window=slow),
            Scenario("s4-100x10s", 100, "10s", warmup=w, window=slow),
            Scenario("s5-1000x10s", 1000, "10s", warmup=w, window=slow),
        ],
        blackbox_window=8.0,
        blackbox_concurrency=32,
    )


def quick_plan() -> Plan:
    """A smoke run: tiny sizes, ~20 s."""
    w, short = 1.0, 1.5
    return Plan(
        scenarios=[
            Scenario("base-keep", 1, "200ms", warmup=0.6, window=1.2),
            Scenario("s1-200", 200, "1s", warmup=w, window=short),
            Scenario("s2-200", 200, "1s", close=True, warmup=w, window=short),
            Scenario("s4-20x10s", 20, "10s", warmup=w, window=short),
        ],
        blackbox_window=1.5,
        blackbox_concurrency=8,
        quick=True,
    )


def _seconds(duration: str) -> float:
    from agent.durations import parse_duration

    return parse_duration(duration).total_seconds()


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


# -- the target server (its own process) ---------------------------------------------------


class ServerStats:
    """Connections, requests and handler times since the last reset."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.requests = 0
        self.connections = 0
        self.handle_ns: list[int] = []
        self.cpu0 = self._cpu()
        self.t0 = time.perf_counter()

    def _cpu(self) -> float:
        times = self.proc.cpu_times()
        return times.user + times.system

    def reset(self) -> None:
        """Start a new measuring window."""
        self.requests = 0
        self.connections = 0
        self.handle_ns = []
        self.cpu0 = self._cpu()
        self.t0 = time.perf_counter()

    def snapshot(self) -> dict[str, float]:
        """Counters and handler-time percentiles (µs) since the last reset."""
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        handle_us = [ns / 1000 for ns in self.handle_ns]
        return {
            "requests": self.requests,
            "connections": self.connections,
            "handle_p50_us": pct(handle_us, 50),
            "handle_p99_us": pct(handle_us, 99),
            "cpu_pct": (self._cpu() - self.cpu0) / elapsed * 100,
            "elapsed_s": elapsed,
        }


async def serve(ready_file: Path) -> None:
    """Serve the probe targets on N_PORTS loopback ports until SIGTERM (or the lifetime cap)."""
    loop = asyncio.get_running_loop()
    stats = ServerStats()
    cap = 1_000_000  # handler times kept per window: bounded memory

    async def target(request: web.BaseRequest) -> web.StreamResponse:
        t0 = time.perf_counter_ns()
        response = web.Response(body=BODY, content_type="application/json")
        stats.requests += 1
        if len(stats.handle_ns) < cap:
            stats.handle_ns.append(time.perf_counter_ns() - t0)
        return response

    async def control(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/reset":
            stats.reset()
            return web.json_response({"reset": True})
        return web.json_response(stats.snapshot())

    target_server = web.Server(target)
    control_server = web.Server(control)

    def counting() -> web.RequestHandler:
        stats.connections += 1
        return target_server()

    ports: list[int] = []
    listeners: list[asyncio.Server] = []
    for _ in range(N_PORTS):
        listener = await loop.create_server(counting, "127.0.0.1", 0, backlog=4096)
        listeners.append(listener)
        ports.append(listener.sockets[0].getsockname()[1])
    control_listener = await loop.create_server(control_server, "127.0.0.1", 0)
    listeners.append(control_listener)
    control_port = control_listener.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"ports": ports, "control": control_port, "pid": os.getpid()}))
    tmp.replace(ready_file)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), SERVER_MAX_LIFETIME_S)
    for listener in listeners:
        listener.close()
    await target_server.shutdown(1.0)
    await control_server.shutdown(1.0)


# -- the agent (its own process, one per scenario) -----------------------------------------


def config_text(sc: Scenario, ports: list[int]) -> str:
    """agent.yaml text for `sc`: distinct probes spread over the server's ports and paths."""
    expect = ", ".join(f"'{e}'" for e in EXPECT)
    lines = ["agent:", "  name: bench", "  data_dir: data", "  shutdown_grace: 2s", "probes:"]
    for i in range(sc.probes):
        lines += [
            f"  - name: p{i:05d}",
            "    kind: http",
            f"    url: http://127.0.0.1:{ports[i % len(ports)]}/p/{i}",
            f"    every: {sc.every}",
            f"    expect: [{expect}]",
        ]
        if sc.jitter is not None:
            lines.append(f"    jitter: {sc.jitter}")
        if sc.close:
            lines.append("    headers: {Connection: close}")
    return "\n".join(lines) + "\n"


class Recorder:
    """The `Agent.subscribe` listener: keeps what it needs of each result while recording."""

    def __init__(self) -> None:
        self.recording = False
        self.lags: list[float] = []
        self.latencies: list[float] = []
        self.not_ok = 0
        self.failures: Counter[str] = Counter()

    def __call__(self, result: ProbeResult) -> None:
        if not self.recording:
            return
        lag = result.lag_ms
        if lag is not None:
            self.lags.append(lag)
        if result.latency_ms is not None:
            self.latencies.append(result.latency_ms)
        if not result.ok:
            self.not_ok += 1
            reason = result.error or "; ".join(result.failed) or result.detail
            self.failures[reason[:80]] += 1


def _cpu_seconds(proc: psutil.Process) -> tuple[float, float, dict[int, float]]:
    """CPU seconds of the whole process, of the calling thread, and of each thread by id."""
    times = proc.cpu_times()
    me = threading.get_native_id()
    per_thread = {t.id: t.user_time + t.system_time for t in proc.threads()}
    return times.user + times.system, per_thread.get(me, 0.0), per_thread


def _machine_busy() -> tuple[float, float]:
    """CPU seconds used by every process on the machine, and stolen by the hypervisor."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy, getattr(t, "steal", 0.0)


def _thread_names() -> dict[int, str]:
    """Python threads by native id (DuckDB's own threads are not among them)."""
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def _threads_pct(
    before: dict[int, float], after: dict[int, float], names: dict[int, str], window: float
) -> dict[str, float]:
    """CPU % of each thread over the window, busiest first, named where Python knows them."""
    busy: dict[str, float] = {}
    for tid, seconds in after.items():
        name = "main (event loop)" if tid == threading.get_native_id() else names.get(tid, "native")
        label = f"{name} [{tid}]"
        busy[label] = (seconds - before.get(tid, 0.0)) / window * 100
    ranked = sorted(busy.items(), key=lambda kv: -kv[1])
    return {k: round(v, 1) for k, v in ranked if v >= 0.5}


def rss_split() -> tuple[float, float]:
    """(RssAnon, RssFile + RssShmem) of this process in MB, from /proc/self/status."""
    fields: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                fields[key] = float(value.split()[0]) / 1024
    anon = fields.get("RssAnon", math.nan)
    return anon, fields.get("RssFile", math.nan) + fields.get("RssShmem", 0.0)


class GcTimer:
    """Wall time spent in the garbage collector while `on` (a gc callback)."""

    def __init__(self) -> None:
        self.on = False
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.on:
            self.seconds += time.perf_counter() - self._started


def control(port: int, path: str) -> dict[str, float]:
    """Ask the target server's control port (blocking on purpose: ~1 ms on loopback).

    Blocking keeps the window's edges exact: an agent whose event loop is saturated
    would otherwise take seconds to get the answer through its own loop.
    """
    url = f"http://127.0.0.1:{port}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, float] = json.loads(response.read())
        return data


async def agent_child(sc: Scenario, server: dict[str, Any], profile: bool) -> AgentRun:
    """Run the real agent on `sc`; what it measured."""
    from agent.config_loader import parse_config
    from agent.daemon import Agent
    from agent.logs import setup_logging

    proc = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="opsagent-bench-") as tmp:
        base = Path(tmp)
        log_path = base / "agent.log"
        log_stream = log_path.open("w", encoding="utf-8")
        setup_logging("info", json_logs=False, stream=log_stream)
        t0 = time.perf_counter()
        config = parse_config(config_text(sc, server["ports"]), "bench.yaml", base_dir=base, env={})
        load_s = time.perf_counter() - t0
        agent = Agent(config, config_path=base / "bench.yaml")
        recorder = Recorder()
        agent.subscribe(recorder)
        stop = asyncio.Event()
        run_task = asyncio.create_task(agent.run(stop, install_signals=False))
        await asyncio.sleep(sc.warmup)
        if run_task.done():
            run_task.result()  # raises what stopped it
            raise RuntimeError("the agent stopped during warm-up")
        dispatcher, pipeline = agent.dispatcher, agent.pipeline
        assert dispatcher is not None and pipeline is not None
        profiler = cProfile.Profile() if profile else None
        gc_timer = GcTimer()
        # The measuring window.
        control(server["control"], "/reset")
        d0, s0 = dispatcher.stats(), pipeline.store.stats()
        cpu0, loop_cpu0, threads0 = _cpu_seconds(proc)
        busy0 = _machine_busy()
        w0 = time.perf_counter()
        recorder.recording = True
        gc_timer.on = True
        if profiler:
            profiler.enable()
        rss_max = 0
        deadline = w0 + sc.window
        while (left := deadline - time.perf_counter()) > 0:
            rss_max = max(rss_max, proc.memory_info().rss)
            await asyncio.sleep(min(0.25, left))
        recorder.recording = False
        gc_timer.on = False
        if profiler:
            profiler.disable()
        w1 = time.perf_counter()
        cpu1, loop_cpu1, threads1 = _cpu_seconds(proc)
        busy1 = _machine_busy()
        names = _thread_names()
        d1, s1 = dispatcher.stats(), pipeline.store.stats()
        rss = proc.memory_info().rss
        rss_anon, rss_file = rss_split()
        srv = control(server["control"], "/stats")
        stop.set()
        stopping = time.perf_counter()
        try:
            await asyncio.wait_for(run_task, SHUTDOWN_LIMIT_S)
            shutdown_s = time.perf_counter() - stopping
        except TimeoutError:
            shutdown_s = math.inf  # wait_for cancelled it
        log_stream.close()
        warnings = sum(" WARNING " in line for line in log_path.read_text().splitlines())

    window = w1 - w0
    top = ""
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        top = text.getvalue()
    return AgentRun(
        key=sc.key,
        probes=sc.probes,
        config_load_s=round(load_s, 2),
        window_s=round(window, 3),
        results=len(recorder.lags),
        probes_per_s=len(recorder.lags) / window,
        ok_per_s=(len(recorder.lags) - recorder.not_ok) / window,
        not_ok=recorder.not_ok,
        failures=dict(recorder.failures.most_common(5)),
        lag_p50_ms=pct(recorder.lags, 50),
        lag_p99_ms=pct(recorder.lags, 99),
        lag_max_ms=max(recorder.lags, default=math.nan),
        latency_p50_ms=pct(recorder.latencies, 50),
        latency_p99_ms=pct(recorder.latencies, 99),
        cpu_pct=(cpu1 - cpu0) / window * 100,
        loop_thread_cpu_pct=(loop_cpu1 - loop_cpu0) / window * 100,
        other_threads_cpu_pct=((cpu1 - cpu0) - (loop_cpu1 - loop_cpu0)) / window * 100,
        threads_cpu_pct=_threads_pct(threads0, threads1, names, window),
        rss_mb=rss / 2**20,
        rss_max_mb=max(rss, rss_max) / 2**20,
        stored=s1.rows_written - s0.rows_written,
        stored_per_s=(s1.rows_written - s0.rows_written) / window,
        store_queue_end=s1.queue_depth,
        store_flush_p99_ms=s1.flush_p99_ms,
        missed=d1.missed - d0.missed,
        overlaps=d1.overlaps - d0.overlaps,
        log_warnings=warnings,
        server_requests=int(srv["requests"]),
        server_connections=int(srv["connections"]),
        server_handle_p50_us=srv["handle_p50_us"],
        server_handle_p99_us=srv["handle_p99_us"],
        server_cpu_pct=srv["cpu_pct"],
        machine_busy_pct=(busy1[0] - busy0[0]) / window * 100,
        steal_pct=(busy1[1] - busy0[1]) / window * 100,
        shutdown_s=round(shutdown_s, 2),
        profile_top=top,
        rss_anon_mb=rss_anon,
        rss_file_mb=rss_file,
        gc_pct=gc_timer.seconds / window * 100,
    )


# -- blackbox_exporter -------------------------------------------------------------------


def find_blackbox() -> str | None:
    """The blackbox_exporter binary, if installed."""
    for name in BLACKBOX_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_DURATION = re.compile(r"^probe_duration_seconds (\S+)$", re.MULTILINE)


def run_blackbox(
    binary: str, server: dict[str, Any], targets: list[str], window: float, concurrency: int
) -> BlackboxRun:
    """Start blackbox_exporter on loopback, drive `/probe` for `window` seconds, stop it."""
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    version_line = (version.stdout or version.stderr).splitlines()[0:1]
    with tempfile.TemporaryDirectory(prefix="opsagent-bench-bb-") as tmp:
        cfg = Path(tmp) / "blackbox.yml"
        cfg.write_text(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n"
            "    http:\n      preferred_ip_protocol: ip4\n"
        )
        port = free_port()
        with (Path(tmp) / "blackbox.log").open("w") as log:
            exporter = subprocess.Popen(
                [binary, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                return asyncio.run(
                    _drive(exporter, port, version_line, server, targets, window, concurrency)
                )
            finally:
                exporter.terminate()
                try:
                    exporter.wait(10)
                except subprocess.TimeoutExpired:
                    exporter.kill()
                    exporter.wait(10)


async def _drive(
    exporter: subprocess.Popen[bytes],
    port: int,
    version_line: list[str],
    server: dict[str, Any],
    targets: list[str],
    window: float,
    concurrency: int,
) -> BlackboxRun:
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(100):  # up to 10 s for it to listen
            if exporter.poll() is not None:
                raise RuntimeError(f"blackbox_exporter exited with {exporter.returncode}")
            try:
                async with session.get(f"{base}/-/healthy") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("blackbox_exporter did not become healthy in 10 s")

        counter = iter(range(10**9))
        durations: list[float] = []
        failed = 0
        recording = False
        cap = int(20_000 * window) + 1000  # requests at most, whatever the speed

        async def worker(deadline: float) -> None:
            nonlocal failed
            while time.perf_counter() < deadline:
                i = next(counter)
                if i >= cap:
                    return
                params = {"target": targets[i % len(targets)], "module": "http_2xx"}
                try:
                    async with session.get(f"{base}/probe", params=params) as response:
                        text = await response.text()
                except (aiohttp.ClientError, TimeoutError):
                    if recording:
                        failed += 1
                    continue
                if not recording:
                    continue
                if response.status != 200 or "probe_success 1" not in text:
                    failed += 1
                match = _DURATION.search(text)
                if match:
                    durations.append(float(match.group(1)) * 1000)

        bb = psutil.Process(exporter.pid)
        me = psutil.Process()
        await asyncio.gather(*(worker(time.perf_counter() + 1.0) for _ in range(concurrency)))
        control(server["control"], "/reset")
        bb0, me0, busy0 = bb.cpu_times(), me.cpu_times(), _machine_busy()
        w0 = time.perf_counter()
        recording = True
        await asyncio.gather(*(worker(w0 + window) for _ in range(concurrency)))
        w1 = time.perf_counter()
        recording = False
        bb1, me1, busy1 = bb.cpu_times(), me.cpu_times(), _machine_busy()
        srv = control(server["control"], "/stats")
    elapsed = w1 - w0
    done = len(durations)
    return BlackboxRun(
        version=version_line[0] if version_line else "?",
        concurrency=concurrency,
        window_s=round(elapsed, 3),
        probes=done,
        probes_per_s=done / elapsed,
        failed=failed,
        duration_p50_ms=pct(durations, 50),
        duration_p99_ms=pct(durations, 99),
        cpu_pct=((bb1.user + bb1.system) - (bb0.user + bb0.system)) / elapsed * 100,
        driver_cpu_pct=((me1.user + me1.system) - (me0.user + me0.system)) / elapsed * 100,
        server_connections=int(srv["connections"]),
        server_cpu_pct=srv["cpu_pct"],
        machine_busy_pct=(busy1[0] - busy0[0]) / elapsed * 100,
    )


# -- the parent: orchestration, table, BENCHMARKS.md -----------------------------------------


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the target server process; returns it and its ports."""
    ready = tmp / "server.json"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "server", "--ready-file", str(ready)],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the target server did not start")
        time.sleep(0.05)
    info: dict[str, Any] = json.loads(ready.read_text())
    return proc, info


def run_scenario(
    sc: Scenario, server: dict[str, Any], tmp: Path, *, profile: bool, agent_root: Path | None
) -> AgentRun | str:
    """Run one agent process for `sc`; what it measured, or why it failed."""
    out = tmp / f"{sc.key}.json"
    argv = [
        sys.executable,
        __file__,
        "--role",
        "agent",
        "--scenario",
        json.dumps(asdict(sc)),
        "--server",
        json.dumps(server),
        "--out",
        str(out),
    ]
    if profile:
        argv += ["--profile", "1"]
    if agent_root is not None:
        argv += ["--agent-root", str(agent_root)]
    limit = sc.warmup + sc.window + SHUTDOWN_LIMIT_S + 120
    try:
        done = subprocess.run(argv, timeout=limit, capture_output=True, text=True, check=False)
    except subprocess.TimeoutExpired:
        return f"the agent process exceeded {limit:.0f} s and was killed"
    if done.returncode != 0 or not out.exists():
        print(f"  {sc.key}: agent process failed ({done.returncode}):", file=sys.stderr)
        print(done.stderr[-3000:], file=sys.stderr)
        errors = [
            line
            for line in done.stderr.splitlines()
            if re.match(r"^[\w.]+(Error|Exception)\b", line)
        ]
        last = errors[-1] if errors else f"exit code {done.returncode}"
        return f"the agent process failed: {last[:200]}"
    data = json.loads(out.read_text())
    known = {f.name for f in fields(AgentRun)}
    return AgentRun(**{k: v for k, v in data.items() if k in known})


@dataclass
class Verdict:
    """One target and whether the measured number meets it."""

    scenario: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


def verdicts(runs: dict[str, AgentRun]) -> list[Verdict]:
    """Check each target against the run that answers it."""
    out: list[Verdict] = []

    def add(key: str, target: str, metric: str, limit: float, *, at_least: bool, unit: str) -> None:
        run = runs.get(key)
        if run is None:
            out.append(Verdict(key, target, "not run", None))
            return
        value = float(getattr(run, metric))
        shown = f"{value:,.{1 if value < 100 else 0}f}{unit}"
        out.append(Verdict(key, target, shown, value >= limit if at_least else value < limit))

    add(
        "s1-5000",
        "1: >= 5,000 ok probes/s, reused connections",
        "ok_per_s",
        5000,
        at_least=True,
        unit=" /s",
    )
    add(
        "s2-5000",
        "2: >= 2,000 ok probes/s, new connection per run",
        "ok_per_s",
        2000,
        at_least=True,
        unit=" /s",
    )
    for key in ("s3-5000x10s", "s3-500x1s", "s3-5000x10s-j9s"):
        add(
            key, "3: 500/s sustained: lag p99 < 50 ms", "lag_p99_ms", 50, at_least=False, unit=" ms"
        )
        add(
            key,
            "3: 500/s sustained: CPU < 10 % of a core",
            "cpu_pct",
            10,
            at_least=False,
            unit=" %",
        )
    add("s4-100x10s", "4: 100 probes every 10s: CPU < 1 %", "cpu_pct", 1, at_least=False, unit=" %")
    add(
        "s5-1000x10s",
        "5: RSS with 1,000 probes < 100 MB",
        "rss_max_mb",
        100,
        at_least=False,
        unit=" MB",
    )
    return out


def _f(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def table(
    plan: Plan, runs: dict[str, AgentRun], failures: dict[str, str], base: AgentRun | None
) -> list[str]:
    """The results as markdown table rows."""
    rows = [
        "| scenario | probes x every | conn | offered /s | results /s (ok /s) | lag p50 / p99 ms "
        "| latency p50 / p99 ms | x idle p50 | agent CPU % (loop / other threads) | GC % | RSS MB (anon / files) "
        "| stored /s | missed / overlaps | server conns | server CPU % | other load / steal % |",
        "|---|---|---|---:|---|---|---|---:|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for sc in plan.scenarios:
        r = runs.get(sc.key)
        every = sc.every + (f" (jitter {sc.jitter})" if sc.jitter else "")
        conn = "new" if sc.close else "reused"
        if r is None:
            why = failures.get(sc.key, "not run").replace("|", "/")
            rows.append(f"| {sc.key} | {sc.probes:,} x {every} | {conn} | | {why} |")
            continue
        idle = (runs.get("base-close") if sc.close else None) or base
        ratio = r.latency_p50_ms / idle.latency_p50_ms if idle else math.nan
        rows.append(
            f"| {sc.key} | {sc.probes:,} x {every} | {conn} | {_f(sc.offered_per_s, 0)} "
            f"| {_f(r.probes_per_s, 0)} ({_f(r.ok_per_s, 0)}) "
            f"| {_f(r.lag_p50_ms)} / {_f(r.lag_p99_ms)} "
            f"| {_f(r.latency_p50_ms, 2)} / {_f(r.latency_p99_ms, 2)} | {_f(ratio)} "
            f"| {_f(r.cpu_pct)} ({_f(r.loop_thread_cpu_pct)} / {_f(r.other_threads_cpu_pct)}) "
            f"| {_f(r.gc_pct)} | {_f(r.rss_max_mb, 0)} ({_f(r.rss_anon_mb, 0)} / {_f(r.rss_file_mb, 0)}) "
            f"| {_f(r.stored_per_s, 0)} "
            f"| {r.missed:,} / {r.overlaps:,} | {r.server_connections:,} | {_f(r.server_cpu_pct)} "
            f"| {_f(r.others_pct)} / {_f(r.steal_pct)} |"
        )
    return rows


def machine() -> str:
    """nproc, CPU model, RAM, Python, DuckDB and the HTTP stack's versions."""
    import duckdb
    import httpx

    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total / 2**30
    config_args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    pgo = "" if "--enable-optimizations" in config_args else " (built without PGO/LTO)"
    return (
        f"nproc {os.cpu_count()}, {model}, {ram:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}{pgo}, "
        f"DuckDB {duckdb.__version__}, aiohttp {aiohttp.__version__}, httpx {httpx.__version__}"
    )


def _git(*argv: str) -> str:
    done = subprocess.run(
        ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def provenance(rev: str | None = None) -> str:
    """The agent code measured: the commit, and any uncommitted changes to it."""
    try:
        head = _git("rev-parse", "--short", rev or "HEAD").strip()
        if rev is not None:
            return (
                f"commit {head} (`--at-commit {rev}`: exported with git archive, "
                "working-tree changes excluded)"
            )
        dirty = _git("status", "--porcelain", "--", "agent", "probes").splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in dirty if line.strip()]
    if not changed:
        return f"commit {head} (working tree)"
    return f"commit {head} plus uncommitted changes in " + ", ".join(
        f"`{name}`" for name in changed
    )


def export_commit(rev: str, dest: Path) -> Path:
    """Extract the tree of `rev` into `dest` (nothing in the repository is changed)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, timeout=120, check=True)
    return dest


def _stop_time(run: AgentRun) -> str:
    if math.isinf(run.shutdown_s):
        return f"over {SHUTDOWN_LIMIT_S:.0f} s (cut)"
    return f"{run.shutdown_s:.1f} s"


def _per_probe_us(run: AgentRun, cpu_pct: float) -> float:
    return cpu_pct / 100 / max(run.probes_per_s, 1e-9) * 1e6


def interpretation(
    runs: dict[str, AgentRun], checks: list[Verdict], bb: BlackboxRun | None
) -> list[str]:
    """Generated one-liners: which targets hold, and what the numbers point at."""
    lines: list[str] = []
    met = [v for v in checks if v.met]
    missed = [v for v in checks if v.met is False]
    if met:
        lines.append("- Met: " + "; ".join(f"{v.target} ({v.measured})" for v in met) + ".")
    if missed:
        lines.append("- Missed: " + "; ".join(f"{v.target} ({v.measured})" for v in missed) + ".")
    behind = [r for r in runs.values() if r.missed or r.overlaps]
    if behind:
        top = max(behind, key=lambda r: r.probes_per_s)
        lines.append(
            "- Overloaded (runs skipped as missed or overlapping): "
            + ", ".join(
                f"{r.key} ({r.ok_per_s:,.0f} ok of {r.probes_per_s:,.0f} results/s)" for r in behind
            )
            + f". The most results/s any run produced was {top.probes_per_s:,.0f} ({top.key}). "
            "Runs that wait too long are cut by their timeout, so past the ceiling ok/s "
            "collapses rather than plateaus."
        )
    if runs:
        best = max(runs.values(), key=lambda r: r.ok_per_s)
        lines.append(f"- The best ok/s of any scenario: {best.ok_per_s:,.0f} ({best.key}).")
    steady = [r for r in runs.values() if not (r.missed or r.overlaps) and r.probes_per_s >= 50]
    if steady:
        lines.append(
            "- Agent CPU per probe run where no run was skipped (event-loop thread / whole "
            "process): "
            + "; ".join(
                f"{r.key} {_per_probe_us(r, r.loop_thread_cpu_pct):,.0f} / "
                f"{_per_probe_us(r, r.cpu_pct):,.0f} µs"
                for r in steady
            )
            + "."
        )
    slow_store = [r for r in runs.values() if r.stored_per_s < 0.9 * r.probes_per_s]
    if slow_store:
        lines.append(
            "- The store fell behind the results in "
            + ", ".join(
                f"{r.key} ({r.stored_per_s:,.0f} of {r.probes_per_s:,.0f} /s stored, "
                f"{r.store_queue_end:,} queued at the end)"
                for r in slow_store
            )
            + "."
        )
    burst, smooth = runs.get("s3-5000x10s"), runs.get("s3-5000x10s-j9s")
    if burst and smooth:
        lines.append(
            f"- The same 500 runs/s with the default jitter (1s for every 10s) vs `jitter: 9s`: "
            f"lag p99 {burst.lag_p99_ms:,.0f} vs {smooth.lag_p99_ms:,.0f} ms. The first runs "
            "are spread over `min(every, 60s)` (`Dispatcher.first_offset`), so either way the "
            "probes of one period are spread over the whole period."
        )
    s5 = runs.get("s5-1000x10s")
    if s5 is not None and not math.isnan(s5.rss_anon_mb):
        lines.append(
            f"- RSS with 1,000 probes (s5-1000x10s): {s5.rss_mb:,.0f} MB at the end = "
            f"{s5.rss_anon_mb:,.0f} MB private (heap, Python objects, DuckDB's buffers) + "
            f"{s5.rss_file_mb:,.0f} MB of mapped files (the code of Python, DuckDB, OpenSSL, "
            "... shared and reclaimable)."
        )
    gcs = [r for r in runs.values() if r.probes_per_s >= 50 and not math.isnan(r.gc_pct)]
    if gcs:
        lines.append(
            "- Time in the garbage collector: "
            + ", ".join(f"{r.key} {r.gc_pct:.1f} %" for r in gcs)
            + " of the window."
        )
    loads: dict[int, list[float]] = {}
    for r in runs.values():
        if r.probes >= 1000:
            loads.setdefault(r.probes, []).append(r.config_load_s)
    if loads:
        lines.append(
            "- `parse_config` of the scenario's agent.yaml (slowest of the runs): "
            + ", ".join(f"{n:,} probes {max(t):.2f} s" for n, t in sorted(loads.items()))
            + "."
        )
    slow_stop = [r for r in runs.values() if r.shutdown_s > 3]
    if slow_stop:
        lines.append(
            "- Stopping the agent (in-flight runs finish, the store drains) took "
            + ", ".join(f"{r.key} {_stop_time(r)}" for r in slow_stop)
            + "."
        )
    keep, close = runs.get("base-keep"), runs.get("base-close")
    if keep and close:
        lines.append(
            f"- `Connection: close` opens a new connection per run: the server counted "
            f"{close.server_connections:,} connections for {close.server_requests:,} requests "
            f"(base-close), against {keep.server_connections:,} for {keep.server_requests:,} "
            "with reuse (base-keep)."
        )
    s2 = runs.get("s2-500x1s") or runs.get("s2-5000")
    if bb is not None and s2 is not None:
        lines.append(
            f"- blackbox_exporter (Go, a new connection per probe, may use both cores): "
            f"{bb.probes_per_s:,.0f} probes/s at {bb.cpu_pct:.0f} % CPU = "
            f"{bb.cpu_pct / 100 / max(bb.probes_per_s, 1e-9) * 1e6:,.0f} µs per probe; "
            f"the agent with new connections ({s2.key}): {s2.probes_per_s:,.0f} results/s at "
            f"{s2.cpu_pct:.0f} % = {_per_probe_us(s2, s2.cpu_pct):,.0f} µs per run."
        )
    return lines


def render_section(
    plan: Plan,
    runs: dict[str, AgentRun],
    failures: dict[str, str],
    bb: BlackboxRun | None,
    bb_note: str,
    notes: str,
    code: str,
    command: str,
    background: float,
) -> str:
    """The whole `## Probe throughput` section."""
    base = runs.get("base-keep")
    checks = verdicts(runs)
    out = [
        SECTION,
        "",
        "The real agent (`agent.daemon.Agent`, config from `parse_config`, DuckDB store in a temp "
        "dir, one process per scenario) runs N HTTP probes (expect "
        + ", ".join(f"`{e}`" for e in EXPECT)
        + f") against a small aiohttp.web server in a separate process ({N_PORTS} loopback ports, "
        'a distinct path per probe, body `{"status":"ok"}`). Numbers are over a steady-state '
        "window after a warm-up; CPU is % of one core for the agent's process (psutil), split "
        "into its event-loop thread and the rest (DuckDB writer thread, ...). Lag is the "
        "result's `lag_ms` (started_at - scheduled_at); latency is the probe's `latency_ms`. "
        "GC % is the time the agent spent in Python's garbage collector; RSS is the largest "
        "seen in the window, and in brackets the end's private memory and mapped files. "
        "The server and the agent share the machine's cores; `other load` is CPU used "
        "meanwhile by neither (other work on the machine) and `steal` CPU time the hypervisor "
        "gave to other guests: either makes the numbers pessimistic.",
        "",
        f"- Command: `{command}`",
        f"- Machine: {machine()}",
        f"- Agent code: {code}",
        f"- Other load on the machine just before the run: {background:.0f} % of a core",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "### Targets",
        "",
        "| target | scenario | measured | met |",
        "|---|---|---:|---|",
    ]
    for v in checks:
        mark = "yes" if v.met else ("no" if v.met is False else "-")
        out.append(f"| {v.target} | {v.scenario} | {v.measured} | {mark} |")
    out += ["", "### All scenarios", "", *table(plan, runs, failures, base), ""]
    if base is not None:
        server = f"{base.server_handle_p50_us:.0f} / {base.server_handle_p99_us:.0f} µs"
        out.append(
            f"Server handler time (p50 / p99) at idle: {server}; the idle baseline's latency "
            f"p50 / p99 is {base.latency_p50_ms:.2f} / {base.latency_p99_ms:.2f} ms "
            "(reused connection): the rest of a probe's latency is the agent's HTTP client, "
            "event loop and the kernel. `x idle p50` compares each scenario's latency p50 with the idle "
            "baseline of the same connection mode."
        )
        out.append("")
    out += ["### blackbox_exporter at the same targets", ""]
    if bb is None:
        out.append(bb_note)
    else:
        out.append(
            f"{bb.version}, `/probe?module=http_2xx` (a new connection per probe) driven by "
            f"{bb.concurrency} concurrent aiohttp requests from the bench for {bb.window_s:.0f} s: "
            f"**{bb.probes_per_s:,.0f} probes/s**, {bb.failed} failed, probe_duration p50 / p99 "
            f"{bb.duration_p50_ms:.2f} / {bb.duration_p99_ms:.2f} ms; exporter CPU "
            f"{bb.cpu_pct:.0f} % of a core, bench driver {bb.driver_cpu_pct:.0f} %, target server "
            f"{bb.server_cpu_pct:.0f} % ({bb.server_connections:,} connections), whole machine "
            f"{bb.machine_busy_pct:.0f} % of {(os.cpu_count() or 1) * 100} %."
        )
    out += ["", "### Interpretation", "", *interpretation(runs, checks, bb), ""]
    out += [NOTES_START, notes.strip("\n"), NOTES_END, ""]
    return "\n".join(out)


def update_benchmarks(section: str) -> None:
    """Replace (or append) the `## Probe throughput` section, leaving the rest alone."""
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        before = "\n".join(lines[:start]).rstrip("\n")
        after = "\n".join(lines[end:])
        new = (before + "\n\n" if before else "") + section + ("\n" + after if after else "")
    tmp = BENCHMARKS.with_suffix(".md.tmp")
    tmp.write_text(new.rstrip("\n") + "\n", encoding="utf-8")
    tmp.replace(BENCHMARKS)


def existing_notes() -> str:
    """Hand-written notes kept from the current section, if any."""
    if not BENCHMARKS.exists():
        return ""
    text = BENCHMARKS.read_text(encoding="utf-8")
    start, end = text.find(NOTES_START), text.find(NOTES_END)
    if start < 0 or end < start:
        return ""
    return text[start + len(NOTES_START) : end].strip("\n")


def background_load(seconds: float = 2.0) -> float:
    """CPU used on the whole machine over `seconds`, % of one core (nothing of ours runs)."""
    before = _machine_busy()[0]
    time.sleep(seconds)
    return (_machine_busy()[0] - before) / seconds * 100


def wait_for_quiet(limit: float) -> float:
    """Wait up to `limit` seconds for other load below 20 % of a core; the last reading."""
    deadline = time.monotonic() + limit
    load = background_load()
    while load > 20 and time.monotonic() < deadline:
        print(f"waiting for a quieter machine (other load {load:.0f} % of a core) ...", flush=True)
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        load = background_load()
    return load


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run."""
    command = ".venv/bin/python bench/probe_throughput.py"
    if args.quick:
        command += " --quick"
    if args.only:
        command += f" --only {args.only}"
    if args.at_commit:
        command += f" --at-commit {args.at_commit}"
    return command


def main_parent(args: argparse.Namespace) -> int:
    """Run the plan, print the table, update BENCHMARKS.md."""
    plan = quick_plan() if args.quick else full_plan()
    if args.only:
        wanted = set(args.only.split(","))
        plan.scenarios = [s for s in plan.scenarios if s.key in wanted or s.key.startswith("base")]
    started = time.monotonic()
    code = provenance()
    background = wait_for_quiet(args.wait_quiet)
    if background > 20:
        print(
            f"WARNING: the machine is already busy ({background:.0f} % of a core used by "
            "other processes): the numbers will be pessimistic",
            flush=True,
        )
    runs: dict[str, AgentRun] = {}
    failures: dict[str, str] = {}
    bb: BlackboxRun | None = None
    bb_note = ""
    with tempfile.TemporaryDirectory(prefix="opsagent-bench-") as tmp_name:
        tmp = Path(tmp_name)
        agent_root = export_commit(args.at_commit, tmp / "snapshot") if args.at_commit else None
        if args.at_commit:
            code = provenance(args.at_commit)
        server_proc, server = start_server(tmp)
        try:
            for sc in plan.scenarios:
                print(
                    f"running {sc.key}: {sc.probes:,} probes every {sc.every}"
                    f"{' (new connection per run)' if sc.close else ''} ...",
                    flush=True,
                )
                run = run_scenario(
                    sc,
                    server,
                    tmp,
                    profile=sc.key in args.profile.split(","),
                    agent_root=agent_root,
                )
                if isinstance(run, str):
                    failures[sc.key] = run
                    print(f"  {sc.key}: {run}", flush=True)
                else:
                    runs[sc.key] = run
                    print(
                        f"  {run.probes_per_s:,.0f} probes/s, lag p99 {run.lag_p99_ms:.1f} ms, "
                        f"CPU {run.cpu_pct:.1f} %, RSS {run.rss_max_mb:.0f} MB, "
                        f"server connections {run.server_connections:,}",
                        flush=True,
                    )
                    print(f"  threads CPU %: {run.threads_cpu_pct}", flush=True)
                    if run.failures:
                        print(f"  not ok: {run.failures}", flush=True)
                    if run.profile_top:
                        print(run.profile_top)
            binary = find_blackbox()
            if args.skip_blackbox:
                bb_note = "Not run (`--skip-blackbox`)."
            elif binary is None:
                bb_note = (
                    "Not run: no blackbox_exporter binary found. On Debian: "
                    "`apt-get install -y prometheus-blackbox-exporter`."
                )
                print(f"NOTE: {bb_note}", flush=True)
            else:
                print(f"running blackbox_exporter ({binary}) ...", flush=True)
                size = max((s.probes for s in plan.scenarios), default=1)
                targets = [
                    f"http://127.0.0.1:{server['ports'][i % len(server['ports'])]}/p/{i}"
                    for i in range(size)
                ]
                try:
                    bb = run_blackbox(
                        binary, server, targets, plan.blackbox_window, plan.blackbox_concurrency
                    )
                    print(
                        f"  {bb.probes_per_s:,.0f} probes/s, exporter CPU {bb.cpu_pct:.0f} %",
                        flush=True,
                    )
                except (RuntimeError, OSError, aiohttp.ClientError) as exc:
                    bb_note = f"Not run: {exc}"
                    print(f"NOTE: blackbox_exporter: {exc}", flush=True)
        finally:
            server_proc.terminate()
            try:
                server_proc.wait(10)
            except subprocess.TimeoutExpired:
                server_proc.kill()
                server_proc.wait(10)
    section = render_section(
        plan, runs, failures, bb, bb_note, existing_notes(), code, command_line(args), background
    )
    if args.json:
        raw = {
            "code": code,
            "runs": {k: asdict(v) for k, v in runs.items()},
            "blackbox": asdict(bb) if bb else None,
        }
        args.json.write_text(json.dumps(raw, indent=1))
    print()
    print(section)
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    write = not (args.no_write or args.only or args.profile or args.quick) or args.write
    if write:
        update_benchmarks(section)
        print(f"updated {BENCHMARKS.relative_to(ROOT)}")
    missing = [s.key for s in plan.scenarios if s.key not in runs]
    return 1 if missing else 0


def main() -> int:
    """Entry point; `--role` selects the server or agent child processes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, ~20 s (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated scenario keys (no write)")
    parser.add_argument(
        "--profile", default="", help="comma-separated scenario keys to run under cProfile"
    )
    parser.add_argument("--skip-blackbox", action="store_true", help="do not run the exporter")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--write", action="store_true", help="update BENCHMARKS.md even with --quick/--only"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for other load on the machine to drop below 20%%",
    )
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument(
        "--role", choices=["parent", "server", "agent"], default="parent", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--at-commit",
        metavar="REV",
        help="measure the agent code of this commit (git archive to a temp dir) instead of "
        "the working tree, which other people may be editing",
    )
    parser.add_argument("--agent-root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(serve(args.ready_file))
        return 0
    if args.role == "agent":
        if args.agent_root:
            sys.path.insert(0, str(args.agent_root))  # measure an exported commit's code
        scenario = Scenario(**json.loads(args.scenario))
        run = asyncio.run(agent_child(scenario, json.loads(args.server), bool(args.profile)))
        args.out.write_text(json.dumps(asdict(run)))
        return 0
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
