"""The relay's own OpenAPI document (`/openapi.json`), saying what the API really answers.

FastAPI documents a 422 that the relay never sends (validation errors are OpenAI's 400s) and only
JSON bodies. Clients and fuzzers read the document, so it lists every error as OpenAI's error object
(4XX/5XX), the 201 and 204 answers, and the other media types routes stream or serve (SSE, the
Vercel text stream, YAML, Prometheus text). `tests/test_fuzz_openapi.py` holds it to that.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

SSE, TEXT, YAML = "text/event-stream", "text/plain", "application/yaml"
RUN_STREAMS = (SSE,)  # `stream: true` on run creation and tool outputs
# Media types besides JSON that a successful answer may have, by path (and method).
OTHER_MEDIA: dict[tuple[str, str], tuple[str, ...]] = {
    ("get", "/asyncapi"): (YAML,),
    ("get", "/asyncapi.yaml"): (YAML,),
    ("get", "/v1/ossa/manifests/{name}"): (YAML,),
    ("get", "/metrics"): (TEXT,),
    ("post", "/v1/chat/completions"): (SSE,),
    ("post", "/v1/threads/runs"): RUN_STREAMS,
    ("post", "/v1/threads/{thread_id}/runs"): RUN_STREAMS,
    ("post", "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"): RUN_STREAMS,
    ("post", "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_approvals"): RUN_STREAMS,
    ("get", "/v1/threads/{thread_id}/runs/{run_id}/events"): (SSE,),
    ("post", "/api/chat"): (SSE, TEXT),
    ("get", "/api/chat/{chat_id}/stream"): (SSE, TEXT),
    ("post", "/api/completion"): (SSE, TEXT),
}
# Answers with no body besides the usual 2XX.
NO_CONTENT = {("get", "/api/chat/{chat_id}/stream")}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error = {
        "description": "An error in OpenAI's shape",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, answer in responses.items():
                if status.startswith("2"):
                    content = answer.setdefault("content", {"application/json": {"schema": {}}})
                    for media in OTHER_MEDIA.get((method, path), ()):
                        content.setdefault(media, {"schema": {}})
            if (method, path) in NO_CONTENT:
                responses["204"] = {"description": "Nothing to stream"}
            responses["4XX"] = {**error, "description": "The request cannot be served as it is"}
            responses["5XX"] = {**error, "description": "ossabus or the model provider failed"}
    doc.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    doc.get("components", {}).get("schemas", {}).pop("ValidationError", None)
    return doc
