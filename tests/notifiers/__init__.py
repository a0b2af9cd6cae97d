"""Tests of the notifier kinds in agent/notifiers/."""
