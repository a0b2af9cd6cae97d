"""The Textual dashboard, a thin client of the control API (coming)."""
