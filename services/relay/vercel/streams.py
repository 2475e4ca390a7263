"""Responses in the Vercel AI SDK's wire formats: a run's event stream, or a chat completion's chunks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable

from fastapi import Request
from fastapi.responses import StreamingResponse

from ossabus.contracts.agent import AgentDefinition
from ossabus.relay.errors import ApiError
from ossabus.relay.run_stream import RunStream
from ossabus.relay.vercel.encoders import DONE, HEADERS, KEEP_ALIVE, MEDIA_TYPES, PROTOCOL_NAMES, DataStream, Protocol
from ossabus.relay.vercel.encoders import text as text_bytes
from ossabus.relay.vercel.encoders import ui as ui_bytes
from ossabus.relay.vercel.ui_chunks import Chunk, UIChunks

log = logging.getLogger(__name__)
INTERRUPTED = "the stream was interrupted; reconnect to resume it"


def protocol_for(request: Request, definition: AgentDefinition | None, sdk_generation: int = 5) -> Protocol:
    """`?protocol=` first, then the agent's `extensions.vercel_ai.stream_protocol`, then what the
    client's SDK generation reads. The manifest's `data` means the SDK's own data protocol: the data
    stream for AI SDK 4, the UI message stream for AI SDK 5 and later."""
    asked = request.query_params.get("protocol")
    if asked is not None:
        if asked not in PROTOCOL_NAMES:
            raise ApiError(
                400,
                f"protocol must be one of {', '.join(sorted(PROTOCOL_NAMES))}",
                param="protocol",
                code="invalid_value",
            )
        return PROTOCOL_NAMES[asked]
    configured = definition.streaming.vercel_protocol if definition else None
    if configured == "text":
        return "text"
    if configured == "sse":
        return "ui"
    return "data" if sdk_generation == 4 else "ui"


class Encoder:
    """UI chunks to bytes of one protocol."""

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self.data = DataStream() if protocol == "data" else None

    def __call__(self, chunks: Iterable[Chunk]) -> bytes:
        if self.protocol == "ui":
            return b"".join(ui_bytes(c) for c in chunks)
        if self.data is not None:
            return b"".join(self.data.encode(c) for c in chunks)
        return b"".join(text_bytes(c) for c in chunks)

    def done(self) -> bytes:
        return DONE if self.protocol == "ui" else b""

    def response(self, body: AsyncIterator[bytes]) -> StreamingResponse:
        return StreamingResponse(body, media_type=MEDIA_TYPES[self.protocol], headers=HEADERS[self.protocol])


def run_response(handle: RunStream, protocol: Protocol) -> StreamingResponse:
    """A run's events, as they happen (or replayed), in the protocol asked for. A client that goes
    away only stops this response: the run goes on and its stream stays resumable."""
    encode = Encoder(protocol)

    async def body() -> AsyncIterator[bytes]:
        translator: UIChunks | None = None
        try:
            async for item in handle.events():
                if item is None:
                    if KEEP_ALIVE[protocol]:
                        yield KEEP_ALIVE[protocol]
                    continue
                _, event = item
                translator = translator or UIChunks(message_id=event.run_id)
                if out := encode(translator.feed(event.event, event.data)):
                    yield out
            translator = translator or UIChunks(message_id="")
            if encode.data is not None:
                encode.data.set_usage(translator.usage)
            yield encode(translator.finish())
        except Exception:
            log.exception("run stream broke")
            yield encode([{"type": "error", "errorText": INTERRUPTED}])
        finally:
            await handle.close()
        yield encode.done()

    return encode.response(body())


def text_response(deltas: AsyncIterator[str | Exception], protocol: Protocol, message_id: str) -> StreamingResponse:
    """A single answer's text deltas (useCompletion) in the protocol asked for; an exception in
    the iterator becomes an error chunk."""
    encode = Encoder(protocol)

    async def body() -> AsyncIterator[bytes]:
        yield encode([{"type": "start", "messageId": message_id}, {"type": "start-step"}])
        opened = False
        reason = "stop"
        async for delta in deltas:
            if isinstance(delta, Exception):
                yield encode([{"type": "error", "errorText": str(delta)}])
                reason = "error"
                break
            if not opened:
                opened = True
                yield encode([{"type": "text-start", "id": message_id}])
            yield encode([{"type": "text-delta", "id": message_id, "delta": delta}])
        closing: list[Chunk] = [{"type": "text-end", "id": message_id}] if opened else []
        closing += [{"type": "finish-step"}, {"type": "finish", "finishReason": reason}]
        yield encode(closing)
        yield encode.done()

    return encode.response(body())
