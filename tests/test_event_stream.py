"""The relay's streamed answers (relay/event_stream.py) on a real uvicorn server and socket: what is
written arrives as it is written, and a client that leaves ends the stream's source at once."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from ossabus.relay.event_stream import EventStream

pytestmark = pytest.mark.asyncio
FAIL = b"<fail>"


class Source:
    """Chunks handed out one by one when the test says so; records how it ended."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.told_gone = asyncio.Event()
        self.closed = asyncio.Event()

    async def chunks(self):
        try:
            while (chunk := await self.queue.get()) is not None:
                if chunk is FAIL:
                    raise RuntimeError("the source broke")
                yield chunk
        finally:
            self.closed.set()

    def gone(self) -> None:
        self.told_gone.set()
        self.queue.put_nowait(None)


@pytest.fixture
async def served():
    sources: list[Source] = []

    async def endpoint(_request):
        source = Source()
        sources.append(source)
        return EventStream(source.chunks(), on_disconnect=source.gone)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=[Route("/s", endpoint)]), log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/s", sources
    server.should_exit = True
    await task
    sock.close()


async def test_each_chunk_arrives_when_it_is_written_and_the_stream_ends_with_its_source(served):
    url, sources = served
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        source = sources[0]
        for n in range(3):
            source.queue.put_nowait(f"data: {n}\n\n".encode())
            assert await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5) == f"data: {n}\n\n".encode()
        source.queue.put_nowait(None)
        assert await asyncio.wait_for(response.content.read(), 5) == b""  # the chunked body ended cleanly
    assert source.closed.is_set()
    assert not source.told_gone.is_set()


async def test_a_client_that_leaves_ends_the_source_while_it_waits(served):
    url, sources = served
    async with aiohttp.ClientSession() as session:
        response = await session.get(url)
        sources[0].queue.put_nowait(b"data: first\n\n")
        assert await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5) == b"data: first\n\n"
        response.close()  # the connection goes while the source waits for its next chunk
    source = sources[0]
    await asyncio.wait_for(source.told_gone.wait(), 5)
    await asyncio.wait_for(source.closed.wait(), 5)


async def test_a_source_that_fails_while_the_client_is_there_breaks_the_body_instead_of_ending_it(served):
    url, sources = served
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        sources[0].queue.put_nowait(b"data: one\n\n")
        assert await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5) == b"data: one\n\n"
        sources[0].queue.put_nowait(FAIL)
        with pytest.raises(aiohttp.ClientPayloadError):  # not a clean end the client could take as complete
            await asyncio.wait_for(response.content.read(), 5)
