"""The two ways to a model, behind one interface: the OpenAI wire format spoken directly, and litellm.

Every test runs against both: a stack on the default (direct for `openai/...`) and one where
`OSSABUS_LITELLM_PROVIDERS=openai` sends the same calls through litellm. Answers, usage, retries,
errors and tool calls must be the same; the fake upstream's record of each request (its user agent)
shows which way it came.
"""

import asyncio
import json
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from conftest import (
    FakeLLM,
    Stack,
    free_port,
    llm_env,
    register_manifest,
    rendered_agents,
    reset_jetstream,
    start_stack,
)

PATHS = ["direct", "litellm"]
WINDOW_MS = 200


@pytest.fixture(scope="module", params=PATHS)
def path_stack(request, nats_url, fake_llm, tmp_path_factory) -> Iterator[tuple[str, Stack]]:
    asyncio.run(reset_jetstream(nats_url))
    # a wide coalescing window, so that which deltas share a message does not hang on this machine's speed
    env = {**llm_env(fake_llm), "OSSABUS_STREAM_COALESCE_MS": str(WINDOW_MS)}
    if request.param == "litellm":
        env["OSSABUS_LITELLM_PROVIDERS"] = "openai"
    log = tmp_path_factory.mktemp(f"path-{request.param}") / "ossabus.log"
    agents = str(rendered_agents(fake_llm.base_url))
    running = start_stack(["up", "--nats-url", nats_url, "--manifests", agents], log, free_port(), env=env)
    yield request.param, running
    assert running.stop() == 0, running.logs()


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def requests_with(fake: FakeLLM, marker: str) -> list[dict]:
    return [r for r in fake.requests() if marker in json.dumps(r.get("messages"))]


def came_direct(request: dict) -> bool:
    return (request["_meta"]["user_agent"] or "").startswith("ossabus/")


def test_a_completion_is_the_same_either_way_and_says_which_way_it_went(path_stack, fake_llm):
    path, stack = path_stack
    marker = uuid.uuid4().hex
    answer = sdk(stack).chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": f"hello {marker}"}], seed=7, temperature=0.5
    )
    assert answer.choices[0].message.content == f"Echo: hello {marker}"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 3)  # the fake counts words
    (seen,) = requests_with(fake_llm, marker)
    assert came_direct(seen) is (path == "direct")
    assert seen["_meta"]["authorization"] == "Bearer sk-test-key-0123456789"
    assert (seen["model"], seen["seed"], seen["temperature"]) == ("fake-model", 7, 0.5)
    assert "api_key" not in seen
    assert "timeout" not in seen


def test_a_stream_is_the_same_either_way_with_usage_at_the_end(path_stack, fake_llm):
    _, stack = path_stack
    marker = uuid.uuid4().hex
    chunks = list(
        sdk(stack).chat.completions.create(
            model="openai/fake-model",
            messages=[{"role": "user", "content": f"stream {marker} [[long:12]]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(f"w{i}" for i in range(12))
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    (seen,) = requests_with(fake_llm, marker)
    assert seen["stream"] is True
    assert seen["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_come_back_whole_either_way(path_stack, stream):
    _, stack = path_stack
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    call = sdk(stack).chat.completions.create(
        model="openai/fake-model",
        messages=[{"role": "user", "content": 'find it [[call:lookup {"q": "ossa"}]]'}],
        tools=tools,
        stream=stream,
    )
    if stream:
        deltas = [d for c in call if c.choices for d in c.choices[0].delta.tool_calls or []]
        name = "".join(d.function.name or "" for d in deltas)
        arguments = "".join(d.function.arguments or "" for d in deltas)
    else:
        (made,) = call.choices[0].message.tool_calls
        name, arguments = made.function.name, made.function.arguments
        assert call.choices[0].finish_reason == "tool_calls"
    assert (name, json.loads(arguments)) == ("lookup", {"q": "ossa"})


@pytest.mark.parametrize("stream", [False, True])
def test_a_transient_failure_is_retried_and_a_client_mistake_is_not(path_stack, fake_llm, stream):
    _, stack = path_stack
    client = sdk(stack)
    retried = uuid.uuid4().hex
    answer = client.chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": f"{retried} [[fail:429:1]]"}], stream=stream
    )
    text = (
        "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
        if stream
        else answer.choices[0].message.content
    )
    assert text == f"Echo: {retried}"
    assert len(requests_with(fake_llm, retried)) == 2
    refused = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="openai/fake-model", messages=[{"role": "user", "content": f"{refused} [[fail:400]]"}], stream=stream
        )
    assert "fake upstream failure 400" in caught.value.message
    assert len(requests_with(fake_llm, refused)) == 1


def test_a_provider_that_keeps_failing_is_asked_max_attempts_times_then_a_502(path_stack, fake_llm):
    _, stack = path_stack
    marker = uuid.uuid4().hex
    response = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        json={"model": "openai/fake-model", "messages": [{"role": "user", "content": f"{marker} [[fail:503]]"}]},
        timeout=60,
    )
    assert response.status_code == 502, response.text
    assert response.json()["error"]["message"].startswith("the model provider failed")
    assert len(requests_with(fake_llm, marker)) == 3  # the default retry policy: three attempts


def test_a_provider_that_reports_no_usage_is_counted_all_the_same(path_stack):
    _, stack = path_stack
    answer = sdk(stack).chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": "count me please [[nousage]]"}]
    )
    assert answer.choices[0].message.content == "Echo: count me please"
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.completion_tokens > 0
    chunks = list(
        sdk(stack).chat.completions.create(
            model="openai/fake-model",
            messages=[{"role": "user", "content": "count me please [[nousage]]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_an_error_inside_a_stream_ends_it_with_an_error_event(path_stack):
    _, stack = path_stack
    body = {
        "model": "openai/fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": "half an answer [[streamerror]]"}],
    }
    with httpx.stream("POST", f"{stack.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert text == "Echo: half an answer"
    assert events[-1]["error"]["code"] == "upstream_error"


def test_a_run_goes_the_same_way(path_stack, fake_llm):
    path, stack = path_stack
    client = sdk(stack)
    marker = uuid.uuid4().hex
    assistant = client.beta.assistants.create(model="openai/fake-model", instructions="Be brief.")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": f"run {marker}"}]}
    )
    assert run.status == "completed", run.last_error
    assert run.usage.completion_tokens == 3
    (seen,) = requests_with(fake_llm, marker)
    assert came_direct(seen) is (path == "direct")
    assert seen["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("stream", [False, True])
def test_calls_one_after_another_reuse_one_kept_alive_connection(path_stack, fake_llm, stream):
    _, stack = path_stack
    marker = uuid.uuid4().hex
    client = sdk(stack)
    for i in range(5):
        answer = client.chat.completions.create(
            model="openai/fake-model", messages=[{"role": "user", "content": f"{marker} {i}"}], stream=stream
        )
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in answer if c.choices) == f"Echo: {marker} {i}"
    ports = {r["_meta"]["peer_port"] for r in requests_with(fake_llm, marker)}
    assert len(ports) == 1, ports


def test_a_manifest_can_send_its_calls_through_litellm(path_stack, fake_llm):
    _, stack = path_stack
    register_manifest(
        stack.base_url,
        {
            "apiVersion": "ossa/v0.5",
            "kind": "Agent",
            "metadata": {"name": "through-litellm"},
            "spec": {"role": "You answer.", "llm": {"provider": "openai", "model": "fake-model"}},
            "extensions": {"ossabus": {"llm_client": "litellm"}},
        },
    )
    marker = uuid.uuid4().hex
    answer = sdk(stack).chat.completions.create(
        model="through-litellm", messages=[{"role": "user", "content": f"via {marker}"}]
    )
    assert answer.choices[0].message.content == f"Echo: via {marker}"
    (seen,) = requests_with(fake_llm, marker)
    assert not came_direct(seen)


def content_chunks(stack: Stack, prompt: str) -> list[str]:
    stream = sdk(stack).chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": prompt}], stream=True
    )
    return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]


def test_a_burst_of_tokens_shares_chunks_and_tokens_apart_go_alone(path_stack):
    _, stack = path_stack
    burst = content_chunks(stack, "burst [[long:40]]")
    assert "".join(burst) == " ".join(f"w{i}" for i in range(40))
    assert burst[0] == "w0"  # the first token alone, at once
    assert len(burst) <= 4  # 39 more within the window: one or two more messages (32 at most in one)
    apart = content_chunks(stack, f"apart [[long:4]] [[delay:{WINDOW_MS * 2}]]")
    assert apart == ["w0", " w1", " w2", " w3"]


def test_a_runs_text_deltas_share_events_too(path_stack):
    _, stack = path_stack
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="openai/fake-model")
    with client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "burst [[long:40]]"}]},
        stream=True,
    ) as events:
        deltas = [e.data.delta.content[0].text.value for e in events if e.event == "thread.message.delta"]
    assert "".join(deltas) == " ".join(f"w{i}" for i in range(40))
    assert len(deltas) <= 4
