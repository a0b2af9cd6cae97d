"""The OpenAPI 3.1 document, derived from the route table and its pydantic models.

OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic emits: the models
the handlers parse and return are the document, so the two cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from agent import __version__
from agent.api.app import JSON, Route
from agent.api.models import ErrorBody

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{(\w+)\}")


def build_openapi(routes: Sequence[Route], *, public: set[tuple[str, str]]) -> dict[str, Any]:
    """The document for `routes`; `public` holds the (method, path) pairs needing no token."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for route in routes:
        if route.response is not None:
            wanted.append((route.response, "serialization"))
        if route.body is not None:
            wanted.append((route.body, "validation"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, refs, (route.method, route.path) in public)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "opsagent control API",
            "version": __version__,
            "description": "Local control API of a running opsagent. Every request needs "
            "`Authorization: Bearer <token>` (the token is in `<data_dir>/api.token`) "
            "unless the operation says otherwise. Errors are JSON: "
            '`{"error": ..., "field": ..., "problems": [...]}`.',
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(route: Route, refs: dict[Any, Any], public: bool) -> dict[str, Any]:
    error_ref = refs[(ErrorBody, "serialization")]
    if route.response is not None:
        ok_content = {JSON: {"schema": refs[(route.response, "serialization")]}}
    elif route.media_type == JSON:
        ok_content = {JSON: {"schema": {"type": "object"}}}
    else:
        ok_content = {route.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {
        str(route.status): {"description": _reason(route.status), "content": ok_content}
    }
    for status in route.also:
        responses[str(status)] = {"description": _reason(status), "content": ok_content}
    errors = set(route.errors)
    if not public:
        errors.add(401)
    if route.body is not None or route.query is not None or route.path_model is not None:
        errors.add(422)
    for status in sorted(errors):
        responses[str(status)] = {
            "description": _reason(status),
            "content": {JSON: {"schema": error_ref}},
        }
    operation: dict[str, Any] = {
        "operationId": getattr(route.handler, "__name__", route.path),
        "summary": route.summary,
        "tags": [route.tag],
        "responses": responses,
    }
    if route.description:
        operation["description"] = route.description
    if public:
        operation["security"] = []
    typed: dict[str, Any] = (
        route.path_model.model_json_schema(ref_template=_REF).get("properties", {})
        if route.path_model is not None
        else {}
    )
    parameters = []
    for name in _PATH_PARAM.findall(route.path):
        schema = dict(typed.get(name, {"type": "string", "minLength": 1}))
        description = schema.pop("description", "")
        schema.pop("title", None)
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": route.path_params.get(name, description),
                "schema": schema,
            }
        )
    if route.query is not None:
        schema = route.query.model_json_schema(ref_template=_REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            description = prop.pop("description", "")
            prop.pop("title", None)
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "description": description,
                    "schema": prop,
                }
            )
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        # A body whose fields are all optional may be left out: it means `{}`.
        needed = bool(route.body.model_json_schema().get("required"))
        operation["requestBody"] = {
            "required": needed,
            "content": {JSON: {"schema": refs[(route.body, "validation")]}},
        }
    return operation


def _reason(status: int) -> str:
    return HTTPStatus(status).phrase
