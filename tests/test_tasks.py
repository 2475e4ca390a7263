"""Task messages from other systems over NATS: events, results, idempotency, request/reply, errors."""

import asyncio
import itertools
import json

import httpx
import nats
import pytest

from ossabus.client import OssabusClient, TaskError
from ossabus.contracts import subjects
from ossabus.contracts.bus import TaskMessage
from ossabus.executor.tasks import derived_id


async def get_json(url: str, **params) -> dict:
    async with httpx.AsyncClient(timeout=30) as http:
        return (await http.get(url, params=params)).json()


@pytest.fixture
async def client(api_stack, nats_url):
    async with await OssabusClient.connect(nats_url, timeout=30) as c:
        yield c


async def test_a_published_task_runs_and_reports_every_event_and_its_result(client, fake_llm):
    task = await client.submit("echo-agent", "hello from another system", metadata={"ticket": "7"})
    names = [event.event async for event in task.events()]
    assert names[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert "thread.message.delta" in names
    assert names[-2:] == ["thread.run.completed", "task.result"]
    result = await task.result()
    assert (result.status, result.output_text) == ("completed", "Echo: hello from another system")
    assert (result.thread_id, result.run_id, result.agent) == (task.thread_id, task.run_id, "echo-agent")
    assert result.usage["total_tokens"] > 0
    assert fake_llm.last_request()["messages"][0]["content"] == "You are the echo agent."


async def test_a_task_on_an_existing_thread_continues_the_conversation(client, fake_llm):
    first = await client.submit("echo-agent", "first question")
    assert (await first.result()).output_text == "Echo: first question"
    second = await client.submit("echo-agent", "second question", thread_id=first.thread_id)
    assert (await second.result()).output_text == "Echo: second question"
    sent = fake_llm.last_request()["messages"]
    assert [m["content"] for m in sent[1:]] == ["first question", "Echo: first question", "second question"]


async def test_tasks_queued_together_for_one_new_thread_run_one_at_a_time(client, api_stack):
    tasks = [await client.submit("echo-agent", f"question {i}", thread_id="thread_sharedbyfour") for i in range(4)]
    results = [await t.result() for t in tasks]
    assert [r.status for r in results] == ["completed"] * 4
    runs = await get_json(f"{api_stack.base_url}/v1/threads/thread_sharedbyfour/runs", order="asc")
    spans = sorted((r["started_at"], r["completed_at"]) for r in runs["data"])
    assert len(spans) == 4
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "two runs of one thread overlapped"
    messages = (await get_json(f"{api_stack.base_url}/v1/threads/thread_sharedbyfour/messages", limit=100))["data"]
    assert sorted(m["role"] for m in messages) == ["assistant"] * 4 + ["user"] * 4


async def test_the_same_nats_msg_id_never_starts_two_runs(client, nats_url, api_stack):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    body = TaskMessage(input="only once").model_dump_json().encode()
    for _ in range(2):
        await js.publish(subjects.task("echo-agent"), body, headers={"Nats-Msg-Id": "order-4711"})
    thread_id, run_id = derived_id("thread", "order-4711"), derived_id("run", "order-4711")
    sub = await js.subscribe(
        subjects.run_events_in_thread(thread_id, run_id), stream=subjects.EVENTS_STREAM, ordered_consumer=True
    )
    while json.loads((await sub.next_msg(timeout=30)).data)["event"] != "task.result":
        pass
    await nc.close()
    runs = (await get_json(f"{api_stack.base_url}/v1/threads/{thread_id}/runs"))["data"]
    assert [r["id"] for r in runs] == [run_id]
    messages = (await get_json(f"{api_stack.base_url}/v1/threads/{thread_id}/messages"))["data"]
    assert [m["role"] for m in messages] == ["assistant", "user"]


async def test_ask_returns_the_final_answer_to_a_plain_request(nats_url, api_stack):
    nc = await nats.connect(nats_url)
    reply = await nc.request(subjects.ask("echo-agent"), b'{"input": "quick one"}', timeout=30)
    body = json.loads(reply.data)
    await nc.close()
    assert body["ok"] is True
    assert body["result"]["output_text"] == "Echo: quick one"
    assert body["result"]["status"] == "completed"


async def test_a_task_manifest_checks_its_input_and_its_structured_output(client, fake_llm):
    result = await client.ask("summary-task", {"text": "summarise this [[json]]"})
    assert result.status == "completed"
    # the fake answers [[json]] with {"answer": <the user message without the directive>, "ok": true}
    assert result.output == {"answer": '{"text": "summarise this "}', "ok": True}
    assert result.last_error is None
    sent = fake_llm.last_request()
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["answer", "ok"]
    with pytest.raises(TaskError) as bad:
        await client.ask("summary-task", {"words": 3})
    assert (bad.value.code, bad.value.param) == ("invalid_request", "input")
    plain_text = await client.ask("summary-task", {"text": "no json here"})
    assert plain_text.last_error["code"] == "invalid_output"


@pytest.mark.parametrize(
    ("agent", "payload", "code", "param"),
    [
        ("nobody", {"input": "x"}, "not_found", "agent"),
        ("echo-agent", {"input": {"an": "object"}}, "invalid_request", "input"),
        ("echo-agent", {"input": ""}, "invalid_request", "input"),
        ("echo-agent", {"input": "x", "colour": "red"}, "invalid_request", "colour"),
        ("echo-agent", {"input": "x", "thread_id": "no.dots"}, "invalid_request", "thread_id"),
        ("content-pipeline", {"input": "x"}, "invalid_request", "agent"),
    ],
)
async def test_bad_tasks_get_an_error_event_and_an_error_reply(nats_url, api_stack, agent, payload, code, param):
    with pytest.raises(TaskError) as replied:
        await _raw_ask(nats_url, agent, payload)
    assert (replied.value.code, replied.value.param) == (code, param)

    nc = await nats.connect(nats_url)
    errors = await nc.subscribe("ossa.events.*.*.error")
    await nc.jetstream().publish(
        subjects.task(agent),
        json.dumps(payload).encode(),
        headers={"Nats-Msg-Id": f"bad-{code}-{param}-{len(json.dumps(payload))}"},
    )
    event = json.loads((await errors.next_msg(timeout=30)).data)
    await nc.close()
    assert (event["data"]["code"], event["data"]["param"]) == (code, param)


async def test_the_python_client_raises_what_ossabus_said(client):
    with pytest.raises(TaskError) as unknown:
        await client.ask("nobody", "x")
    assert unknown.value.code == "not_found"
    task = await client.submit("echo-agent", {"an": "object"})
    with pytest.raises(TaskError) as invalid:
        await task.result()
    assert (invalid.value.code, invalid.value.param) == ("invalid_request", "input")


async def _raw_ask(nats_url, agent, payload):
    nc = await nats.connect(nats_url)
    try:
        reply = json.loads((await nc.request(subjects.ask(agent), json.dumps(payload).encode(), timeout=30)).data)
    finally:
        await nc.close()
    assert reply["ok"] is False, reply
    error = reply["error"]
    raise TaskError(error["code"], error["message"], error["param"])


async def test_malformed_task_bodies_are_answered_not_swallowed(nats_url, api_stack):
    nc = await nats.connect(nats_url)
    errors = await nc.subscribe("ossa.events.*.*.error")
    await nc.jetstream().publish(subjects.task("echo-agent"), b"{not json", headers={"Nats-Msg-Id": "garbage-1"})
    event = json.loads((await errors.next_msg(timeout=30)).data)
    assert event["data"]["code"] == "invalid_request"
    assert event["run_id"] == derived_id("run", "garbage-1")
    await asyncio.sleep(0.2)
    assert (await nc.jetstream().stream_info(subjects.TASKS_STREAM)).state.messages == 0
    await nc.close()


def test_a_nodejs_system_publishes_a_task_and_follows_its_run(node_clients, nats_url, api_stack):
    import subprocess

    done = subprocess.run(
        ["node", str(node_clients / "task_client.mjs"), nats_url, "echo-agent", "hello from node"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["stream"] == subjects.TASKS_STREAM
    assert seen["events"][0] == "thread.run.created"
    assert seen["events"][-2:] == ["thread.run.completed", "task.result"]
    assert seen["result"]["output_text"] == "Echo: hello from node"
    assert (seen["result"]["thread_id"], seen["result"]["run_id"]) == (seen["thread_id"], seen["run_id"])
