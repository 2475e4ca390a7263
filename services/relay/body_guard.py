"""JSON request bodies checked before any route sees them: UTF-8, depth, lone surrogates.

FastAPI would parse a 50k-deep body into a RecursionError (a 500), and a string holding `\\ud800`
parses fine but fails when it is stored or sent on (a 500 after part of the request was written).
Checking the bytes first makes all three a 400 that names the problem, and nothing is written.
Bodies are already bounded by the framework's size limit, which runs outside this middleware.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ossabus.relay.errors import error_response
from ossabus.runtime.input_guard import InputRejected, check_json_depth, dotted, surrogate_path

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_WITH_BODY = {"POST", "PUT", "PATCH"}


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            media = value.split(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # FastAPI reads a body without a content type as JSON too


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
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        found = problem(body) if body else None
        if found is not None:
            code, text, param = found
            await error_response(400, text, param=param, code=code)(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
