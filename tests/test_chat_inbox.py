"""The relay's one wildcard subscription for every chat stream routes each chunk to its own stream,
in order, and forgets a stream once it is closed or dropped. Real nats-server."""

import asyncio
import gc

import nats
import pytest

from ossabus.relay.chat_inbox import inbox_of


@pytest.fixture
async def nc(nats_url):
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def test_each_stream_gets_its_own_chunks_in_order(nc):
    inbox = inbox_of(nc)
    assert inbox_of(nc) is inbox  # one per connection
    first, second = await inbox.open(), await inbox.open()
    assert first.subject != second.subject
    for i in range(50):
        await nc.publish(first.subject, f"a{i}".encode())
        await nc.publish(second.subject, f"b{i}".encode())
    assert [(await first.next(5)).data for _ in range(50)] == [f"a{i}".encode() for i in range(50)]
    assert [(await second.next(5)).data for _ in range(50)] == [f"b{i}".encode() for i in range(50)]
    with pytest.raises(TimeoutError):
        await first.next(0.2)
    first.close()
    second.close()


async def test_a_closed_or_dropped_stream_is_forgotten_and_its_late_chunks_dropped(nc):
    inbox = inbox_of(nc)
    before = inbox.open_streams
    closed, dropped = await inbox.open(), await inbox.open()
    assert inbox.open_streams == before + 2
    closed.close()
    await nc.publish(closed.subject, b"late")
    await nc.flush()
    del dropped  # a client that left before its stream was read
    gc.collect()
    assert inbox.open_streams == before
    survivor = await inbox.open()
    await nc.publish(survivor.subject, b"mine")
    assert (await survivor.next(5)).data == b"mine"
    survivor.close()


async def test_no_executor_is_told_to_the_stream_by_the_server(nc):
    stream = await inbox_of(nc).open()
    await nc.publish("nobody.serves.this", b"{}", reply=stream.subject, headers={"x": "1"})
    answer = await asyncio.wait_for(stream.next(5), 6)
    assert answer.headers.get("Status") == "503"
    stream.close()
