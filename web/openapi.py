"""The OpenAPI 3.1 document of the API, built from the route table (served at /api/openapi.json)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from schemas.changes import FEEDBACK_TARGETS

_PARAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "since": ("Start of the range: RFC 3339 or epoch ms", {"type": "string"}),
    "until": ("End of the range (default: the newest data)", {"type": "string"}),
    "range": ("Length of the range when since is absent: 900, 15m, 6h, 7d (default 1h)",
              {"type": "string", "pattern": r"^\d+[smhd]?$"}),
    "limit": ("Page size", {"type": "integer", "minimum": 1, "maximum": 1000,
                            "default": 100}),
    "offset": ("Rows to skip; the response's next_offset gives the next page",
               {"type": "integer", "minimum": 0, "maximum": 100000, "default": 0}),
    "service": ("Service name", {"type": "string", "maxLength": 200}),
    "level": ("Log level", {"type": "string", "enum": ["DEBUG", "INFO", "WARN", "WARNING",
                                                       "ERROR", "CRITICAL", "FATAL"]}),
    "q": ("Text the message contains (case-insensitive)", {"type": "string",
                                                           "maxLength": 200}),
    "group": ("'template' groups the matching lines by template",
              {"type": "string", "enum": ["template"]}),
    "state": ("Alert state", {"type": "string",
                              "enum": ["firing", "acknowledged", "resolved"]}),
    "target_kind": ("Feedback target", {"type": "string",
                                        "enum": list(FEEDBACK_TARGETS)}),
    "at": ("When (default now)", {"type": "string"}),
    "all": ("1 to include expired silences", {"type": "string", "enum": ["0", "1"]}),
}
_ERROR = {"description": "JSON error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}


def _parameter(name: str, in_path: bool = False) -> dict[str, Any]:
    text, schema = _PARAMS.get(name, (name.replace("_", " "), {"type": "string",
                                                               "maxLength": 200}))
    return {"name": name, "in": "path" if in_path else "query", "required": in_path,
            "description": text, "schema": schema}


def openapi_document(routes: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """OpenAPI for ``routes`` ((method, path, handler, summary, params, role) tuples)."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, _handler, summary, names, role in routes:
        in_path = re.findall(r"{(\w+)}", path)
        op: dict[str, Any] = {
            "summary": summary,
            "description": f"Needs a {role} token" + (
                " only when LOGWARDEN_WEB_READ_REQUIRES_TOKEN is on." if role == "viewer"
                else "."),
            "parameters": [_parameter(n, True) for n in in_path]
            + [_parameter(n) for n in names],
            "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                          "400": _ERROR, "401": _ERROR, "403": _ERROR, "500": _ERROR},
        }
        if role != "viewer":
            op["security"] = [{"bearer": []}]
        if method == "POST":
            op["requestBody"] = {"required": True, "content": {"application/json": {}}}
            op["responses"]["202"] = {"description": "Accepted"}
        paths.setdefault(path, {})[method.lower()] = op
    paths["/api/query"] = {"post": {
        "summary": "One read-only SQL statement (SELECT/WITH/SHOW/DESCRIBE/EXPLAIN)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["sql"], "properties": {
                "sql": {"type": "string"}, "params": {"type": "object"},
                "format": {"enum": ["json", "csv", "jsonl"]},
                "limit": {"type": "integer", "minimum": 1}}}}}},
        "security": [{"bearer": []}],  # a responder token (LOGWARDEN_WEB_QUERY_ROLE)
        "responses": {"200": {"description": "Rows"}, "400": _ERROR, "401": _ERROR,
                      "403": _ERROR, "408": _ERROR, "415": _ERROR, "429": _ERROR}}}
    paths["/api/health"] = {"get": {"summary": "Pipeline health (503 when down)",
                                    "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "logwarden API", "version": "1",
                 "description": "Lists are paginated with limit (at most 1000) and offset; "
                                "errors are {\"error\": {\"code\", \"message\"}}."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {
                "type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}}},
        },
    }
