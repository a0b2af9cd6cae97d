"""Remediation kinds and the safety guard (coming with the self-healing issue)."""
