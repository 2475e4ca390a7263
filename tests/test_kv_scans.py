"""Listings of KV keys: right at any size, and without leaving consumers behind on the stream."""

import asyncio

import nats
from pydantic import BaseModel

from ossabus.store import kv as kvs


class Item(BaseModel):
    n: int


async def listing(url: str, bucket: str, keys: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        kv = await js.create_key_value(bucket=bucket, history=5, direct=True)
        for i in range(keys):
            await kv.put(f"a.k{i:05d}", Item(n=i).model_dump_json().encode())
        await kv.put("a.k00001", Item(n=-1).model_dump_json().encode())  # a newer value wins
        await kv.delete("a.k00002")  # a deleted key is not listed
        await kv.put("b.other", Item(n=7).model_dump_json().encode())  # outside the pattern
        await kv.put("a.k00003", b"not json")  # a corrupt record is skipped

        found = await kvs.scan_items(kv, "a.*", Item)
        expected = {f"a.k{i:05d}": i for i in range(keys) if i not in (2, 3)}
        expected["a.k00001"] = -1
        assert dict((key, item.n) for key, item in found) == expected
        assert [key for key, _ in found] == sorted(expected)
        assert await kvs.scan(kv, "c.*", Item) == []
        assert [i.n for i in await kvs.history(kv, "a.k00001", Item)] == [1, -1]

        for _ in range(50):  # many listings leave no consumer on the stream
            await kvs.scan(kv, "a.k0000*", Item)
        info = await js.stream_info(f"KV_{bucket}")
        assert info.state.consumer_count == 0
    finally:
        await nc.close()


def test_a_listing_of_a_few_keys_is_exact_and_leaves_no_consumer(nats_url):
    asyncio.run(listing(nats_url, "scan_small", 40))


def test_a_listing_of_more_keys_than_one_direct_get_returns_them_all(nats_url):
    asyncio.run(listing(nats_url, "scan_large", kvs.DIRECT_BATCH + 100))


async def rewritten_while_listed(url: str, bucket: str, direct: bool) -> int:
    """Listings of four keys that four writers keep rewriting: how many came back short."""
    nc = await nats.connect(url)
    writer = await nats.connect(url)
    try:
        kv = await nc.jetstream().create_key_value(bucket=bucket, history=1, direct=direct)
        theirs = await writer.jetstream().key_value(bucket)
        for i in range(4):
            await kv.put(f"s.k{i}", Item(n=0).model_dump_json().encode())
        stop = asyncio.Event()

        async def rewrite(i: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                await theirs.put(f"s.k{i}", Item(n=n).model_dump_json().encode())

        writers = [asyncio.create_task(rewrite(i)) for i in range(4)]
        short = 0
        for _ in range(300):
            short += len(await kvs.scan(kv, "s.*", Item)) != 4
        stop.set()
        await asyncio.gather(*writers)
        return short
    finally:
        await writer.close()
        await nc.close()


def test_a_listing_never_misses_a_key_that_is_being_rewritten(nats_url):
    """A key written while the server answers has no older message left in a one-revision bucket;
    the listing notices a write after its snapshot and reads again."""
    assert asyncio.run(rewritten_while_listed(nats_url, "scan_rewritten", direct=True)) == 0
