"""`opsagent demo`: the shop, the agent watching it, the faults, and the live timeline.

The order matters: the environment the config interpolates (`SHOP_PORT`,
`DEMO_DATA_DIR`, `OPSAGENT_PYTHON`, `DEMO_PID`) is set before the config is loaded, the config
is validated before anything is started, and the shop answers /health before the
agent's first probe. Every way out (the duration elapsing, Ctrl-C or SIGTERM caught by
the agent, Ctrl-C before the agent started, an exception) goes through one `finally`
that stops the injector and the shop, so the demo never leaves a process behind: the
shop the demo started, or one the agent's `restart-shop` remediation started (found by
its command line; it also exits by itself once the demo's pid is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import duckdb

from agent import store_incidents
from agent.config import Config
from agent.config_loader import load_config
from agent.daemon import Agent
from agent.demo import data
from agent.demo.faults import ROUND_SECONDS, FaultInjector, Step, default_timeline
from agent.demo.process import ShopProcess, ShopStartError, free_port, launch_shop
from agent.demo.repairs import RepairFeed, read_runs
from agent.demo.report import write_report
from agent.demo.timeline import ConsoleTimeline
from agent.errors import ConfigError, StoreError
from agent.incidents.models import Incident
from agent.results import utcnow
from agent.store import Store

ENV_KEYS = ("SHOP_PORT", "DEMO_DATA_DIR", "OPSAGENT_PYTHON", "DEMO_PID")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
STOP_MARGIN_S = 10.0  # on top of the agent's shutdown grace, before giving up on it


async def run_demo(
    config_path: Path,
    duration: float | None,
    data_dir: Path,
    *,
    fresh: bool = True,
    timeline: Sequence[Step] | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the demo until `duration` seconds have passed (None: until Ctrl-C / SIGTERM).

    `data_dir` holds the shop's databases; with `fresh` they are recreated so every demo
    starts healthy. `timeline` replaces the default fault timeline. Returns an exit code:
    0 after a normal stop, 1 when the shop or the store cannot start, 2 for a bad config.
    """
    console = ConsoleTimeline(stream=out or sys.stdout)
    steps = default_timeline() if timeline is None else list(timeline)
    data_dir = _absolute(data_dir)  # the command probe may run in another directory
    shop: ShopProcess | None = None
    with _demo_environment():
        try:
            port = free_port()
            config = _load(config_path, port, data_dir)
            if fresh:
                _remove_shop_files(data_dir)
            shop = await launch_shop(data_dir, first_port=port)
            if (
                shop.port != port
            ):  # the first port was taken meanwhile: point the config at the new one
                config = _load(config_path, shop.port, data_dir)
            console.message(_intro(shop, config, config_path, duration, steps))
            return await _watch(config, config_path, shop, console, duration, steps)
        except ConfigError as exc:
            print(f"opsagent demo: invalid config {config_path}:\n{exc}", file=sys.stderr)
            return EXIT_CONFIG
        except (ShopStartError, StoreError) as exc:
            print(f"opsagent demo: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            if shop is not None:
                shop.stop()


async def _watch(
    config: Config,
    config_path: Path,
    shop: ShopProcess,
    console: ConsoleTimeline,
    duration: float | None,
    steps: Sequence[Step],
) -> int:
    """Run the agent and the injector side by side until the agent is told to stop.

    `stop` is set by the duration timer or by the agent's own SIGINT/SIGTERM handlers.
    From then on no fault is injected, and the agent gets its shutdown grace (plus a
    margin) to flush the store; one that takes longer is cancelled rather than left to
    hang the demo.
    """
    agent = Agent(config, config_path=config_path)
    agent.subscribe(console)
    feed = RepairFeed(agent, console)
    stop = asyncio.Event()
    console.start()
    since = utcnow()
    injector = FaultInjector(shop, steps, emit=console.fault, reset_breaker=feed.reset_breaker)
    injecting = asyncio.create_task(injector.run(start=console.started))
    following = asyncio.create_task(feed.follow())
    grace = config.agent.shutdown_grace.total_seconds() + STOP_MARGIN_S
    # The console notifier prints to stdout: its notices join the timeline, marked.
    with contextlib.redirect_stdout(console.notice_stream()):
        running = asyncio.create_task(agent.run(stop))
        stopping = asyncio.create_task(stop.wait())
        timer = asyncio.get_running_loop().call_later(duration, stop.set) if duration else None
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            injecting.cancel()  # stopping: no new faults while the agent flushes
            following.cancel()
            try:
                code = await asyncio.wait_for(asyncio.shield(running), grace)
            except TimeoutError:
                print(f"opsagent demo: the agent did not stop within {grace:.0f}s", file=sys.stderr)
                code = EXIT_FAILED
        finally:
            if timer is not None:
                timer.cancel()
            for task in (injecting, following, running, stopping):
                task.cancel()
            await asyncio.gather(injecting, following, running, stopping, return_exceptions=True)
    console.message(console.summary(_shown(config.agent.store_path)))
    incidents = _incidents(agent)
    if incidents is not None:
        console.message(console.incidents(incidents, since))
        console.message("  try: opsagent incidents --all; opsagent incident ID")
    runs = read_runs(config.agent.store_path, since)
    if runs is not None:
        console.message(console.remediations(runs))
        if runs:
            console.message("  try: opsagent remediations; opsagent remediation RUN_ID")
    console.message(await write_report(config, since))
    return code


def _incidents(agent: Agent) -> list[Incident] | None:
    """Every incident the agent recorded (newest first), read once it has stopped.

    The agent closed its store on the way out, so its incidents are read from the file
    (read-only); None when that is not possible (the agent did not stop in time).
    """
    if agent.incidents is None:
        return None
    try:
        with Store.open(agent.config.agent.store_path, read_only=True) as store:
            return store.run_read_only(
                lambda con: store_incidents.listing(con, include_resolved=True, limit=1000)
            )
    except (StoreError, duckdb.Error, OSError):
        return None


def _load(config_path: Path, port: int, data_dir: Path) -> Config:
    """Set the variables agent.yaml interpolates, then load it (ConfigError if invalid)."""
    os.environ["SHOP_PORT"] = str(port)
    os.environ["DEMO_DATA_DIR"] = str(data_dir)
    os.environ["OPSAGENT_PYTHON"] = sys.executable
    os.environ["DEMO_PID"] = str(os.getpid())  # a shop the agent restarts exits with the demo
    return load_config(config_path)


@contextlib.contextmanager
def _demo_environment() -> Iterator[None]:
    """Restore SHOP_PORT, DEMO_DATA_DIR, OPSAGENT_PYTHON and DEMO_PID as they were before."""
    saved = {key: os.environ.get(key) for key in ENV_KEYS}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _remove_shop_files(data_dir: Path) -> None:
    """Delete the shop's databases (and only those) so the shop seeds a fresh catalogue."""
    for name in (data.SHOP_DB, data.WAREHOUSE_DB):
        for suffix in ("", "-wal", "-shm", "-journal"):
            (data_dir / (name + suffix)).unlink(missing_ok=True)


def _intro(
    shop: ShopProcess,
    config: Config,
    config_path: Path,
    duration: float | None,
    steps: Sequence[Step],
) -> str:
    until = f"for {duration:.0f}s" if duration else "until Ctrl-C"
    faults = (
        f"healthy first; faults start at +{min(s.at for s in steps):.0f}s and repeat every {ROUND_SECONDS:.0f}s"
        if steps
        else "no faults injected"
    )
    rules = config.incidents
    told = (
        f"notices (✉) go to {', '.join(rules.notify)}"
        if rules.notify
        else "no notifier in incidents.notify: incidents are recorded, not announced"
    )
    return "\n".join(
        [
            f"opsagent demo: shop at {shop.base_url} (pid {shop.pid}, data in {_shown(shop.data_dir)})",
            f"  agent {config.agent.name!r} runs {len(config.probes)} probes from {_shown(config_path)} {until}",
            f"  {faults}",
            f"  an incident opens after {rules.failures} failed runs in a row and resolves after "
            f"{rules.successes} passing ones; {told}",
            f"  {_healing(config)}",
            "",
        ]
    )


def _healing(config: Config) -> str:
    """One line on the remediations: which probes the agent repairs, and how."""
    repaired = [f"{p.name} -> {p.remediation}" for p in config.probes if p.remediation]
    if not repaired:
        return "no probe names a remediation: the agent detects, it does not repair"
    guard = config.guard
    mode = "kill switch ON: nothing runs" if guard.kill_switch else f"guard mode {guard.mode}"
    return f"self-healing ({mode}): " + ", ".join(repaired)


def _absolute(path: Path) -> Path:
    return path.resolve()


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is inside it (shorter to read)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
