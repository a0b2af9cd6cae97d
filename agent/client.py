"""A client for the running agent's control API: the CLI uses it, the TUI and Slack will.

Finding the agent: its data directory (from the config) holds `api.token` (written at
the agent's first start) and, while it runs, `api.addr` (the address it actually bound,
which matters with port 0). Without `api.addr` the config's `agent.api.listen` is tried.
`Location.from_file` finds them even when the config does not validate in the caller's
environment (a `${VAR}` only the agent's service sets).

Errors, as a tree:

    OpsAgentError
    └── ClientError
        ├── AgentUnavailable   no agent answers there (not running, or another process
        │                      that refuses our token): read-only callers may fall back
        │                      to opening the store themselves
        └── ApiError           the agent answered with an error: status, error, field, problems
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from pydantic import BaseModel

from agent.api.auth import ADDR_FILE, read_token, token_path
from agent.api.models import (
    ConfigResponse,
    ErrorBody,
    Health,
    HistoryResponse,
    ProbesResponse,
    QueryResponse,
    ReloadResponse,
    StatusResponse,
)
from agent.config import ApiSection, Config
from agent.errors import OpsAgentError
from agent.results import ProbeResult

M = TypeVar("M", bound=BaseModel)
DEFAULT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 3.0


class ClientError(OpsAgentError):
    """Talking to the agent failed."""


class AgentUnavailable(ClientError):
    """No agent of ours answers at the address."""


class ApiError(ClientError):
    """The agent answered with an error."""

    def __init__(self, status: int, body: ErrorBody) -> None:
        self.status = status
        self.error = body.error
        self.field = body.field
        self.problems = body.problems
        super().__init__(body.error)


@dataclass(frozen=True)
class Endpoint:
    """Where an agent listens and the token it wants."""

    base_url: str
    token: str
    unix_socket: Path | None = None

    @property
    def where(self) -> str:
        """The address, for messages."""
        return str(self.unix_socket) if self.unix_socket else self.base_url.removeprefix("http://")


@dataclass(frozen=True)
class Location:
    """Where to look for an agent: its data directory and its configured listen address."""

    data_dir: Path
    listen: str

    @classmethod
    def of(cls, config: Config) -> Location:
        return cls(config.agent.data_dir, config.agent.api.listen)

    @classmethod
    def from_file(cls, config_path: Path) -> Location | None:
        """Read only `agent.data_dir` and `agent.api.listen` from the YAML.

        For when the whole config does not validate here, though it does for the agent:
        the CLI's shell lacks a `${VAR}` or cannot read a secret file that the agent's
        environment provides. None when even these two cannot be read plainly.
        """
        try:
            data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        agent = data.get("agent", {}) if isinstance(data, dict) else None
        agent = agent if isinstance(agent, dict) else {}
        api = agent.get("api", {}) if isinstance(agent.get("api", {}), dict) else {}
        data_dir, listen = agent.get("data_dir", "./var"), api.get("listen", ApiSection().listen)
        if not isinstance(data_dir, str) or not isinstance(listen, str) or "$" in data_dir + listen:
            return None
        path = Path(data_dir).expanduser()
        return cls(path if path.is_absolute() else config_path.parent / path, listen)

    @property
    def token_file(self) -> Path:
        """Where the token is (for messages)."""
        return token_path(self.data_dir)


def find_agent(where: Location) -> Endpoint | None:
    """The endpoint of the agent using that data directory; None if it never started.

    OSError when the token file exists but cannot be read (permissions).
    """
    token = read_token(where.data_dir)
    if token is None:
        return None
    try:
        address = (where.data_dir / ADDR_FILE).read_text().strip()
    except FileNotFoundError:
        address = where.listen
    if address.endswith(":0"):
        return None  # an ephemeral port that is not running: nothing to call
    return Endpoint(f"http://{address}", token)


@dataclass(frozen=True)
class Event:
    """One server-sent event: `result`, `state` or `dropped`, with its JSON data."""

    event: str
    data: dict[str, Any]


class AgentClient:
    """Synchronous client (the CLI). Use as a context manager, or call `close()`."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        if transport is None and endpoint.unix_socket is not None:
            transport = httpx.HTTPTransport(uds=str(endpoint.unix_socket))
        self._http = httpx.Client(
            base_url=endpoint.base_url,
            headers={"Authorization": f"Bearer {endpoint.token}"},
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S),
            transport=transport,
            trust_env=False,  # loopback: never through an HTTP(S)_PROXY from the environment
        )

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def health(self) -> Health:
        """`GET /healthz` (200 or 503)."""
        return self._call("GET", "/healthz", Health, ok=(200, 503))

    def status(self) -> StatusResponse:
        """`GET /v1/status`."""
        return self._call("GET", "/v1/status", StatusResponse)

    def probes(self) -> ProbesResponse:
        """`GET /v1/probes`."""
        return self._call("GET", "/v1/probes", ProbesResponse)

    def history(self, name: str, limit: int = 100) -> HistoryResponse:
        """`GET /v1/probes/{name}/history`."""
        path = f"/v1/probes/{_segment(name)}/history"
        return self._call("GET", path, HistoryResponse, params={"limit": limit})

    def run_probe(self, name: str) -> ProbeResult:
        """`POST /v1/probes/{name}/run`."""
        return self._call("POST", f"/v1/probes/{_segment(name)}/run", ProbeResult)

    def config(self) -> ConfigResponse:
        """`GET /v1/config`."""
        return self._call("GET", "/v1/config", ConfigResponse)

    def query(self, sql: str, *, max_rows: int = 1000, timeout_s: float = 10.0) -> QueryResponse:
        """`POST /v1/query`."""
        body = {"sql": sql, "max_rows": max_rows, "timeout_s": timeout_s}
        return self._call(
            "POST", "/v1/query", QueryResponse, json_body=body, timeout=timeout_s + 10
        )

    def reload(self) -> ReloadResponse:
        """`POST /v1/reload`."""
        return self._call("POST", "/v1/reload", ReloadResponse)

    def metrics(self) -> str:
        """`GET /metrics`, the exposition text."""
        return self._send("GET", "/metrics").text

    def events(self, probe: str | None = None) -> Iterator[Event]:
        """Server-sent events until the agent stops (or the caller stops iterating)."""
        params = {"probe": probe} if probe else None
        try:
            with self._http.stream("GET", "/v1/events", params=params, timeout=None) as response:
                _raise_for(response, response.read() if response.status_code >= 400 else b"")
                event = "message"
                for line in response.iter_lines():
                    parsed = _sse_line(line, event)
                    if isinstance(parsed, Event):
                        yield parsed
                        event = "message"
                    elif parsed is not None:
                        event = parsed
        except httpx.TransportError as exc:
            raise _unavailable(self.endpoint, exc) from None

    def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        ok: tuple[int, ...] = (200,),
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> M:
        response = self._send(
            method, path, ok=ok, params=params, json_body=json_body, timeout=timeout
        )
        return model.model_validate_json(response.content)

    def _send(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = self._http.request(method, path, params=params, json=json_body, **extra)
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise _unavailable(self.endpoint, exc) from None
            raise ClientError(
                f"the agent at {self.endpoint.where} did not answer in time"
            ) from None
        except httpx.TransportError as exc:
            raise _unavailable(self.endpoint, exc) from None
        if response.status_code not in ok:
            _raise_for(response, response.content)
        return response


class AsyncAgentClient:
    """Asynchronous client (the TUI, Slack): the same calls, awaited."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        if transport is None and endpoint.unix_socket is not None:
            transport = httpx.AsyncHTTPTransport(uds=str(endpoint.unix_socket))
        self._http = httpx.AsyncClient(
            base_url=endpoint.base_url,
            headers={"Authorization": f"Bearer {endpoint.token}"},
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S),
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> AsyncAgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def status(self) -> StatusResponse:
        """`GET /v1/status`."""
        return await self._call("GET", "/v1/status", StatusResponse)

    async def probes(self) -> ProbesResponse:
        """`GET /v1/probes`."""
        return await self._call("GET", "/v1/probes", ProbesResponse)

    async def history(self, name: str, limit: int = 100) -> HistoryResponse:
        """`GET /v1/probes/{name}/history`."""
        path = f"/v1/probes/{_segment(name)}/history"
        return await self._call("GET", path, HistoryResponse, params={"limit": limit})

    async def run_probe(self, name: str) -> ProbeResult:
        """`POST /v1/probes/{name}/run`."""
        return await self._call("POST", f"/v1/probes/{_segment(name)}/run", ProbeResult)

    async def query(
        self, sql: str, *, max_rows: int = 1000, timeout_s: float = 10.0
    ) -> QueryResponse:
        """`POST /v1/query`."""
        body = {"sql": sql, "max_rows": max_rows, "timeout_s": timeout_s}
        return await self._call("POST", "/v1/query", QueryResponse, json_body=body)

    async def reload(self) -> ReloadResponse:
        """`POST /v1/reload`."""
        return await self._call("POST", "/v1/reload", ReloadResponse)

    async def events(self, probe: str | None = None) -> AsyncIterator[Event]:
        """Server-sent events until the agent stops (or the caller stops iterating)."""
        params = {"probe": probe} if probe else None
        try:
            async with self._http.stream(
                "GET", "/v1/events", params=params, timeout=None
            ) as response:
                _raise_for(response, await response.aread() if response.status_code >= 400 else b"")
                event = "message"
                async for line in response.aiter_lines():
                    parsed = _sse_line(line, event)
                    if isinstance(parsed, Event):
                        yield parsed
                        event = "message"
                    elif parsed is not None:
                        event = parsed
        except httpx.TransportError as exc:
            raise _unavailable(self.endpoint, exc) from None

    async def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> M:
        try:
            response = await self._http.request(method, path, params=params, json=json_body)
        except httpx.TransportError as exc:
            raise _unavailable(self.endpoint, exc) from None
        if response.status_code != 200:
            _raise_for(response, response.content)
        return model.model_validate_json(response.content)


def _segment(name: str) -> str:
    """A probe name as one path segment."""
    from urllib.parse import quote

    return quote(name, safe="")


def _unavailable(endpoint: Endpoint, exc: Exception) -> AgentUnavailable:
    return AgentUnavailable(
        f"the agent is not running (no answer on {endpoint.where}: {type(exc).__name__})"
    )


def _raise_for(response: httpx.Response, content: bytes) -> None:
    """Raise the right error for a non-2xx answer."""
    if response.status_code < 400:
        return
    try:
        body = ErrorBody.model_validate_json(content)
    except ValueError:
        raise AgentUnavailable(
            f"something other than an opsagent answers on {response.url.host}:"
            f"{response.url.port} (HTTP {response.status_code})"
        ) from None
    if response.status_code == 401:
        raise AgentUnavailable(
            f"the API at {response.url.host}:{response.url.port} refused our token "
            "(another process on that port, or a token from an older agent?)"
        )
    raise ApiError(response.status_code, body)


def _sse_line(line: str, event: str) -> Event | str | None:
    """Parse one line of an event stream: an Event on `data:`, a new event name, or None."""
    if line.startswith("event:"):
        return line[6:].strip()
    if line.startswith("data:"):
        return Event(event, json.loads(line[5:].strip()))
    return None
