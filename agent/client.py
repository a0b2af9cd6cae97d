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
from datetime import datetime
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
    IncidentCounts,
    IncidentDetail,
    IncidentEvent,
    IncidentInfo,
    IncidentsResponse,
    NotificationInfo,
    OutboxTotals,
    ProbesResponse,
    QueryResponse,
    ReloadResponse,
    ReportInfo,
    ReportsResponse,
    SilenceInfo,
    SilencesResponse,
    StatusResponse,
)
from agent.api.remediation_models import RunDetail, RunInfo, RunsResponse, StepInfo
from agent.config import ApiSection, Config
from agent.errors import OpsAgentError
from agent.incidents.models import Incident, Matcher, Silence
from agent.results import ProbeResult, utcnow
from agent.store import Store

M = TypeVar("M", bound=BaseModel)
DEFAULT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 3.0
# A remediation asked by hand answers after its run and verification (each bounded by
# the remediation's timeout and the probe's): allow for both.
RUN_WAIT_S = 300.0


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

    def incidents(self, *, all: bool = False, limit: int = 200) -> IncidentsResponse:
        """`GET /v1/incidents`: open and acknowledged ones, or `all`."""
        params = {"all": _flag(all), "limit": limit}
        return self._call("GET", "/v1/incidents", IncidentsResponse, params=params)

    def incident(self, incident_id: int) -> IncidentDetail:
        """`GET /v1/incidents/{id}`: the incident, its timeline and its notifications."""
        return self._call("GET", f"/v1/incidents/{incident_id}", IncidentDetail)

    def acknowledge(
        self,
        incident_id: int,
        *,
        actor: str | None = None,
        comment: str | None = None,
        expires_in: str | None = None,
    ) -> IncidentInfo:
        """`POST /v1/incidents/{id}/ack`."""
        body = _body(actor=actor, comment=comment, expires_in=expires_in)
        path = f"/v1/incidents/{incident_id}/ack"
        return self._call("POST", path, IncidentInfo, json_body=body)

    def resolve(
        self, incident_id: int, *, actor: str | None = None, comment: str | None = None
    ) -> IncidentInfo:
        """`POST /v1/incidents/{id}/resolve`."""
        body = _body(actor=actor, comment=comment)
        path = f"/v1/incidents/{incident_id}/resolve"
        return self._call("POST", path, IncidentInfo, json_body=body)

    def remediation_runs(
        self, *, state: str | None = None, incident: int | None = None, limit: int = 50
    ) -> RunsResponse:
        """`GET /v1/remediation-runs`: newest first."""
        params = _body(state=state, incident=incident, limit=limit)
        return self._call("GET", "/v1/remediation-runs", RunsResponse, params=params)

    def remediation_run(self, run_id: int) -> RunDetail:
        """`GET /v1/remediation-runs/{id}`: the run and its audit steps."""
        return self._call("GET", f"/v1/remediation-runs/{run_id}", RunDetail)

    def remediate(
        self,
        name: str,
        *,
        incident: int | None = None,
        probe: str | None = None,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> RunDetail:
        """`POST /v1/remediations/{name}/run` (waits for the run and its verification)."""
        body = _body(incident=incident, probe=probe, dry_run=dry_run or None, actor=actor)
        path = f"/v1/remediations/{name}/run"
        return self._call("POST", path, RunDetail, json_body=body, timeout=RUN_WAIT_S)

    def run_action(self, run_id: int, action: str, *, actor: str | None = None) -> RunDetail:
        """`POST /v1/remediation-runs/{id}/{action}`: approve, reject, undo, reset-breaker."""
        path = f"/v1/remediation-runs/{run_id}/{action}"
        return self._call("POST", path, RunDetail, json_body=_body(actor=actor), timeout=RUN_WAIT_S)

    def silences(self, *, all: bool = False) -> SilencesResponse:
        """`GET /v1/silences`: those in force, or `all`."""
        return self._call("GET", "/v1/silences", SilencesResponse, params={"all": _flag(all)})

    def silence(
        self,
        matcher: str,
        duration: str,
        reason: str,
        *,
        created_by: str | None = None,
        end_on_resolve: bool = False,
    ) -> SilenceInfo:
        """`POST /v1/silences`."""
        body = _body(
            matcher=matcher,
            duration=duration,
            reason=reason,
            created_by=created_by,
            end_on_resolve=end_on_resolve,
        )
        return self._call("POST", "/v1/silences", SilenceInfo, ok=(201,), json_body=body)

    def unsilence(self, silence_id: int) -> SilenceInfo:
        """`DELETE /v1/silences/{id}`."""
        return self._call("DELETE", f"/v1/silences/{silence_id}", SilenceInfo)

    def reports(self, *, name: str | None = None, limit: int = 50) -> ReportsResponse:
        """`GET /v1/reports`: generated reports, newest first, and the configured ones."""
        params: dict[str, Any] = {"limit": limit} | ({"name": name} if name else {})
        return self._call("GET", "/v1/reports", ReportsResponse, params=params)

    def report(self, name: str, *, period: str | None = None, send: bool = False) -> ReportInfo:
        """`POST /v1/reports/{name}`: generate it now (and queue its emails with `send`)."""
        body = _body(period=period, send=send)
        path = f"/v1/reports/{_segment(name)}"
        return self._call("POST", path, ReportInfo, ok=(201,), json_body=body, timeout=600)

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

    async def incidents(self, *, all: bool = False, limit: int = 200) -> IncidentsResponse:
        """`GET /v1/incidents`: open and acknowledged ones, or `all`."""
        params = {"all": _flag(all), "limit": limit}
        return await self._call("GET", "/v1/incidents", IncidentsResponse, params=params)

    async def incident(self, incident_id: int) -> IncidentDetail:
        """`GET /v1/incidents/{id}`."""
        return await self._call("GET", f"/v1/incidents/{incident_id}", IncidentDetail)

    async def acknowledge(
        self,
        incident_id: int,
        *,
        actor: str | None = None,
        comment: str | None = None,
        expires_in: str | None = None,
    ) -> IncidentInfo:
        """`POST /v1/incidents/{id}/ack`."""
        body = _body(actor=actor, comment=comment, expires_in=expires_in)
        path = f"/v1/incidents/{incident_id}/ack"
        return await self._call("POST", path, IncidentInfo, json_body=body)

    async def resolve(
        self, incident_id: int, *, actor: str | None = None, comment: str | None = None
    ) -> IncidentInfo:
        """`POST /v1/incidents/{id}/resolve`."""
        body = _body(actor=actor, comment=comment)
        path = f"/v1/incidents/{incident_id}/resolve"
        return await self._call("POST", path, IncidentInfo, json_body=body)

    async def silences(self, *, all: bool = False) -> SilencesResponse:
        """`GET /v1/silences`."""
        params = {"all": _flag(all)}
        return await self._call("GET", "/v1/silences", SilencesResponse, params=params)

    async def silence(
        self,
        matcher: str,
        duration: str,
        reason: str,
        *,
        created_by: str | None = None,
        end_on_resolve: bool = False,
    ) -> SilenceInfo:
        """`POST /v1/silences`."""
        body = _body(
            matcher=matcher,
            duration=duration,
            reason=reason,
            created_by=created_by,
            end_on_resolve=end_on_resolve,
        )
        return await self._call("POST", "/v1/silences", SilenceInfo, ok=(201,), json_body=body)

    async def unsilence(self, silence_id: int) -> SilenceInfo:
        """`DELETE /v1/silences/{id}`."""
        return await self._call("DELETE", f"/v1/silences/{silence_id}", SilenceInfo)

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
        ok: tuple[int, ...] = (200,),
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> M:
        try:
            response = await self._http.request(method, path, params=params, json=json_body)
        except httpx.TransportError as exc:
            raise _unavailable(self.endpoint, exc) from None
        if response.status_code not in ok:
            _raise_for(response, response.content)
        return model.model_validate_json(response.content)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _body(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left unset (the agent's defaults apply)."""
    return {key: value for key, value in fields.items() if value is not None}


# -- reading the store while the agent is stopped ------------------------------------------


def stored_incidents(
    config: Config, *, all: bool = False, limit: int = 200, now: datetime | None = None
) -> IncidentsResponse:
    """What `GET /v1/incidents` answers, read from the store (the agent is stopped).

    StoreError when the store cannot be opened (missing, in use, older schema).
    """
    from agent import store_incidents as sql

    with Store.open(config.agent.store_path, read_only=True) as store:
        rows = store.run_read_only(lambda con: sql.listing(con, include_resolved=all, limit=limit))
        silences = store.run_read_only(lambda con: sql.silences(con))
    when = now or utcnow()
    return IncidentsResponse(
        incidents=[IncidentInfo.of(i, _suppressed_by(i, silences, config, when)) for i in rows]
    )


def stored_incident(config: Config, incident_id: int) -> IncidentDetail | None:
    """What `GET /v1/incidents/{id}` answers, read from the store; None when unknown."""
    from agent import store_incidents as sql

    with Store.open(config.agent.store_path, read_only=True) as store:
        incident = store.run_read_only(lambda con: sql.get(con, incident_id))
        if incident is None:
            return None
        events = store.run_read_only(lambda con: sql.events(con, incident_id))
        notices = store.run_read_only(lambda con: sql.notifications(con, incident_id))
        silences = store.run_read_only(lambda con: sql.silences(con))
    return IncidentDetail(
        incident=IncidentInfo.of(incident, _suppressed_by(incident, silences, config, utcnow())),
        events=[IncidentEvent.of(t) for t in events],
        notifications=[NotificationInfo.of_row(row) for row in notices],
    )


def stored_silences(config: Config, *, all: bool = False) -> SilencesResponse:
    """What `GET /v1/silences` answers, read from the store."""
    from agent import store_incidents as sql

    with Store.open(config.agent.store_path, read_only=True) as store:
        silences = store.run_read_only(lambda con: sql.silences(con))
    now = utcnow()
    return SilencesResponse(
        silences=[SilenceInfo.of(s, now) for s in silences if all or s.active_at(now)]
    )


def stored_remediation_totals(config: Config) -> dict[str, int]:
    """The remediation counts of `/v1/status`, read from the store."""
    from datetime import timedelta

    from agent import store_remediations as sql

    since = utcnow() - timedelta(hours=24)
    with Store.open(config.agent.store_path, read_only=True) as store:
        return store.run_read_only(lambda con: sql.totals(con, since))


def stored_overview(config: Config) -> tuple[IncidentCounts, OutboxTotals]:
    """The incident and outbox counts of `/v1/status`, read from the store."""
    from agent import store_incidents as sql

    with Store.open(config.agent.store_path, read_only=True) as store:
        active = store.run_read_only(sql.active)
        silences = store.run_read_only(lambda con: sql.silences(con))
        counts = store.run_read_only(sql.counts)
    now = utcnow()
    incidents = IncidentCounts.of(
        active,
        lambda incident: _suppressed_by(incident, silences, config, now),
        silences=sum(s.active_at(now) for s in silences),
    )
    return incidents, OutboxTotals(pending=counts.pending, dead=counts.dead, sent=counts.sent)


def _suppressed_by(
    incident: Incident, silences: list[Silence], config: Config, now: datetime
) -> str | None:
    """The engine's `suppressed_by`, from stored silences and the config's windows."""
    for silence in silences:
        covers = silence.matcher.matches(incident.probe, incident.labels, incident.severity)
        if silence.active_at(now) and covers:
            return f"silence #{silence.id} ({silence.reason})"
    for window in config.maintenance:
        matcher = Matcher.parse(window.match)
        if window.active_at(now) and matcher.matches(
            incident.probe, incident.labels, incident.severity
        ):
            return "maintenance window"
    return None


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


def stored_runs(
    config: Config, *, state: str | None = None, incident: int | None = None, limit: int = 50
) -> RunsResponse:
    """What `GET /v1/remediation-runs` answers, read from the store (the agent is stopped)."""
    from agent import store_remediations as sql

    with Store.open(config.agent.store_path, read_only=True) as store:
        rows = store.run_read_only(
            lambda con: sql.list_runs(con, limit=limit, state=state, incident_id=incident)
        )
    return RunsResponse(runs=[RunInfo.of(r) for r in rows])


def stored_run(config: Config, run_id: int) -> RunDetail | None:
    """What `GET /v1/remediation-runs/{id}` answers, read from the store; None when unknown."""
    from agent import store_remediations as sql

    with Store.open(config.agent.store_path, read_only=True) as store:
        row = store.run_read_only(lambda con: sql.get_run(con, run_id))
        if row is None:
            return None
        steps = store.run_read_only(lambda con: sql.steps(con, run_id))
    return RunDetail(run=RunInfo.of(row), steps=[StepInfo.of(s) for s in steps])
