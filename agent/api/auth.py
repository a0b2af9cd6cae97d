"""The API token: generated once into `<data_dir>/api.token` (mode 0600), checked per request.

The file is the credential: whoever can read it may act on the agent, exactly like the
agent's own user. Clients (the CLI, the TUI, Slack) read it from the data directory.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_FILE = "api.token"
ADDR_FILE = "api.addr"
_MIN_LENGTH = 20  # anything shorter in the file is a leftover of an interrupted write


def token_path(data_dir: Path) -> Path:
    """Where the token of the agent with this data directory lives."""
    return data_dir / TOKEN_FILE


def ensure_token(data_dir: Path) -> str:
    """The token in `data_dir`, creating it (mode 0600) at first start."""
    path = token_path(data_dir)
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    if len(token) >= _MIN_LENGTH:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & stat.S_IROTH:
            # Not changed on purpose: an operator may have made it group-readable for
            # a team; world-readable, though, is almost certainly a mistake.
            log.warning("the API token %s is readable by every user (mode %o)", path, mode)
        return token
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    # Created 0600 from the start (never world-readable, even for a moment), then
    # renamed so that a reader sees either no file or the whole token.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    log.info("created the API token %s", path)
    return token


def read_token(data_dir: Path) -> str | None:
    """The token for clients; None when the agent never created one. OSError if unreadable."""
    try:
        token = token_path(data_dir).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return token or None


def bearer_matches(header: str | None, token: str) -> bool:
    """True when an `Authorization` header carries `token` (constant-time comparison)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode())
