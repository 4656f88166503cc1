"""The service's OpenAPI document, corrected to tell the truth about what the server answers.

BentoML generates the document from the endpoint signatures; `truthful_spec` fixes what it gets
wrong or leaves out for this service:

- error bodies: BentoML declares ``detail`` a string, but a 400 from request validation has
  ``detail`` as a list of ``{loc, msg, type}`` entries; the admin routes (FastAPI) answer
  ``{"detail": "..."}``. One `ERROR_SCHEMA` covers every error body the server sends;
- the answers `serving.guard` gives before a handler runs (401, 403, 413, 415, 429 with
  ``Retry-After``) and 503 (the service is not ready, or the feedback store is unavailable);
- the bearer-key security scheme, with each operation's scope (`serving.auth.ROUTE_SCOPES`) in
  its description, and no security on the open routes;
- request bodies with a required field are marked required;
- OpenAPI 3.0 has no ``null`` type: a value that may be null (pydantic's ``anyOf [X, null]``,
  or a property whose default is null) is declared ``nullable``, so a client may send and must
  expect null there;
- ``format: date-time`` is dropped: RFC 3339 demands an offset, but the timestamps the service
  returns are naive UTC (``2026-12-01T00:00:00``) and requests may send either.
"""

from __future__ import annotations

import copy
from typing import Any

from serving.auth import ROUTE_SCOPES

ERROR_REF = "#/components/schemas/Error"
FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "FieldError",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {
            "type": "array",
            "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "description": "Where the problem is: field names and list positions",
        },
        "msg": {"type": "string"},
        "type": {"type": "string"},
        "url": {"type": "string"},
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "description": "Every error body: a message, and for a bad request the fields at fault",
    "properties": {
        "error": {"type": "string", "description": "What went wrong"},
        "detail": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
            ]
        },
    },
}
GUARD_RESPONSES: dict[str, str] = {
    "400": "Bad Request: a field breaks the schema or the data contract (named in detail)",
    "401": "Missing or unknown API key",
    "403": "The key's scope does not include this route",
    "404": "Not Found",
    "413": "Request body over REBUY_MAX_BODY_BYTES",
    "415": "Request body not application/json",
    "429": "Rate limit of the key, or the reload cool-down; retry after Retry-After seconds",
    "500": "Internal Server Error (never on purpose: report it)",
    "503": "Service not ready, or a store it writes to is unavailable",
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


def truthful_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A corrected copy of BentoML's OpenAPI document `spec` (``Service.openapi_spec.asdict()``).

    Parameters
    ----------
    spec
        The document BentoML generates; not modified.

    Returns
    -------
    dict
        The same document with the corrections of the module docstring.
    """
    spec = _openapi30(copy.deepcopy(spec))
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["FieldError"] = FIELD_ERROR_SCHEMA
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"}
    }
    for path, item in spec.get("paths", {}).items():
        scope = ROUTE_SCOPES.get(path)
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = {str(code): answer for code, answer in operation["responses"].items()}
            has_body = method.lower() in ("post", "put", "patch")
            for code, description in GUARD_RESPONSES.items():
                if code in ("401", "403") and scope is None:
                    continue
                if code in ("413", "415") and not has_body:
                    continue
                answer: dict[str, Any] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
                }
                if code == "429":
                    answer["headers"] = RETRY_AFTER
                if code in responses and code.startswith("2"):
                    continue
                responses[code] = answer
            operation["responses"] = responses
            if scope is None:
                operation["security"] = []
            else:
                operation["security"] = [{"bearer": []}]
                operation["description"] = (operation.get("description") or "") + f" Scope: {scope}."
            body = operation.get("requestBody")
            if body is not None:
                body_schema = body.get("content", {}).get("application/json", {}).get("schema", {})
                if _required_fields(body_schema, schemas):
                    body["required"] = True
    return spec


def _required_fields(schema: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = schemas.get(ref.rsplit("/", 1)[-1], {})
    return list(schema.get("required", []))


def _openapi30(node: Any) -> Any:
    """Nullable values as OpenAPI 3.0 says them, and no ``date-time`` format, throughout `node`."""
    if isinstance(node, list):
        return [_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _openapi30(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        node.pop("anyOf")
        if len(rest) == 1:
            node = {**rest[0], **node}
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    if "default" in node and node["default"] is None:
        node["nullable"] = True
    if node.get("format") == "date-time":
        node.pop("format")
        node["description"] = (node.get("description", "") + " (ISO 8601; UTC when without offset)").strip()
    return node
