"""The control API's machinery: a typed route table served by aiohttp.web.

Adding an endpoint is one handler and one `Route` line (see `agent.api.routes`): the
route's models drive request parsing (422 naming the field), response serialization and
the OpenAPI document. Every request needs `Authorization: Bearer <token>` except the
routes marked public; every error is JSON (`ErrorBody`), never an HTML page, and bad
input is always a 4xx.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from agent.api.auth import bearer_matches
from agent.api.models import ErrorBody, PathParams, QueryParams, RequestBody
from agent.errors import StoreError

if TYPE_CHECKING:
    from agent.daemon import Agent

log = logging.getLogger(__name__)

B = TypeVar("B", bound=BaseModel)
Auth = Literal["token", "public", "metrics"]
JSON = "application/json"


class ApiError(Exception):
    """Raised by a handler to answer with an `ErrorBody` and this status."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        field: str | None = None,
        problems: Sequence[str] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.body = ErrorBody(error=error, field=field, problems=list(problems))
        self.headers = headers or {}


@dataclass(frozen=True)
class Reply:
    """A handler's answer with a status other than the route's usual one."""

    model: BaseModel
    status: int


@dataclass
class Call:
    """One request, parsed: what a handler gets."""

    agent: Agent
    request: web.Request
    body: BaseModel | None = None
    query: BaseModel | None = None
    params: BaseModel | None = None

    def path(self, name: str) -> str:
        """A path parameter, e.g. `{name}`, as the raw string."""
        return self.request.match_info[name]

    def path_as(self, model: type[B]) -> B:
        """The parsed path parameters, typed (the route declared `path_model=model`)."""
        assert isinstance(self.params, model), f"route declares no path model {model.__name__}"
        return self.params

    def body_as(self, model: type[B]) -> B:
        """The parsed body, typed (the route declared `body=model`)."""
        assert isinstance(self.body, model), f"route declares no body {model.__name__}"
        return self.body

    def query_as(self, model: type[B]) -> B:
        """The parsed query string, typed (the route declared `query=model`)."""
        assert isinstance(self.query, model), f"route declares no query {model.__name__}"
        return self.query


Handler = Callable[[Call], Awaitable[BaseModel | Reply | web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One endpoint: how it is called, what it answers, and who may call it."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None = None  # None: `media_type` content, not a model
    body: type[RequestBody] | None = None
    query: type[QueryParams] | None = None
    path_model: type[PathParams] | None = None  # typed path parameters (else strings)
    errors: tuple[int, ...] = ()  # statuses answered with an ErrorBody, besides 401/422
    also: tuple[int, ...] = ()  # other statuses answered with the response model
    auth: Auth = "token"  # "metrics": public when agent.api.metrics_public is set
    media_type: str = JSON
    tag: str = "agent"
    description: str = ""
    status: int = 200
    path_params: dict[str, str] = field(default_factory=dict)  # name -> description


AGENT: web.AppKey[Agent] = web.AppKey("agent")
TOKEN: web.AppKey[str] = web.AppKey("token", str)
ROUTES: web.AppKey[tuple[Route, ...]] = web.AppKey("routes")


def build_app(agent: Agent, token: str, routes: Sequence[Route]) -> web.Application:
    """The aiohttp application serving `routes` for `agent`."""
    app = web.Application(middlewares=[_errors])
    app[AGENT] = agent
    app[TOKEN] = token
    app[ROUTES] = tuple(routes)
    for route in routes:
        # add_route, not add_get: no implicit HEAD that the OpenAPI document does not list.
        app.router.add_route(route.method, route.path, _endpoint(route))
    return app


def is_public(route: Route, agent: Agent) -> bool:
    """True when `route` answers without the token under the config in force."""
    if route.auth == "metrics":
        return agent.config.agent.api.metrics_public
    return route.auth == "public"


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    """A pydantic model as a JSON response."""
    return web.Response(
        body=model.model_dump_json().encode(),
        status=status,
        content_type=JSON,
        charset="utf-8",
    )


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        agent = request.app[AGENT]
        if not is_public(route, agent):
            _authorize(request)
        params = _parse_path(route.path_model, request) if route.path_model else None
        query = _parse_query(route.query, request) if route.query else None
        body = await _parse_body(route.body, request) if route.body else None
        out = await route.handler(Call(agent, request, body, query, params))
        if isinstance(out, web.StreamResponse):
            return out
        if isinstance(out, Reply):
            return json_response(out.model, out.status)
        return json_response(out, route.status)

    handle.__name__ = getattr(route.handler, "__name__", "handle")
    return handle


def _authorize(request: web.Request) -> None:
    if not bearer_matches(request.headers.get("Authorization"), request.app[TOKEN]):
        raise ApiError(
            401,
            "missing or invalid token: send 'Authorization: Bearer <token>' "
            "with the token from <data_dir>/api.token",
            headers={"WWW-Authenticate": 'Bearer realm="opsagent"'},
        )


def _parse_path(model: type[PathParams], request: web.Request) -> BaseModel:
    try:
        return model.model_validate(dict(request.match_info))
    except ValidationError as exc:
        raise _invalid(exc, "path parameter") from None


def _parse_query(model: type[QueryParams], request: web.Request) -> BaseModel:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise _invalid(exc, "query parameter") from None


async def _parse_body(model: type[RequestBody], request: web.Request) -> BaseModel:
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise _invalid(exc, "body") from None


def _invalid(exc: ValidationError, where: str) -> ApiError:
    """422 naming the first field at fault, with every problem listed."""
    problems: list[str] = []
    first_field: str | None = None
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "json_invalid":
            message = f"the {where} is not valid JSON: {err.get('ctx', {}).get('error', message)}"
        elif err["type"] == "model_type":
            message = f"the {where} must be a JSON object"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{loc}: {message}" if loc else message)
        if first_field is None and loc:
            first_field = loc
    return ApiError(422, problems[0], field=first_field, problems=problems)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure as a JSON `ErrorBody`; unknown paths need the token too (no probing)."""
    try:
        if request.match_info.http_exception is not None:
            _authorize(request)  # 401 before 404/405: paths reveal nothing without the token
        return await handler(request)
    except ApiError as exc:
        response = json_response(exc.body, exc.status)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:  # aiohttp's own: 404, 405, 413, ...
        if exc.status < 400:
            raise
        response = json_response(ErrorBody(error=exc.reason.lower()), exc.status)
        for name, value in exc.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response
    except StoreError as exc:
        return json_response(ErrorBody(error=f"the store is unavailable: {exc}"), 503)
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return json_response(ErrorBody(error="internal error (logged by the agent)"), 500)
