"""The exceptions opsagent raises, as one tree.

    OpsAgentError
    ├── ConfigError            the config file is unreadable or invalid (carries every problem)
    ├── ExpectationSyntaxError an `expect:` expression does not parse
    ├── ProbeError             a probe could not run at all (a bug, never a down target)
    ├── NotifyError            a notice could not be delivered; `permanent` says whether to retry
    ├── RemediationRefused     a guard said no (cooldown, limits, breaker, approval)
    ├── RemediationFailed      a remediation ran and did not succeed
    └── StoreError             the DuckDB store failed or is held by another process

A down target is never an exception: probes return a failed result instead.
"""

from __future__ import annotations

from dataclasses import dataclass


class OpsAgentError(Exception):
    """Base of every error opsagent raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config file, located by file, line and dotted path."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(OpsAgentError):
    """The config is invalid; `problems` lists every problem found, in file order."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ExpectationSyntaxError(OpsAgentError):
    """An expectation expression could not be parsed; `position` is a 0-based offset."""

    def __init__(self, message: str, position: int | None = None) -> None:
        self.position = position
        super().__init__(message)


class ProbeError(OpsAgentError):
    """A probe could not run at all (misuse or a bug, not a down target)."""


class NotifyError(OpsAgentError):
    """A notice could not be sent; permanent errors are not retried."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        self.permanent = permanent
        self.retry_after = retry_after
        super().__init__(message)


class RemediationRefused(OpsAgentError):
    """A guard refused to run a remediation; the message says which guard and why."""


class RemediationFailed(OpsAgentError):
    """A remediation ran and failed."""


class StoreError(OpsAgentError):
    """The store could not be opened or written."""
