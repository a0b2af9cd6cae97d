"""opsagent: probes a business backend, stores every result, and (later) heals it."""

__version__ = "0.1.0"
