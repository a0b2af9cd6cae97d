"""Fixtures: a real agent on an ephemeral port, a real HTTP target."""

from tests.running_agent import start_agent, target

__all__ = ["start_agent", "target"]
