"""Reading `*_file` secrets."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr


def read_secret_file(path: Path) -> SecretStr:
    """Read a secret from a file: its first line without the trailing newline.

    Raises ValueError naming the file (never its content) when it cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"secret file {str(path)!r} does not exist") from None
    except PermissionError:
        raise ValueError(f"secret file {str(path)!r} is not readable (permission denied)") from None
    except IsADirectoryError:
        raise ValueError(f"secret file {str(path)!r} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"secret file {str(path)!r} cannot be read: {type(exc).__name__}"
        ) from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ValueError(f"secret file {str(path)!r} is empty")
    return SecretStr(lines[0])
