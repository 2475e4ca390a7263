"""The relay's one wildcard subscription for every chat stream routes each chunk to its own stream,
in order, and forgets a stream once it is closed or dropped. Real nats-server."""

import asyncio
import gc

import pytest

from ossabus.relay.chat_inbox import Abandoned, inbox_of


async def test_each_stream_gets_its_own_chunks_in_order(nats_client):
    inbox = inbox_of(nats_client)
    assert inbox_of(nats_client) is inbox  # one per connection
    first, second = await inbox.open(), await inbox.open()
    assert first.subject != second.subject
    for i in range(50):
        await nats_client.publish(first.subject, f"a{i}".encode())
        await nats_client.publish(second.subject, f"b{i}".encode())
    assert [(await first.next(5)).data for _ in range(50)] == [f"a{i}".encode() for i in range(50)]
    assert [(await second.next(5)).data for _ in range(50)] == [f"b{i}".encode() for i in range(50)]
    with pytest.raises(TimeoutError):
        await first.next(0.2)
    first.close()
    second.close()


async def test_a_closed_or_dropped_stream_is_forgotten_and_its_late_chunks_dropped(nats_client):
    inbox = inbox_of(nats_client)
    before = inbox.open_streams
    closed, dropped = await inbox.open(), await inbox.open()
    assert inbox.open_streams == before + 2
    closed.close()
    await nats_client.publish(closed.subject, b"late")
    await nats_client.flush()
    del dropped  # a client that left before its stream was read
    gc.collect()
    assert inbox.open_streams == before
    survivor = await inbox.open()
    await nats_client.publish(survivor.subject, b"mine")
    assert (await survivor.next(5)).data == b"mine"
    survivor.close()


async def test_no_executor_is_told_to_the_stream_by_the_server(nats_client):
    stream = await inbox_of(nats_client).open()
    await nats_client.publish("nobody.serves.this", b"{}", reply=stream.subject, headers={"x": "1"})
    answer = await asyncio.wait_for(stream.next(5), 6)
    assert answer.headers.get("Status") == "503"
    stream.close()


async def test_abandoning_a_stream_ends_its_readers_wait_after_what_already_came(nats_client):
    stream = await inbox_of(nats_client).open()
    await nats_client.publish(stream.subject, b"before")
    assert (await stream.next(5)).data == b"before"
    waiting = asyncio.create_task(stream.next(30))
    await asyncio.sleep(0.05)  # the reader is waiting for a chunk that will not come
    stream.abandon()  # its client left
    with pytest.raises(Abandoned):
        await asyncio.wait_for(waiting, 5)
    stream.close()
