"""Keep secrets out of everything a person or a file sees.

The runner passes every error message through `Redactor.redact` before it is stored,
logged or shown, because exception texts from drivers sometimes echo DSNs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "***"
# user:password@ in URLs and DSNs, whatever the scheme.
_URL_PASSWORD = re.compile(
    r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?P<post>@)"
)
_KEYWORD_PASSWORD = re.compile(
    r"(?i)\b(password|passwd|pwd|token|secret)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)"
)


class Redactor:
    """Masks known secret values, URL passwords and `password=...` pairs in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """Return text with every secret masked."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}{m['post']}", text)
        return _KEYWORD_PASSWORD.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)

    @classmethod
    def from_model(cls, model: BaseModel) -> Redactor:
        """A redactor for every SecretStr found anywhere in a config tree."""
        return cls(collect_secrets(model))


def collect_secrets(value: Any) -> list[str]:
    """Every SecretStr value inside a pydantic model, dict or list."""
    found: list[str] = []
    if isinstance(value, SecretStr):
        found.append(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found.extend(collect_secrets(getattr(value, name)))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(collect_secrets(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(collect_secrets(item))
    return found
