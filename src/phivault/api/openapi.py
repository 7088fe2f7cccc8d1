"""An OpenAPI 3 description of the FHIR REST API, generated from the CapabilityStatement.

Served at GET /openapi.json (outside the FHIR base path, so without a token, like
`metadata`). It lists every interaction the CapabilityStatement declares for every
resource type, with each type's search parameters, so generic HTTP tooling (clients,
gateways, fuzzers such as schemathesis) can reach the whole API. Bodies are described as
FHIR JSON objects naming their resourceType; FHIR's own validation rules live in the
server, not in this document. Every error answer is an OperationOutcome.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from phivault import __version__
from phivault.fhir import json as fhirjson
from phivault.fhir.capability import capability_statement

FHIR_JSON = "application/fhir+json"
_ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}
_SEARCH_TYPES = {"number": "string", "date": "string", "token": "string", "quantity": "string"}
_OUTCOME = {
    "description": "an OperationOutcome saying what went wrong",
    "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}},
}


def openapi_route(base_path: str) -> Any:
    """The GET /openapi.json handler (the document is built once per base path)."""

    async def serve(request: Request) -> Response:
        return Response(_rendered(base_path), media_type="application/json")

    return serve


@functools.cache
def _rendered(base_path: str) -> bytes:
    return fhirjson.dumps(openapi_document(base_path))


def openapi_document(base_path: str) -> dict[str, Any]:
    base = base_path.rstrip("/")
    statement = capability_statement(base or "/")
    rest = statement["rest"][0]
    paths: dict[str, Any] = {
        f"{base}/metadata": {"get": _op("metadata", "the CapabilityStatement", None)},
        f"{base}/_history": {"get": _op("history-system", "history of every type", None)},
        base or "/": {
            "post": _op(
                "batch-transaction",
                "a batch or transaction Bundle",
                None,
                body="Bundle",
            )
        },
    }
    for resource in rest["resource"]:
        rtype = resource["type"]
        codes = {i["code"] for i in resource.get("interaction", [])}
        params = [_search_param(p) for p in resource.get("searchParam", [])]
        _type_paths(paths, f"{base}/{rtype}", rtype, codes, params)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "phivault FHIR R4 API",
            "version": __version__,
            "description": rest.get("documentation", ""),
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Resource": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {"resourceType": {"type": "string"}, "id": _ID},
                },
                "OperationOutcome": {
                    "type": "object",
                    "required": ["resourceType", "issue"],
                    "properties": {
                        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                        "issue": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                    },
                },
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _type_paths(
    paths: dict[str, Any], path: str, rtype: str, codes: set[str], params: list[dict[str, Any]]
) -> None:
    rid = {"name": "id", "in": "path", "required": True, "schema": _ID}
    vid = {"name": "vid", "in": "path", "required": True, "schema": {"type": "integer"}}
    by_type: dict[str, Any] = {}
    if "search-type" in codes:
        by_type["get"] = _op(f"search-{rtype}", f"search {rtype}", params)
    if "create" in codes:
        by_type["post"] = _op(f"create-{rtype}", f"create a {rtype}", None, body=rtype)
    if by_type:
        paths[path] = by_type
    instance: dict[str, Any] = {}
    if "read" in codes:
        instance["get"] = _op(f"read-{rtype}", f"read a {rtype}", [rid])
    if "update" in codes:
        instance["put"] = _op(f"update-{rtype}", f"update a {rtype}", [rid], body=rtype)
    if "delete" in codes:
        instance["delete"] = _op(f"delete-{rtype}", f"delete a {rtype}", [rid])
    if "patch" in codes:
        instance["patch"] = _op(f"patch-{rtype}", f"JSON Patch a {rtype}", [rid], patch=True)
    if instance:
        paths[f"{path}/{{id}}"] = instance
    if "history-instance" in codes:
        paths[f"{path}/{{id}}/_history"] = {
            "get": _op(f"history-{rtype}", f"history of a {rtype}", [rid])
        }
    if "vread" in codes:
        paths[f"{path}/{{id}}/_history/{{vid}}"] = {
            "get": _op(f"vread-{rtype}", f"a version of a {rtype}", [rid, vid])
        }
    if "history-type" in codes:
        paths[f"{path}/_history"] = {
            "get": _op(f"history-type-{rtype}", f"history of every {rtype}", None)
        }


def _search_param(param: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": param["name"],
        "in": "query",
        "required": False,
        "description": f"FHIR search parameter of type {param.get('type', 'string')}",
        "schema": {"type": _SEARCH_TYPES.get(param.get("type", ""), "string")},
    }


def _op(
    operation_id: str,
    summary: str,
    parameters: list[dict[str, Any]] | None,
    *,
    body: str | None = None,
    patch: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {
            "200": {
                "description": "the resource or Bundle",
                "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}},
            },
            "default": _OUTCOME,
        },
    }
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        schema = {
            "allOf": [
                {"$ref": "#/components/schemas/Resource"},
                {"properties": {"resourceType": {"type": "string", "enum": [body]}}},
            ]
        }
        op["requestBody"] = {"required": True, "content": {FHIR_JSON: {"schema": schema}}}
        op["responses"]["201"] = op["responses"]["200"]
    if patch:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json-patch+json": {
                    "schema": {"type": "array", "items": {"type": "object"}}
                }
            },
        }
    return op
