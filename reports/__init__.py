"""Periodic reports: SQL over the store, jinja2 templates, email (coming)."""
