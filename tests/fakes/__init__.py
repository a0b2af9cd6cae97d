"""Fakes of outside services, shared by the tests (the Slack Web API, ...)."""
