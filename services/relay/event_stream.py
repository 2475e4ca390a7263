"""A streamed answer written straight to the ASGI server, ended early when the client goes away.

Starlette's StreamingResponse watches for the client leaving with an anyio task group around the
writer, per response: a task group, a cancel scope and a second task before the first byte, and
cancellation of the writer when the client leaves. Measured on a chat completion streamed at one
stream, that and its `send` wrappers were a tenth of what the relay adds to the time to the first
token. Here the writer runs in the request's own task and one plain asyncio task waits for the
client's disconnect, which it reports to the stream's source (`on_disconnect`) instead of
cancelling anyone: the source ends its iteration, the writer returns, nothing is cut mid-write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class EventStream(Response):
    """`chunks` are written as they come (already encoded, e.g. whole server-sent events)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        on_disconnect: Callable[[], None] | None = None,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.chunks = chunks
        self.on_disconnect = on_disconnect
        self.status_code = 200
        self.media_type = media_type or self.media_type
        self.background = None
        self.gone = False
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self.on_disconnect is not None:
            self.on_disconnect()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.chunks:
                if self.gone:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:
            if not self.gone:
                raise
            log.debug("the client left a stream; its source ended with an error", exc_info=True)
        finally:
            watcher.cancel()
            closing = getattr(self.chunks, "aclose", None)
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing()
