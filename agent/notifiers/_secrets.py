"""Secrets given inline (`token: ${SLACK_TOKEN}`) or in a file (`token_file: path`).

The same rules as the sources' `password_file`: a relative path is anchored at the
config file's folder (validation context `base_dir`), the file is read while the config
is validated so a bad path is an error on its own line, and the value ends up in a
`SecretStr` that is never logged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, ValidationInfo

from agent.secret_files import read_secret_file


def anchor(value: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve a `*_file` path against the config's folder."""
    if value is None:
        return None
    base = (info.context or {}).get("base_dir")
    return Path(base) / value if base is not None and not value.is_absolute() else value


def readable_secret_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Anchor a `*_file` path and check it can be read (for a field validator)."""
    path = anchor(value, info)
    if path is not None:
        read_secret_file(path)
    return path


def inline_or_file(
    inline: SecretStr | None, path: Path | None, *, name: str, required: bool
) -> SecretStr | None:
    """The secret from exactly one of `name` and `name_file`."""
    if path is not None:
        if inline is not None:
            raise ValueError(f"set either {name} or {name}_file, not both")
        return read_secret_file(path)
    if inline is None and required:
        raise ValueError(f"set {name} or {name}_file")
    return inline
