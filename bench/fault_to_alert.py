"""Fault to alert: how long from an outage to the Slack message, with the default thresholds.

Run with `.venv/bin/python bench/fault_to_alert.py` (~2 minutes; `--quick` for a
~30-second smoke run, `--help` for the rest). Everything stays on 127.0.0.1.

- The real agent runs as its own process (`python -m agent.cli run`), its DuckDB store
  in a temp dir, with one critical HTTP probe per *lane* (`every: 10s`, expecting
  `status == 200`) and the default incident thresholds (3 failures open, 2 passes
  resolve; nothing about incidents is configured).
- Each lane has its own local aiohttp server (a port of its own) and its own `slack`
  notifier and channel on the fake Slack Web API (`tests/fakes/slack.py`), driven by
  the real slack-sdk client through `base_url`. Separate channels keep the lanes
  independent: Slack's one-message-per-second pace per channel would otherwise couple
  outages that happen to open within a second of each other.
- Each lane takes at most `--per-lane` outages (default 2), so there are outages /
  per-lane lanes (10 by default), running in parallel. Two outages are 4 state
  changes of the probe; the default flap detection (6 changes within 10 minutes)
  would, by design, turn a lane's 4th outage within 10 minutes into one FLAPPING notice
  and no page at all, which is not what this measures (a first run with 5 outages per
  lane showed exactly that). One probe taking 20 outages 10 minutes apart would take
  over 3 hours.
- Outages are injected in turn on each lane (lanes run in parallel, independently):
  wait a random 1 s to 1 s + `every` (so the fault falls at a random point of the probe's
  schedule), then the server starts answering 503 (even outages) or closing each
  connection without an answer (odd ones); the fault time is taken at that switch.
  When the incident's message arrives at the fake Slack, the server is restored; the
  lane waits for the resolve (the same message updated, a thread reply) and goes on.
- At the end the agent is stopped (SIGTERM) and its store read: for each outage the
  first failing run, the `opened` row of `incident_events` and the notice's arrival.

Per outage it reports fault → alert (fault switch → `chat.postMessage` received by the
fake) and transition → notice (`incident_events.happened_at` of `opened` → received),
with the split fault → first failing run → opened. `--json FILE` keeps every sample.
Percentiles interpolate linearly between samples (20 samples: p95 lies between the
two largest, p99 next to the maximum).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.fakes.slack

from tests.fakes.slack import Call, FakeSlack  # noqa: E402

TOKEN = "xoxb-bench-0000-faulttoalert"
TARGET_FAULT_TO_ALERT_P95_S = 30.0
TARGET_TRANSITION_TO_NOTICE_P99_S = 1.0
_INCIDENT_RE = re.compile(r"incident #(\d+)")


# -- the lanes' servers --------------------------------------------------------------------


@dataclass
class Lane:
    """One probe, its server and its Slack channel."""

    index: int
    mode: str = "ok"  # ok | 503 | close
    port: int = 0
    hits: int = 0
    runner: web.AppRunner | None = None
    seen: asyncio.Event = field(default_factory=asyncio.Event)  # the probe has run once

    @property
    def name(self) -> str:
        return f"lane{self.index}"

    @property
    def channel_id(self) -> str:
        return f"C0LANE{self.index:04d}"

    async def start(self) -> None:
        async def health(request: web.Request) -> web.StreamResponse:
            self.hits += 1
            self.seen.set()
            if self.mode == "503":
                return web.json_response({"status": "down"}, status=503)
            if self.mode == "close":
                if request.transport is not None:
                    request.transport.abort()  # no answer: the client sees the connection close
                return web.Response(status=503)  # never written
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_get("/health", health)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


# -- one outage --------------------------------------------------------------------------


@dataclass
class Outage:
    """One injected outage and what happened."""

    lane: str
    number: int  # global, in the order of injection
    kind: str  # 503 | close
    fault_at: float  # wall clock (time.time()) of the switch
    alert_at: float | None = None  # wall clock of chat.postMessage at the fake
    incident_id: int | None = None
    restored_at: float | None = None
    resolved_at: float | None = None  # wall clock of the resolving chat.update at the fake
    first_fail_at: float | None = None  # from the store: first failing run's start
    opened_at: float | None = None  # from the store: incident_events.happened_at (opened)
    first_fail_error: str | None = None
    same_message: bool = False  # the resolve updated this alert's message and replied in its thread

    @property
    def fault_to_alert(self) -> float | None:
        return None if self.alert_at is None else self.alert_at - self.fault_at

    @property
    def transition_to_notice(self) -> float | None:
        if self.alert_at is None or self.opened_at is None:
            return None
        return self.alert_at - self.opened_at


@dataclass
class Bench:
    """The run's settings and shared state."""

    every: float
    timeout: float
    outages: int
    lanes: list[Lane]
    slack: FakeSlack
    rng: random.Random
    clock_offset: float  # time.time() - time.monotonic(), to turn Call.time into wall time
    results: list[Outage] = field(default_factory=list)
    counter: int = 0

    def wall(self, call: Call) -> float:
        return call.time + self.clock_offset


async def wait_call(
    slack: FakeSlack, start: int, match: Any, limit: float
) -> tuple[Call | None, int]:
    """The first call from index `start` on for which `match(call)` holds, within `limit` s."""
    deadline = time.monotonic() + limit
    index = start
    while time.monotonic() < deadline:
        calls = slack.calls
        while index < len(calls):
            if match(calls[index]):
                return calls[index], index + 1
            index += 1
        await asyncio.sleep(0.01)
    return None, index


def is_alert(lane: Lane, call: Call) -> bool:
    """The incident's first message: a top-level post whose headline says CRITICAL.

    Any other top-level post (a FLAPPING notice of an incident that never paged) is not
    an alert for this outage.
    """
    return (
        call.method == "chat.postMessage"
        and "thread_ts" not in call.body
        and call.body.get("channel") == f"#{lane.name}"
        and f"CRITICAL {lane.name} failing" in str(call.body.get("text", ""))
    )


async def run_lane(bench: Bench, lane: Lane, count: int) -> None:
    """`count` outages on one lane, one after the other."""
    slack, every = bench.slack, bench.every
    for _ in range(count):
        await asyncio.sleep(bench.rng.uniform(1.0, 1.0 + every))
        number = bench.counter
        bench.counter += 1
        kind = "503" if number % 2 == 0 else "close"
        start = len(slack.calls)
        outage = Outage(lane.name, number, kind, time.time())
        lane.mode = kind
        bench.results.append(outage)
        post, _ = await wait_call(slack, start, lambda c: is_alert(lane, c), 4 * every + 30)
        lane.mode = "ok"
        outage.restored_at = time.time()
        if post is None:
            print(f"  {lane.name} outage {number}: no alert within {4 * every + 30:.0f}s")
            continue
        outage.alert_at = bench.wall(post)
        context = json.dumps(post.body.get("blocks", [])[-1:])
        found = _INCIDENT_RE.search(context)
        outage.incident_id = int(found.group(1)) if found else None

        def resolves(call: Call) -> bool:
            return (
                call.method == "chat.postMessage"
                and call.body.get("channel") == lane.channel_id
                and "thread_ts" in call.body
                and str(call.body.get("text", "")).startswith("✅")
            )

        reply, _ = await wait_call(slack, start, resolves, 4 * every + 30)
        if reply is None:
            print(f"  {lane.name} outage {number}: not resolved within {4 * every + 30:.0f}s")
            continue
        outage.resolved_at = bench.wall(reply)
        root = slack.messages.get((lane.channel_id, str(reply.body.get("thread_ts"))))
        outage.same_message = (
            root is not None
            and root.edits >= 1
            and (f"incident #{outage.incident_id}" in json.dumps(root.blocks))
        )
        print(
            f"  {lane.name} outage {number:2d} ({kind:>5}): fault→alert "
            f"{outage.fault_to_alert or 0:6.2f}s, resolved "
            f"{outage.resolved_at - (outage.restored_at or 0):5.1f}s after restore",
            flush=True,
        )


# -- the agent process -------------------------------------------------------------------


def agent_config(bench: Bench, data_dir: Path, api_port: int) -> str:
    every, timeout = bench.every, bench.timeout
    notify = "\n".join(
        f'  - {{name: slack-{lane.name}, kind: slack, token: "${{SLACK_TOKEN}}", '
        f'channel: "#{lane.name}", base_url: "{bench.slack.api_url}", mention: "<!here>"}}'
        for lane in bench.lanes
    )
    probes = "\n".join(
        f"  - {{name: {lane.name}, kind: http, url: "
        f'"http://127.0.0.1:{lane.port}/health", every: {round(every * 1000)}ms, timeout: {round(timeout * 1000)}ms, '
        f"expect: [status == 200], severity: critical, notify: [slack-{lane.name}]}}"
        for lane in bench.lanes
    )
    return f"""
agent:
  name: fault-to-alert
  data_dir: {data_dir}
  api: {{listen: "127.0.0.1:{api_port}"}}
notify:
{notify}
probes:
{probes}
"""


async def start_agent(config: Path, data_dir: Path, log_path: Path) -> asyncio.subprocess.Process:
    """`opsagent run` as its own process; returns once its /healthz answers 200."""
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "-c",
            str(config),
            "--log-format",
            "json",
            cwd=ROOT,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "SLACK_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"},
        )
    addr = data_dir / "api.addr"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise SystemExit(f"the agent exited with {proc.returncode}; see {log_path}")
            if addr.exists():
                url = f"http://{addr.read_text().strip()}/healthz"
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return proc
            await asyncio.sleep(0.1)
    proc.kill()
    await proc.wait()
    raise SystemExit(f"the agent did not become ready within 60 s; see {log_path}")


async def stop_agent(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM, as systemd would; killed after 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


def _epoch(value: datetime) -> float:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.timestamp()


def read_store(db: Path, outages: list[Outage]) -> dict[str, dict[str, int]]:
    """Fill in each outage's first failing run and `opened` transition from the store.

    Returns the notices by event and state (`{"opened": {"sent": 20}, ...}`).
    """
    con = duckdb.connect(str(db), read_only=True)
    try:
        notices: dict[str, dict[str, int]] = {}
        for event, state, n in con.execute(
            "SELECT event, state, count(*) FROM notifications GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            notices.setdefault(str(event), {})[str(state)] = int(n)
        opened = {
            int(r[0]): (str(r[1]), _epoch(r[2]))
            for r in con.execute(
                "SELECT e.incident_id, i.probe, e.happened_at FROM incident_events e "
                "JOIN incidents i ON i.id = e.incident_id WHERE e.event = 'opened'"
            ).fetchall()
        }
        results: dict[str, list[tuple[float, str, str | None]]] = {}
        for probe, ts, status, error in con.execute(
            "SELECT probe, ts, status, coalesce(error, array_to_string(failed, '; ')) "
            "FROM results ORDER BY ts"
        ).fetchall():
            results.setdefault(str(probe), []).append((_epoch(ts), str(status), error))
    finally:
        con.close()
    for outage in outages:
        if outage.incident_id is not None and outage.incident_id in opened:
            probe, at = opened[outage.incident_id]
            assert probe == outage.lane, (probe, outage)
            outage.opened_at = at
        for at, status, error in results.get(outage.lane, []):
            if at >= outage.fault_at and status != "ok":
                outage.first_fail_at, outage.first_fail_error = at, error
                break
    return notices


# -- statistics and report ---------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        ram = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return (
        f"nproc {os.cpu_count()}, {model}, {ram:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}"
    )


def git_state() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = len([ln for ln in git("status", "--porcelain", "agent", "probes").splitlines() if ln])
    head = git("rev-parse", "--short", "HEAD")
    return f"commit {head}" + (f" + {dirty} uncommitted files in agent/ probes/" if dirty else "")


def report(bench: Bench, args: argparse.Namespace, wall_s: float) -> dict[str, Any]:
    outages = bench.results
    alerted = [o for o in outages if o.fault_to_alert is not None]
    f2a = [o.fault_to_alert for o in alerted if o.fault_to_alert is not None]
    t2n = [o.transition_to_notice for o in alerted if o.transition_to_notice is not None]
    detect = [o.first_fail_at - o.fault_at for o in outages if o.first_fail_at is not None]
    confirm = [
        o.opened_at - o.first_fail_at
        for o in outages
        if o.opened_at is not None and o.first_fail_at is not None
    ]
    print()
    print(f"{len(outages)} outages, {len(alerted)} alerted, wall time {wall_s:.0f}s")
    print(
        "| outage | lane | kind | fault → first failing run s | → opened s | "
        "opened → notice ms | fault → alert s |"
    )
    print("|---:|---|---|---:|---:|---:|---:|")
    for o in outages:

        def fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
            return "-" if value is None else f"{value * scale:.{digits}f}"

        first = None if o.first_fail_at is None else o.first_fail_at - o.fault_at
        conf = (
            None
            if o.opened_at is None or o.first_fail_at is None
            else o.opened_at - o.first_fail_at
        )
        print(
            f"| {o.number} | {o.lane} | {o.kind} | {fmt(first)} | {fmt(conf)} | "
            f"{fmt(o.transition_to_notice, 1000, 0)} | {fmt(o.fault_to_alert)} |"
        )
    stats: dict[str, Any] = {}
    for key, values in (
        ("fault_to_alert_s", f2a),
        ("transition_to_notice_s", t2n),
        ("fault_to_first_failing_run_s", detect),
        ("first_failing_run_to_opened_s", confirm),
    ):
        if values:
            stats[key] = summary(values)
            s = stats[key]
            print(
                f"{key}: n {s['n']}, min {s['min']:.3f}, p50 {s['p50']:.3f}, "
                f"p95 {s['p95']:.3f}, p99 {s['p99']:.3f}, max {s['max']:.3f}"
            )
    met_f2a = (
        bool(f2a)
        and len(f2a) == len(outages)
        and (stats["fault_to_alert_s"]["p95"] <= TARGET_FAULT_TO_ALERT_P95_S)
    )
    met_t2n = (
        bool(t2n)
        and len(t2n) == len(outages)
        and (stats["transition_to_notice_s"]["p99"] <= TARGET_TRANSITION_TO_NOTICE_P99_S)
    )
    print(
        f"target fault→alert p95 <= {TARGET_FAULT_TO_ALERT_P95_S:g}s: {'met' if met_f2a else 'MISSED'}"
    )
    print(
        f"target transition→notice p99 <= {TARGET_TRANSITION_TO_NOTICE_P99_S:g}s: "
        f"{'met' if met_t2n else 'MISSED'}"
    )
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
        "machine": machine(),
        "code": git_state(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": wall_s,
        "stats": stats,
        "targets_met": {"fault_to_alert_p95": met_f2a, "transition_to_notice_p99": met_t2n},
        "outages": [
            {
                **asdict(o),
                "fault_to_alert": o.fault_to_alert,
                "transition_to_notice": o.transition_to_notice,
            }
            for o in outages
        ],
    }


# -- main --------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10s, 500ms)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    count = -(-args.outages // args.per_lane)
    lanes = [Lane(i) for i in range(count)]
    for lane in lanes:
        await lane.start()
    channels = {lane.name: lane.channel_id for lane in lanes}
    slack = await FakeSlack(tokens={TOKEN}, channels=channels).start()
    bench = Bench(
        every=args.every,
        timeout=min(2.0, args.every / 2),
        outages=args.outages,
        lanes=lanes,
        slack=slack,
        rng=rng,
        clock_offset=time.time() - time.monotonic(),
    )
    tmp = Path(tempfile.mkdtemp(prefix="fault-to-alert-"))
    data_dir = tmp / "var"
    config = tmp / "agent.yaml"
    config.write_text(agent_config(bench, data_dir, 0))
    log_path = tmp / "agent.log"
    print(f"agent: {len(lanes)} probes every {args.every:g}s, default thresholds; logs {log_path}")
    proc = await start_agent(config, data_dir, log_path)
    started = time.monotonic()
    try:
        # Every lane's probe has run and passed before the first fault.
        await asyncio.wait_for(
            asyncio.gather(*(lane.seen.wait() for lane in lanes)), 2 * args.every + 10
        )
        per_lane = [args.outages // len(lanes)] * len(lanes)
        for i in range(args.outages % len(lanes)):
            per_lane[i] += 1
        await asyncio.gather(
            *(run_lane(bench, lane, n) for lane, n in zip(lanes, per_lane, strict=True))
        )
    finally:
        wall_s = time.monotonic() - started
        exit_code = await stop_agent(proc)
        await slack.close()
        for lane in lanes:
            await lane.stop()
    if exit_code != 0:
        print(f"the agent exited with {exit_code}; see {log_path}")
    leaked = [c for c in slack.calls if TOKEN in c.raw_body]
    if leaked:
        print(f"the token appeared in {len(leaked)} request bodies")
    notices = await asyncio.to_thread(read_store, data_dir / "opsagent.duckdb", bench.results)
    print(f"{len(lanes)} lanes; notices by event and state: {notices}")
    data = report(bench, args, wall_s)
    data["notices"] = notices
    data["lanes"] = len(lanes)
    data["agent_exit_code"] = exit_code
    data["slack_calls"] = len(slack.calls)
    data["ok"] = exit_code == 0 and not leaked
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--outages", type=int, default=20, help="outages in all (default 20)")
    parser.add_argument(
        "--every", type=_seconds, default=10.0, help="the probe's interval (default 10s)"
    )
    parser.add_argument(
        "--per-lane",
        type=int,
        default=2,
        help="outages per probe/server/channel; lanes run in parallel (default 2: more "
        "than 3 within 10 minutes is flapping by the default flap detection)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for the fault times")
    parser.add_argument("--json", metavar="FILE", help="write every sample and the summary here")
    parser.add_argument(
        "--quick", action="store_true", help="a ~30-second smoke run: 6 outages, every 1s"
    )
    args = parser.parse_args()
    if args.quick:
        args.outages, args.every = 6, 1.0
    if args.outages < 1 or args.per_lane < 1 or args.every <= 0:
        parser.error("--outages and --per-lane must be >= 1, --every > 0")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiohttp").setLevel(logging.ERROR)
    data = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2, default=str))
        print(f"samples written to {args.json}")
    sys.exit(0 if data["ok"] else 1)


if __name__ == "__main__":
    main()
