"""The outermost ASGI layer: a request id on every answer, and OpenAI-shaped 413s.

It wraps the whole FastAPI application because the framework's body-size limit answers from a
middleware outside every user middleware, in plain text; only a wrapper can reshape that answer.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ossabus.contracts.ids import new_id

TOO_LARGE = {
    "error": {
        "message": "request body is too large",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }
}


class EdgeMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:200] or new_id("req")
        scope.setdefault("state", {})["request_id"] = rid
        swallow_body = False

        async def send_wrapped(message: Message) -> None:
            nonlocal swallow_body
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                out.append((b"x-request-id", rid.encode("latin-1")))
                content_type = dict(out).get(b"content-type", b"")
                if message["status"] == 413 and content_type.startswith(b"text/plain"):
                    body = json.dumps(TOO_LARGE).encode()
                    out = [(k, v) for k, v in out if k.lower() not in (b"content-type", b"content-length")]
                    out += [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ]
                    await send({**message, "headers": out})
                    await send({"type": "http.response.body", "body": body})
                    swallow_body = True
                    return
                message = {**message, "headers": out}
            elif swallow_body:
                return
            await send(message)

        await self.app(scope, receive, send_wrapped)
