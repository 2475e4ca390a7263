"""The plain nats-py subscription that serves the chat hot path keeps what FastStream gave: bounded
concurrency, an error reply when a handler fails, a drain on stop. Real nats-server, real requests."""

import asyncio
import json

import pytest
from nats.errors import NoRespondersError

from ossabus.runtime.direct_subscription import DirectHandler, DirectSubscription


async def test_a_failing_handler_answers_a_server_error_without_its_details(nats_client):
    async def broken(msg):
        raise RuntimeError("/srv/secret/path.py exploded")

    subscription = DirectSubscription(nats_client, DirectHandler("direct.broken", "q", broken, 4))
    await subscription.start()
    try:
        reply = json.loads((await nats_client.request("direct.broken", b"{}", timeout=5)).data)
        assert reply["ok"] is False
        assert reply["error"]["code"] == "server_error"
        assert "secret" not in json.dumps(reply)
    finally:
        await subscription.stop(1)


async def test_no_more_than_max_workers_handlers_run_at_once(nats_client):
    now = most = 0

    async def slow(msg):
        nonlocal now, most
        now += 1
        most = max(most, now)
        await asyncio.sleep(0.2)
        now -= 1
        return msg.data

    subscription = DirectSubscription(nats_client, DirectHandler("direct.slow", "q", slow, 2))
    await subscription.start()
    try:
        asked = [nats_client.request("direct.slow", str(i).encode(), timeout=10) for i in range(6)]
        replies = await asyncio.gather(*asked)
        assert [r.data for r in replies] == [str(i).encode() for i in range(6)]  # each answered, none lost
        assert most == 2
    finally:
        await subscription.stop(1)


async def test_stop_lets_a_running_handler_answer_and_takes_no_new_request(nats_client):
    entered = asyncio.Event()

    async def slow(msg):
        entered.set()
        await asyncio.sleep(0.5)
        return b"finished"

    subscription = DirectSubscription(nats_client, DirectHandler("direct.drain", "q", slow, 4))
    await subscription.start()
    pending = asyncio.create_task(nats_client.request("direct.drain", b"", timeout=5))
    await entered.wait()
    await subscription.stop(5)
    assert (await pending).data == b"finished"
    with pytest.raises(NoRespondersError):
        await nats_client.request("direct.drain", b"", timeout=2)


async def test_stop_cancels_a_handler_that_outlives_its_bound(nats_client):
    cancelled = asyncio.Event()

    async def stuck(msg):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    subscription = DirectSubscription(nats_client, DirectHandler("direct.stuck", "q", stuck, 4))
    await subscription.start()
    await nats_client.publish("direct.stuck", b"")
    await nats_client.flush()
    await asyncio.sleep(0.2)
    await subscription.stop(0.3)
    assert cancelled.is_set()
