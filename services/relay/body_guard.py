"""Request bodies bounded and checked before any route sees them, in one ASGI layer.

Size: every body is cut off at its path's limit (`--max-body-bytes` by default; uploads and
manifests have their own), as a 413 in OpenAI's shape. FastAPI's own limit would do the counting
too, but as four layers wrapping every request and every `send` of every response, a measurable
part of a streamed completion's time to first token; one layer that also reads JSON does both.

JSON: FastAPI would parse a 50k-deep body into a RecursionError (a 500), and a string holding
`\\ud800` parses fine but fails when it is stored or sent on (a 500 after part of the request was
written). Checking the bytes first makes all three a 400 that names the problem, and nothing is
written. Other bodies (multipart uploads, YAML manifests) stream through, counted as they come.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ossabus.relay.errors import error_response
from ossabus.runtime.input_guard import InputRejected, check_json_depth, dotted, surrogate_path

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_WITH_BODY = {"POST", "PUT", "PATCH"}
TOO_LARGE = "request body is too large"


def _body_headers(scope: Scope) -> tuple[bool, int]:
    """(whether the body is JSON, its declared length or 0), in one pass over the headers."""
    is_json, length = True, 0  # FastAPI reads a body without a content type as JSON too
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            media = value.split(b";")[0].strip().lower()
            is_json = media == b"application/json" or media.endswith(b"+json")
        elif name == b"content-length":
            with contextlib.suppress(ValueError):  # the server refuses a malformed length itself
                length = int(value)
    return is_json, length


def problem(body: bytes) -> tuple[str, str, str | None] | None:
    """(code, message, param) of what is wrong with a JSON body, or None."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "invalid_encoding", f"the request body is not valid UTF-8 (byte {exc.start})", None
    try:
        check_json_depth(body)
    except InputRejected as rejected:
        return "too_deep", rejected.message, None
    if _SURROGATE_ESCAPE.search(body):
        try:
            path = surrogate_path(json.loads(body))
        except ValueError:
            return None  # not JSON at all: the route's own parse answers that
        if path is not None:
            # a key can be the culprit: written as its escape, so that the answer itself is valid text
            param = dotted(path).encode("utf-8", "backslashreplace").decode("utf-8") or None
            where = f"`{param}`" if param else "the body"
            return "invalid_text", f"{where} holds a lone surrogate (\\\\ud800-\\\\udfff), which is not text", param
    return None


class BodyGuard:
    """`limits` maps a path (and everything under it) to its own largest body, over `max_body_size`."""

    def __init__(self, app: ASGIApp, max_body_size: int, limits: Mapping[str, int] | None = None):
        self.app = app
        self.max_body_size = max_body_size
        self.limits = sorted((limits or {}).items(), key=lambda item: -len(item[0]))  # the longest path wins

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        is_json, declared = _body_headers(scope)
        if declared > limit:
            await error_response(413, TOO_LARGE)(scope, receive, send)
            return
        if not is_json:
            await self.app(scope, _counted(receive, limit), send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await error_response(413, TOO_LARGE)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        found = problem(body) if body else None
        if found is not None:
            code, text, param = found
            await error_response(400, text, param=param, code=code)(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _counted(receive: Receive, limit: int) -> Receive:
    """`receive` for a streamed body: a 413 (through the error handlers) once it passes `limit`.

    An HTTPException, because FastAPI turns anything else raised while it reads a form into a 400."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise HTTPException(413, TOO_LARGE)
        return message

    return counted


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
