"""Incidents: one per fingerprint, opened and resolved by thresholds, changed by people.

`engine.py` is the pure state machine (results and clock ticks in, transitions and
notice requests out); the daemon persists its outcome to DuckDB before any notice is
sent.
"""
