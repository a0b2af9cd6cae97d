"""The demo's command probe: how much work the shop has left unfinished.

    python -m agent.demo.backlog --data-dir var/demo

prints `key=value` lines that the command probe turns into values:

    pending_orders=4
    pending_payments=4
    stuck_payments=0          pending for longer than --stuck-after (default 15 minutes)
    stuck_amount_cents=0      money held by the stuck payments
    oldest_pending_s=1.2      age of the oldest pending payment, 0 when none

Exits 2 with a message on stderr when the shop's databases do not exist.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from agent.demo import data


def main(argv: list[str] | None = None) -> int:
    """Print the shop's backlog as key=value lines; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m agent.demo.backlog",
        description="Print the demo shop's pending orders and stuck payments as key=value lines.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="where shop.db lives")
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=data.STUCK_AFTER.total_seconds(),
        metavar="SECONDS",
        help="a payment pending longer than this is stuck (default 900)",
    )
    args = parser.parse_args(argv)
    try:
        counts = data.backlog(args.data_dir, stuck_after=timedelta(seconds=args.stuck_after))
    except (FileNotFoundError, sqlite3.Error) as exc:
        print(f"backlog: {exc}", file=sys.stderr)
        return 2
    for key, value in asdict(counts).items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
