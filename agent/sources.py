"""Named connections to data stores (`sources:` in agent.yaml).

Secrets come from `${ENV}` interpolation or a `password_file`; both end up in a
`SecretStr` that is never logged or rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from agent.probe_spec import StrictModel
from agent.secret_files import read_secret_file

Port = Annotated[int, Field(ge=1, le=65535)]


class _PasswordSource(StrictModel):
    """A source that may carry a password inline or in a file."""

    password: SecretStr | None = None
    password_file: Path | None = Field(
        default=None,
        description="File holding the password (first line, trailing newline dropped).",
    )

    @field_validator("password_file")
    @classmethod
    def _readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Anchor relative paths at the config file and fail here, so the error
        # points at the password_file line.
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        path = Path(base) / value if base is not None and not value.is_absolute() else value
        read_secret_file(path)
        return path

    @model_validator(mode="after")
    def _load_password_file(self) -> _PasswordSource:
        if self.password_file is not None:
            if self.password is not None:
                raise ValueError("set either password or password_file, not both")
            object.__setattr__(self, "password", read_secret_file(self.password_file))
        return self


class PostgresSource(_PasswordSource):
    """PostgreSQL, by DSN (`postgresql://user@host:port/db`) or by host/port/database/user."""

    kind: Literal["postgres"]
    dsn: str | None = None
    host: str = "127.0.0.1"
    port: Port = 5432
    database: str | None = None
    user: str | None = None


class MysqlSource(_PasswordSource):
    """MySQL or MariaDB."""

    kind: Literal["mysql"]
    host: str = "127.0.0.1"
    port: Port = 3306
    database: str | None = None
    user: str = "root"


class SqliteSource(StrictModel):
    """A SQLite database file, opened read-only."""

    kind: Literal["sqlite"]
    path: Path


class DuckdbSource(StrictModel):
    """Another DuckDB file, attached read-only."""

    kind: Literal["duckdb"]
    path: Path


class RedisSource(_PasswordSource):
    """Redis, by URL (`redis://host:port/db`)."""

    kind: Literal["redis"]
    url: str = "redis://127.0.0.1:6379/0"


SourceSpec = Annotated[
    PostgresSource | MysqlSource | SqliteSource | DuckdbSource | RedisSource,
    Field(discriminator="kind"),
]
