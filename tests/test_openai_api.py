"""Chat Completions, Models, Assistants, Threads and Messages through the unmodified `openai` SDK,
and every response body checked against OpenAI's published OpenAPI schemas."""

import json
import re
import time
import uuid

import httpx
import openai
import pytest
import yaml
from openai import OpenAI

from conftest import eventually
from openapi_check import openapi_errors

ECHO = "asst_echoXagent"


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def http(api_stack):
    with httpx.Client(base_url=api_stack.base_url, timeout=30) as c:
        yield c


# --- models ---------------------------------------------------------------------------------------------


def test_models_are_the_agents_and_the_provider_models_they_use(client):
    ids = [m.id for m in client.models.list().data]
    assert {"echo-agent", "hasty-agent", "math-tutor", "booking-agent"} <= set(ids)
    assert "openai/fake-model" in ids
    assert "anthropic/claude-3-5-sonnet" in ids
    assert client.models.retrieve("echo-agent").owned_by == "ossabus"
    assert client.models.retrieve("openai/fake-model").id == "openai/fake-model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


# --- chat completions --------------------------------------------------------------------------------------


def test_chat_with_an_agent_applies_its_prompt_and_tools(client, fake_llm):
    reply = client.chat.completions.create(
        model="echo-agent",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        max_completion_tokens=50,
        stop=["END"],
        seed=7,
        user="u1",
    )
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "echo-agent"
    assert reply.choices[0].message.content == "Echo: hi"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    sent = fake_llm.last_request()
    assert sent["messages"][0] == {"role": "system", "content": "You are the echo agent."}
    assert (sent["temperature"], sent["max_tokens"], sent["stop"], sent["seed"]) == (0.3, 50, ["END"], 7)
    # echo-agent's function tools have no server and the client sent none: nobody could answer a call
    # to them, so they are not offered (server-side tools are: see test_chat_fields.py)
    assert "tools" not in sent


def test_chat_with_a_provider_model_is_a_plain_call(client, fake_llm):
    reply = client.chat.completions.create(model="openai/fake-model", messages=[{"role": "user", "content": "yo"}])
    assert reply.choices[0].message.content == "Echo: yo"
    sent = fake_llm.last_request()
    assert sent["messages"] == [{"role": "user", "content": "yo"}]
    assert "tools" not in sent


def test_chat_streaming_with_usage(client):
    chunks = list(
        client.chat.completions.create(
            model="echo-agent",
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: a b c"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 4
    assert len({c.id for c in chunks}) == 1


def test_a_client_that_leaves_a_stream_stops_the_model_call(client, fake_llm):
    """The relay tells the executor, which closes its call: the model stops generating for nobody."""
    tag = f"leaving-{uuid.uuid4().hex[:8]}"
    words, delay_ms = 200, 20  # four seconds of answer
    stream = client.chat.completions.create(
        model="openai/fake-model",
        messages=[{"role": "user", "content": f"{tag} [[long:{words}]] [[delay:{delay_ms}]]"}],
        stream=True,
    )
    got = ""
    for chunk in stream:
        got += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if got:
            break
    stream.close()  # the client leaves after its first words
    left_at = time.monotonic()

    def stopped():
        [upstream] = fake_llm.streams(tag)
        assert upstream["ended"] == "abandoned", upstream
        return upstream

    upstream = eventually(stopped, timeout=3)
    assert time.monotonic() - left_at < 2, "the model call outlived its client"
    assert upstream["sent"] < words / 2


def test_chat_client_tools_end_with_tool_calls(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    msgs = [{"role": "user", "content": 'find [[call:lookup {"q": "x"}]]'}]
    reply = client.chat.completions.create(model="openai/fake-model", messages=msgs, tools=tools)
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {"q": "x"})
    streamed = list(client.chat.completions.create(model="openai/fake-model", messages=msgs, tools=tools, stream=True))
    arguments = "".join(tc.function.arguments or "" for c in streamed for tc in (c.choices[0].delta.tool_calls or []))
    assert json.loads(arguments) == {"q": "x"}
    assert streamed[-1].choices[0].finish_reason == "tool_calls"
    follow = client.chat.completions.create(
        model="openai/fake-model",
        tools=tools,
        messages=[
            *msgs,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "found it"},
        ],
    )
    assert follow.choices[0].message.content == "Tool results: found it"


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"model": "echo-agent", "messages": [{"role": "user", "content": "x"}], "n": 2}, openai.BadRequestError, "n"),
        ({"model": "echo-agent", "messages": []}, openai.BadRequestError, "messages"),
        ({"model": "nobody", "messages": [{"role": "user", "content": "x"}]}, openai.NotFoundError, "model"),
        (
            {"model": "echo-agent", "messages": [{"role": "robot", "content": "x"}]},
            openai.BadRequestError,
            "messages.0.role",
        ),
        (
            {"model": "echo-agent", "messages": [{"role": "user", "content": "x"}], "extra_body": {"bogus": 1}},
            openai.BadRequestError,
            "bogus",
        ),
        (
            {"model": "echo-agent", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            openai.BadRequestError,
            "temperature",
        ),
        # messages without what their role needs (found by the fuzz: they used to come back as a 502)
        ({"model": "echo-agent", "messages": [{"role": "system"}]}, openai.BadRequestError, "messages.0"),
        (
            {"model": "echo-agent", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]},
            openai.BadRequestError,
            "messages.1",
        ),
        ({"model": "echo-agent", "messages": [{"role": "assistant"}]}, openai.BadRequestError, "messages.0"),
        (
            {"model": "echo-agent", "messages": [{"role": "user", "content": [{"text": "no type"}]}]},
            openai.BadRequestError,
            "messages.0.content",
        ),
    ],
)
def test_chat_bad_requests(client, kwargs, error, param):
    with pytest.raises(error) as info:
        client.chat.completions.create(**kwargs)
    assert info.value.body["param"] == param
    assert info.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[[fail:429]]", openai.RateLimitError),
        ("[[fail:400]]", openai.BadRequestError),
        ("[[fail:500]]", openai.APIStatusError),
    ],
)
def test_chat_upstream_failures_keep_their_meaning(client, text, error):
    with pytest.raises(error) as info:
        client.chat.completions.create(model="echo-agent", messages=[{"role": "user", "content": text}])
    assert "sk-test-key" not in str(info.value.body)
    if error is openai.APIStatusError:
        assert info.value.status_code == 502


def test_credentials_come_from_the_standard_variables_or_from_the_manifest(client, fake_llm):
    client.chat.completions.create(model="echo-agent", messages=[{"role": "user", "content": "x"}])
    standard = fake_llm.last_request()["_meta"]
    assert (standard["path"], standard["authorization"]) == ("/v1/chat/completions", "Bearer sk-test-key-0123456789")
    client.chat.completions.create(model="direct-agent", messages=[{"role": "user", "content": "x"}])
    direct = fake_llm.last_request()["_meta"]
    assert (direct["path"], direct["authorization"]) == ("/chat/completions", "Bearer sk-direct-key-abcdef")


def test_a_body_that_is_not_json_is_a_clear_400(http):
    for path in ("/v1/chat/completions", "/v1/threads", "/v1/assistants"):
        response = http.post(path, content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"] == {
            "message": "the request body is not valid JSON",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_json",
        }


def test_oversized_bodies_are_413_in_openai_shape(http):
    big = {"model": "echo-agent", "messages": [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]}
    response = http.post("/v1/chat/completions", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


# --- assistants ----------------------------------------------------------------------------------------------


def test_an_assistant_is_a_manifest(client, http):
    created = client.beta.assistants.create(
        model="anthropic/claude-3-5-haiku",
        name="Travel Helper",
        instructions="Plan trips.",
        temperature=0.4,
        tools=[
            {"type": "function", "function": {"name": "find_flights", "parameters": {"type": "object"}}},
            {"type": "code_interpreter"},
        ],
        metadata={"team": "travel"},
    )
    assert created.id == "asst_travelXhelper"
    assert (created.name, created.model, created.instructions) == (
        "Travel Helper",
        "anthropic/claude-3-5-haiku",
        "Plan trips.",
    )
    manifest = http.get("/v1/ossa/manifests/travel-helper").json()
    assert manifest["source"] == "api"
    assert manifest["definition"]["llm"]["litellm_model"] == "anthropic/claude-3-5-haiku"
    assert client.beta.assistants.retrieve(created.id) == created

    twin = client.beta.assistants.create(model="gpt-4o", name="Travel Helper")
    assert twin.id != created.id  # OpenAI allows two assistants with one name
    assert twin.name == "Travel Helper"

    updated = client.beta.assistants.update(
        created.id, instructions="Plan cheap trips.", metadata={"team": "t2"}, tools=[{"type": "file_search"}]
    )
    assert updated.instructions == "Plan cheap trips."
    assert [t.type for t in updated.tools] == ["file_search"]
    assert (updated.temperature, updated.metadata) == (0.4, {"team": "t2"})
    assert http.get("/v1/ossa/manifests/travel-helper").json()["version"] == 2

    listed = [a.id for a in client.beta.assistants.list(limit=100).data]
    assert {created.id, twin.id, ECHO, "asst_mathXtutor"} <= set(listed)
    assert client.beta.assistants.delete(twin.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(twin.id)


def test_updating_an_assistant_keeps_what_the_assistant_object_cannot_express(client, http):
    before = http.get("/v1/ossa/manifests/customer-support-agent").json()
    client.beta.assistants.update("asst_customerXsupportXagent", model="gpt-4o-mini")
    after = http.get("/v1/ossa/manifests/customer-support-agent").json()
    assert after["definition"]["llm"]["litellm_model"] == "openai/gpt-4o-mini"
    for kept in ("limits", "streaming", "tools", "system_prompt"):
        assert after["definition"][kept] == before["definition"][kept]
    assert after["manifest"]["spec"]["state"] == before["manifest"]["spec"]["state"]


def test_assistants_paginate_like_openai(client):
    first = client.beta.assistants.list(limit=3, order="asc")
    second = client.beta.assistants.list(limit=3, order="asc", after=first.data[-1].id)
    assert first.has_more is True
    assert not {a.id for a in first.data} & {a.id for a in second.data}
    times = [a.created_at for a in first.data + second.data]
    assert times == sorted(times)


def test_assistant_bad_input(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.create(model="gpt-4o", tools=[{"type": "browser"}])
    assert info.value.body["param"].startswith("tools")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.assistants.create(model="gpt-4o", metadata={f"k{i}": "v" for i in range(17)})
    assert info.value.body["param"] == "metadata"
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.update("asst_nobody", name="x")


# --- threads and messages -----------------------------------------------------------------------------------


def test_threads_and_messages(client):
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}], metadata={"a": "1"}
    )
    assert client.beta.threads.retrieve(thread.id).metadata == {"a": "1"}
    assert client.beta.threads.update(thread.id, metadata={"a": "2"}).metadata == {"a": "2"}
    third = client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content=[{"type": "text", "text": "three"}]
    )
    assert third.content[0].text.value == "three"
    texts = [m.content[0].text.value for m in client.beta.threads.messages.list(thread_id=thread.id).data]
    assert texts == ["three", "two", "one"]
    page = client.beta.threads.messages.list(thread_id=thread.id, limit=2, order="asc")
    assert [m.content[0].text.value for m in page.data] == ["one", "two"]
    assert page.has_more
    rest = client.beta.threads.messages.list(thread_id=thread.id, order="asc", after=page.data[-1].id)
    assert [m.content[0].text.value for m in rest.data] == ["three"]
    assert client.beta.threads.messages.update(
        message_id=third.id, thread_id=thread.id, metadata={"x": "y"}
    ).metadata == {"x": "y"}
    assert client.beta.threads.messages.delete(message_id=third.id, thread_id=thread.id).deleted
    assert len(client.beta.threads.messages.list(thread_id=thread.id).data) == 2
    assert client.beta.threads.delete(thread.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread_id=thread.id)


def test_thread_bad_input(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.create(messages=[{"role": "system", "content": "x"}])
    assert info.value.body["param"] == "messages.0.role"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message_id="msg_x", thread_id="thread_nope")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve("thread.with.dots")


# --- shapes: every body against OpenAI's OpenAPI schemas -----------------------------------------------------


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, line[6:]))
            name = None
    return events


EVENT_SCHEMAS = {
    "thread.run": "RunObject",
    "thread.run.step": "RunStepObject",
    "thread.message": "MessageObject",
    "thread.message.delta": "MessageDeltaObject",
    "thread.run.step.delta": "RunStepDeltaObject",
}


def schema_for_event(name: str) -> str:
    if name.endswith(".delta"):
        return EVENT_SCHEMAS[name]
    return EVENT_SCHEMAS[name.rsplit(".", 1)[0]]


def test_every_body_has_the_shape_openai_clients_expect(http):
    checks: list[tuple[object, str]] = []

    def check(response: httpx.Response, schema: str) -> dict:
        assert response.status_code == 200, response.text
        body = response.json()
        checks.append((body, schema))
        return body

    check(http.get("/v1/models"), "ListModelsResponse")
    check(http.get("/v1/models/echo-agent"), "Model")
    check(
        http.post("/v1/chat/completions", json={"model": "echo-agent", "messages": [{"role": "user", "content": "x"}]}),
        "CreateChatCompletionResponse",
    )
    asst = check(http.post("/v1/assistants", json={"model": "gpt-4o", "name": "Shape"}), "AssistantObject")
    check(http.get("/v1/assistants"), "ListAssistantsResponse")
    check(http.post(f"/v1/assistants/{asst['id']}", json={"description": "d"}), "AssistantObject")
    check(http.delete(f"/v1/assistants/{asst['id']}"), "DeleteAssistantResponse")
    thread = check(http.post("/v1/threads", json={"messages": [{"role": "user", "content": "hello"}]}), "ThreadObject")
    tid = thread["id"]
    check(http.get(f"/v1/threads/{tid}"), "ThreadObject")
    check(http.post(f"/v1/threads/{tid}", json={"metadata": {"k": "v"}}), "ThreadObject")
    msg = check(http.post(f"/v1/threads/{tid}/messages", json={"role": "user", "content": "more"}), "MessageObject")
    check(http.get(f"/v1/threads/{tid}/messages/{msg['id']}"), "MessageObject")
    check(http.post(f"/v1/threads/{tid}/messages/{msg['id']}", json={"metadata": {}}), "MessageObject")
    run = check(http.post(f"/v1/threads/{tid}/runs", json={"assistant_id": ECHO}), "RunObject")
    for _ in range(100):
        run = http.get(f"/v1/threads/{tid}/runs/{run['id']}").json()
        if run["status"] == "completed":
            break
    check(http.get(f"/v1/threads/{tid}/runs/{run['id']}"), "RunObject")
    check(http.get(f"/v1/threads/{tid}/runs"), "ListRunsResponse")
    check(http.post(f"/v1/threads/{tid}/runs/{run['id']}", json={"metadata": {"a": "b"}}), "RunObject")
    steps = check(http.get(f"/v1/threads/{tid}/runs/{run['id']}/steps"), "ListRunStepsResponse")
    check(http.get(f"/v1/threads/{tid}/runs/{run['id']}/steps/{steps['data'][0]['id']}"), "RunStepObject")
    check(http.get(f"/v1/threads/{tid}/messages"), "ListMessagesResponse")
    check(http.delete(f"/v1/threads/{tid}/messages/{msg['id']}"), "DeleteMessageResponse")

    with http.stream(
        "POST",
        "/v1/threads/runs",
        json={
            "assistant_id": ECHO,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": '[[call:get_weather {"city": "Oslo"}]]'}]},
        },
    ) as response:
        events = sse_events(response)
    assert events[-1] == ("done", "[DONE]")
    for name, data in events[:-1]:
        checks.append((json.loads(data), schema_for_event(name)))
    parked = json.loads(events[-2][1])
    call_id = parked["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    with http.stream(
        "POST",
        f"/v1/threads/{parked['thread_id']}/runs/{parked['id']}/submit_tool_outputs",
        json={"tool_outputs": [{"tool_call_id": call_id, "output": "cold"}], "stream": True},
    ) as response:
        events = sse_events(response)
    for name, data in events[:-1]:
        checks.append((json.loads(data), schema_for_event(name)))
    assert events[-2][0] == "thread.run.completed"

    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "echo-agent",
            "stream": True,
            "messages": [{"role": "user", "content": "s"}],
            "stream_options": {"include_usage": True},
        },
    ) as response:
        for _, data in sse_events(response):
            if data != "[DONE]":
                checks.append((json.loads(data), "CreateChatCompletionStreamResponse"))
    check(http.delete(f"/v1/threads/{tid}"), "DeleteThreadResponse")

    errors = http.get("/v1/threads/thread_nope")
    assert errors.status_code == 404
    checks.append((errors.json(), "ErrorResponse"))
    index = re.compile(r"\[\d+\]")
    problems = sorted(
        {
            schema + ": " + index.sub("[i]", problem)[:160]
            for body, schema in checks
            for problem in openapi_errors(body, schema)
        }
    )
    assert not problems, "\n".join(problems)
    assert len(checks) > 40


def test_manifests_created_as_assistants_are_valid_ossa(http):
    asst = http.post("/v1/assistants", json={"model": "gpt-4o", "name": "Strict One", "instructions": "Hi."}).json()
    name = asst["id"].removeprefix("asst_").replace("X", "-")
    text = http.get(f"/v1/ossa/manifests/{name}", params={"format": "yaml"}).text
    assert yaml.safe_load(text)["apiVersion"] == "ossa/v0.3.4"
    verdict = http.post(
        "/v1/ossa/validate", params={"strict": "true"}, content=text, headers={"content-type": "application/yaml"}
    ).json()
    assert verdict["valid"] is True, verdict["errors"]
