"""NATS outages longer than the ack wait: every run still ends once, with one answer.

While NATS is away nobody can renew a lease, so when it returns a run's message is redelivered and a
second carrier may start it while the first is still streaming from the model (or has just finished
and is waiting to write). The fence (`store.leases`) and the fixed ids of a turn (`store.turns`) must
make that harmless: one assistant message per turn, one `thread.run.completed` per run.
"""

import asyncio
import collections
import json
import time

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from test_scaling import Cluster

from ossabus.client import OssabusClient
from ossabus.contracts import subjects
from ossabus.runtime.nats_server import EmbeddedNats

from conftest import free_port, llm_env

ACK_WAIT_S = 4
YAML = {"content-type": "application/yaml"}


async def run_endings(url: str, **options) -> collections.Counter:
    """How many `thread.run.<terminal>` events each run published, read back from the events stream."""
    nc = await nats.connect(url.split(","), **options)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"{subjects.PREFIX}.events.*.*.thread.run.*",
            stream=subjects.EVENTS_STREAM,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        pending = (await sub.consumer_info()).num_pending
        endings: collections.Counter = collections.Counter()
        while pending > 0:
            for msg in await sub.fetch(min(pending, 256), timeout=10):
                pending -= 1
                event = msg.subject.split(".", 4)[4]
                if event.removeprefix("thread.run.") in ("completed", "failed", "cancelled", "expired", "incomplete"):
                    endings[json.loads(msg.data)["run_id"]] += 1
        return endings
    finally:
        await nc.close()


# Three processes, 16 streamed runs, an outage of 12-16 s and the heartbeats that tell ordered consumers
# to resume: ~45 s here, and more than twice that beside another test worker on a loaded 2-core CI.
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("case", "stream_s", "outage_s"),
    [
        # the model answers during the outage: the first carrier waits to write, a second is redelivered
        ("answered during the outage", 1.5, 4 * ACK_WAIT_S),
        # NATS comes back while the first carriers still stream: a second carrier starts beside each
        ("streaming when NATS returns", 10.0, 3 * ACK_WAIT_S),
    ],
)
def test_a_nats_outage_longer_than_the_ack_wait_gives_each_run_one_answer(fake_llm, tmp_path, case, stream_s, outage_s):
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    url = server.start()
    env = {**llm_env(fake_llm), "OSSABUS_ACK_WAIT_S": str(ACK_WAIT_S)}
    running = Cluster(url, env, tmp_path)
    fake_llm.reset()
    words = 30
    texts = [f"outage {i} [[long:{words}]] [[delay:{int(stream_s * 1000 / words)}]]" for i in range(16)]
    try:
        running.add_executors(2, max_runs=16)

        async def scenario():
            async with await OssabusClient.connect(url, timeout=180) as client:
                tasks = [await client.submit("echo-agent", text) for text in texts]
                watcher = await nats.connect(url)
                streaming = await watcher.subscribe("ossa.events.*.*.thread.message.delta")
                for _ in range(len(texts)):  # every run is streaming now
                    await streaming.next_msg(timeout=30)
                await watcher.close()
                server.stop()
                await asyncio.sleep(outage_s)
                server.start()
                return tasks, await asyncio.gather(*(t.result() for t in tasks))

        started = time.monotonic()
        tasks, results = asyncio.run(scenario())
        took = time.monotonic() - started
        assert [r.status for r in results] == ["completed"] * len(texts), [r.error for r in results]
        expected = " ".join(f"w{i}" for i in range(words))
        for task, result in zip(tasks, results, strict=True):
            assert result.output_text == expected
            messages = httpx.get(f"{running.edge.base_url}/v1/threads/{task.thread_id}/messages").json()["data"]
            assert collections.Counter(m["role"] for m in messages) == {"user": 1, "assistant": 1}, messages
            assert messages[0]["content"][0]["text"]["value"] == expected
            steps = httpx.get(f"{running.edge.base_url}/v1/threads/{task.thread_id}/runs/{task.run_id}/steps").json()[
                "data"
            ]
            assert [(s["type"], s["status"]) for s in steps] == [("message_creation", "completed")]
        endings = asyncio.run(run_endings(url))
        assert {task.run_id: endings[task.run_id] for task in tasks} == {task.run_id: 1 for task in tasks}
        calls = len(fake_llm.requests())
        print(f"{case}: {len(texts)} runs, {calls} upstream calls, {took:.1f}s")
        # Each first carrier was alive throughout: it renews its lease within the grace a second carrier
        # gives an expired one, and keeps its run; so no turn is asked twice.
        assert calls == len(texts)
    finally:
        running.stop()
        server.stop()


def test_a_lost_change_announcement_heals_within_seconds(api_stack, fake_llm, nats_url):
    """A registry write whose `ossa.registry.changed` announcement never went out (as when it is
    published while NATS restarts): the executor's and the relay's caches notice the registry's
    revision instead, and serve the new agent within seconds."""
    base = api_stack.base_url
    manifest = (
        "apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: drifting}\n"
        "spec:\n  role: You are version one.\n  llm: {provider: openai, model: fake-model}\n"
    )
    assert httpx.put(f"{base}/v1/ossa/manifests/drifting", content=manifest, headers=YAML).status_code in (200, 201)

    def system_prompt_seen() -> str:
        fake_llm.reset()
        reply = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "drifting", "messages": [{"role": "user", "content": "who are you?"}]},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return next(m["content"] for m in fake_llm.last_request()["messages"] if m["role"] == "system")

    assert system_prompt_seen() == "You are version one."  # cached now, in the relay and the executor

    async def rewrite_behind_the_registrys_back() -> None:
        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value(subjects.MANIFESTS_BUCKET)
            record = json.loads((await kv.get("drifting")).value)
            record["definition"]["system_prompt"] = "You are version two."
            record["version"] += 1
            await kv.put("drifting", json.dumps(record).encode())  # no announcement
        finally:
            await nc.close()

    asyncio.run(rewrite_behind_the_registrys_back())
    started = time.monotonic()
    while system_prompt_seen() != "You are version two.":
        assert time.monotonic() - started < 10, "the caches never noticed the registry's new revision"
        time.sleep(0.25)
