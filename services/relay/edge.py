"""The outermost ASGI layer: a request id on every answer (the caller's `x-request-id`, or a new one),
the framework's own 500s included."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ossabus.contracts.ids import new_id


class EdgeMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope.get("headers") or []:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:200]
        rid = rid or new_id("req")
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                out.append(header)
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, receive, send_with_id)
