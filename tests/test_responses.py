"""The Responses API through the unmodified `openai` SDK, over a real socket, on the run machinery:
every object and every streamed event checked against OpenAI's published schemas."""

import json
import time

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from openapi_check import openapi_errors

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.queued": "ResponseQueuedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.failed": "ResponseFailedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.mcp_call.in_progress": "ResponseMCPCallInProgressEvent",
    "response.mcp_call.completed": "ResponseMCPCallCompletedEvent",
    "response.mcp_call.failed": "ResponseMCPCallFailedEvent",
    "response.mcp_call_arguments.delta": "ResponseMCPCallArgumentsDeltaEvent",
    "response.mcp_call_arguments.done": "ResponseMCPCallArgumentsDoneEvent",
    "response.mcp_list_tools.in_progress": "ResponseMCPListToolsInProgressEvent",
    "response.mcp_list_tools.completed": "ResponseMCPListToolsCompletedEvent",
    "response.mcp_list_tools.failed": "ResponseMCPListToolsFailedEvent",
    "response.reasoning_summary_part.added": "ResponseReasoningSummaryPartAddedEvent",
    "response.reasoning_summary_part.done": "ResponseReasoningSummaryPartDoneEvent",
    "response.reasoning_summary_text.delta": "ResponseReasoningSummaryTextDeltaEvent",
    "response.reasoning_summary_text.done": "ResponseReasoningSummaryTextDoneEvent",
    "response.code_interpreter_call.in_progress": "ResponseCodeInterpreterCallInProgressEvent",
    "response.code_interpreter_call_code.delta": "ResponseCodeInterpreterCallCodeDeltaEvent",
    "response.code_interpreter_call_code.done": "ResponseCodeInterpreterCallCodeDoneEvent",
    "response.code_interpreter_call.interpreting": "ResponseCodeInterpreterCallInterpretingEvent",
    "response.code_interpreter_call.completed": "ResponseCodeInterpreterCallCompletedEvent",
    "error": "ResponseErrorEvent",
}


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def conforms(response) -> dict:
    body = response.model_dump(mode="json", exclude_unset=True) if hasattr(response, "model_dump") else response
    assert openapi_errors(body, "Response") == [], openapi_errors(body, "Response")
    return body


def events_of(base_url: str, body: dict) -> list[dict]:
    """The raw SSE stream of one request, every event checked against its schema."""
    events = []
    with httpx.stream("POST", f"{base_url}/v1/responses", json={**body, "stream": True}, timeout=60) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    for event in events:
        problems = openapi_errors(event, EVENT_SCHEMAS[event["type"]])
        assert problems == [], (event, problems)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_a_response_from_an_agent(client):
    response = client.responses.create(model="echo-agent", input="hello there")
    body = conforms(response)
    assert response.status == "completed"
    assert response.output_text == "Echo: hello there"
    assert body["model"] == "echo-agent"
    assert response.usage.output_tokens > 0
    again = client.responses.retrieve(response.id)
    assert again.output_text == "Echo: hello there"
    conforms(again)


def test_a_response_from_a_provider_model_with_instructions(client, fake_llm):
    response = client.responses.create(model="openai/fake-model", instructions="Be terse.", input="hi model")
    conforms(response)
    assert response.output_text == "Echo: hi model"
    sent = next(r for r in reversed(fake_llm.requests()) if "hi model" in json.dumps(r.get("messages")))
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}
    assert sent["model"] == "fake-model"


def test_streaming_with_the_sdks_event_handler(client, api_stack):
    with client.responses.stream(model="echo-agent", input="stream this please") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Echo: stream this please"
    assert final.output_text == "Echo: stream this please"
    events = events_of(api_stack.base_url, {"model": "echo-agent", "input": "raw events"})
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 1


def test_a_function_call_round_trip_with_previous_response_id(client):
    first = client.responses.create(
        model="openai/fake-model", input='[[call:get_weather {"city": "Oslo"}]] weather?', tools=[WEATHER]
    )
    conforms(first)
    assert first.status == "completed"
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Oslo"})
    second = client.responses.create(
        model="openai/fake-model",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}],
        tools=[WEATHER],
    )
    conforms(second)
    assert second.output_text == "Tool results: sunny, 21C"
    assert [i.type for i in second.output] == ["message"]  # the call belongs to the first response
    assert [i.type for i in client.responses.retrieve(first.id).output] == ["function_call"]
    items = client.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["function_call_output"]
    # the continuation's own stream, replayed: its items only, not the first response's call
    with httpx.stream("GET", f"{client.base_url}responses/{second.id}", params={"stream": "true"}, timeout=30) as r:
        replayed = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    added = [e["item"]["type"] for e in replayed if e["type"] == "response.output_item.added"]
    assert added == ["message"]
    assert replayed[-1]["type"] == "response.completed"


def test_provider_parameters_of_a_response_reach_the_provider(client, fake_llm):
    client.responses.create(
        model="openai/fake-model",
        input="parameters please",
        reasoning={"effort": "low"},
        service_tier="flex",
        prompt_cache_key="cache-1",
        safety_identifier="user-hash",
    )
    sent = next(r for r in reversed(fake_llm.requests()) if "parameters please" in json.dumps(r.get("messages")))
    assert (sent["reasoning_effort"], sent["service_tier"]) == ("low", "flex")
    assert (sent["prompt_cache_key"], sent["user"]) == ("cache-1", "user-hash")


def test_a_stateless_client_sends_the_whole_conversation(client, fake_llm):
    response = client.responses.create(
        model="openai/fake-model",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "weather in Rome?"},
            {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_abc", "output": "rainy"},
        ],
    )
    assert response.output_text == "Tool results: rainy"
    sent = next(r for r in reversed(fake_llm.requests()) if "weather in Rome?" in json.dumps(r.get("messages")))
    roles = [m["role"] for m in sent["messages"]]
    assert roles[-3:] == ["user", "assistant", "tool"]
    assert sent["messages"][-2]["tool_calls"][0]["id"] == "call_abc"


def test_server_side_tools_run_on_the_server_and_show_as_mcp_calls(client, api_stack):
    response = client.responses.create(model="http-agent", input='[[call:lookup {"q": "abc"}]] look it up')
    conforms(response)
    kinds = [item.type for item in response.output]
    assert kinds == ["mcp_call", "message"]
    call = response.output[0]
    assert (call.name, call.server_label, call.error) == ("lookup", "ossabus", None)
    assert json.loads(call.output)["received"] == {"q": "abc"}
    assert response.output_text.startswith("Tool results: ")
    events = events_of(api_stack.base_url, {"model": "http-agent", "input": "[[call:failing {}]] try"})
    kinds = [e["type"] for e in events]
    assert "response.mcp_call.failed" in kinds
    assert "response.function_call_arguments.delta" not in kinds


class Answer(BaseModel):
    answer: str
    ok: bool


def test_parse_with_a_pydantic_model(client, fake_llm):
    parsed = client.responses.parse(model="openai/fake-model", input="[[json]] structured", text_format=Answer)
    assert parsed.output_parsed == Answer(answer="structured", ok=True)
    sent = next(r for r in reversed(fake_llm.requests()) if "structured" in json.dumps(r.get("messages")))
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "Answer"


def test_chains_and_forks_keep_each_branch_apart(client, fake_llm):
    root = client.responses.create(model="echo-agent", input="root question")
    left = client.responses.create(model="echo-agent", input="left branch", previous_response_id=root.id)
    right = client.responses.create(model="echo-agent", input="right branch", previous_response_id=root.id)
    assert left.output_text == "Echo: left branch"
    assert right.output_text == "Echo: right branch"
    sent = next(r for r in reversed(fake_llm.requests()) if "right branch" in json.dumps(r.get("messages")))
    said = json.dumps(sent["messages"])
    assert "root question" in said
    assert "left branch" not in said  # a fork sees its own history only


def test_background_responses_are_polled_and_cancelled(client):
    queued = client.responses.create(model="echo-agent", input="[[slow:3]] take your time", background=True)
    assert queued.status in ("queued", "in_progress")
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    done = client.responses.create(model="echo-agent", input="quick one", background=True)
    for _ in range(100):
        done = client.responses.retrieve(done.id)
        if done.status == "completed":
            break
        time.sleep(0.05)
    assert done.output_text == "Echo: quick one"


def test_a_stream_resumes_after_a_sequence_number(client, api_stack):
    created = client.responses.create(model="echo-agent", input="resume me later", background=True)
    for _ in range(100):
        if client.responses.retrieve(created.id).status == "completed":
            break
        time.sleep(0.05)
    base = api_stack.base_url

    def replay(after: int | None) -> list[dict]:
        query = {"stream": "true"} | ({"starting_after": str(after)} if after is not None else {})
        with httpx.stream("GET", f"{base}/v1/responses/{created.id}", params=query, timeout=30) as reply:
            return [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]

    everything = replay(None)
    assert everything[-1]["type"] == "response.completed"
    later = replay(3)
    assert later == everything[4:]


def test_store_false_keeps_nothing(client):
    response = client.responses.create(model="echo-agent", input="forget me", store=False)
    assert response.output_text == "Echo: forget me"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_delete(client):
    response = client.responses.create(model="echo-agent", input="delete me")
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "echo-agent", "input": "x", "tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
        ({"model": "echo-agent", "input": "x", "frobnicate": 1}, "frobnicate"),
        (
            {"model": "echo-agent", "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
            "input[0].call_id",
        ),
        ({"model": "echo-agent", "input": "x", "previous_response_id": "resp_nope"}, "previous_response_id"),
        ({"model": "echo-agent", "input": "x", "background": True, "store": False}, "store"),
        ({"model": "no-such-model", "input": "x"}, "model"),
        ({"model": "echo-agent", "input": "x", "conversation": {"name": "no id"}}, "conversation"),
        ({"model": "echo-agent", "input": [{"role": "user", "content": [42]}]}, "input[0].content[0].type"),
    ],
)
def test_bad_requests_are_openai_shaped_errors(api_stack, body, param):
    reply = httpx.post(f"{api_stack.base_url}/v1/responses", json=body, timeout=30)
    assert 400 <= reply.status_code < 500, reply.text
    error = reply.json()["error"]
    assert error["param"] == param or param in (error["message"] or ""), error


# --- conversations -------------------------------------------------------------------------------------


def test_a_conversation_holds_the_responses_made_in_it(client):
    conversation = client.conversations.create(
        metadata={"topic": "demo"}, items=[{"type": "message", "role": "user", "content": "first words"}]
    )
    assert conversation.id.startswith("conv_")
    assert openapi_errors(conversation.model_dump(mode="json"), "ConversationResource") == []
    response = client.responses.create(model="echo-agent", input="second words", conversation=conversation.id)
    assert response.output_text == "Echo: second words"
    assert response.conversation.id == conversation.id
    items = client.conversations.items.list(conversation.id, order="asc")
    assert openapi_errors(items.model_dump(mode="json", exclude_unset=True), "ConversationItemList") == []
    texts = [(i.role, i.content[0].text) for i in items.data]
    assert texts == [("user", "first words"), ("user", "second words"), ("assistant", "Echo: second words")]
    newest = client.conversations.items.list(conversation.id, limit=1)  # desc by default
    assert newest.data[0].content[0].text == "Echo: second words"
    assert newest.has_more
    again = client.conversations.items.retrieve(newest.data[0].id, conversation_id=conversation.id)
    assert again.id == newest.data[0].id
    added = client.conversations.items.create(
        conversation.id, items=[{"type": "message", "role": "user", "content": "third words"}]
    )
    assert [i.content[0].text for i in added.data] == ["third words"]
    client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    assert len(client.conversations.items.list(conversation.id).data) == 3
    updated = client.conversations.update(conversation.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}
    assert client.conversations.delete(conversation.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_an_assistants_thread_continues_through_responses_and_reads_as_a_conversation(client):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "started in assistants"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_echoXagent")
    assert run.status == "completed"
    response = client.responses.create(model="echo-agent", input="continued in responses", conversation=thread.id)
    assert response.output_text == "Echo: continued in responses"
    texts = [i.content[0].text for i in client.conversations.items.list(thread.id, order="asc").data]
    assert texts == [
        "started in assistants",
        "Echo: started in assistants",
        "continued in responses",
        "Echo: continued in responses",
    ]
    messages = client.beta.threads.messages.list(thread_id=thread.id, order="asc").data
    assert [m.content[0].text.value for m in messages] == texts  # and the thread sees the same


# --- MCP servers named in the request -------------------------------------------------------------------


def mcp_tool(mcp_servers, **extra) -> dict:
    url = mcp_servers.http_url.replace("127.0.0.1", "localhost")  # the tests' egress policy allows localhost
    return {"type": "mcp", "server_label": "calc", "server_url": url, **extra}


def test_an_mcp_server_in_the_request_is_listed_and_its_tools_run_on_the_server(client, mcp_servers, api_stack):
    tool = mcp_tool(mcp_servers, allowed_tools=["add"], require_approval="never")
    response = client.responses.create(
        model="openai/fake-model", input='[[call:add {"a": 2, "b": 3}]] add please', tools=[tool]
    )
    conforms(response)
    assert [i.type for i in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    listing, call = response.output[0], response.output[1]
    assert [t.name for t in listing.tools] == ["add"]  # allowed_tools filters the listing
    assert listing.tools[0].input_schema["required"] == ["a", "b"]
    assert (call.server_label, call.name, call.output) == ("calc", "add", "5")
    assert response.output_text == "Tool results: 5"
    events = events_of(
        api_stack.base_url,
        {"model": "openai/fake-model", "input": '[[call:add {"a": 1, "b": 1}]] again', "tools": [tool]},
    )
    kinds = [e["type"] for e in events]
    assert kinds[1:3] == ["response.output_item.added", "response.mcp_list_tools.in_progress"]
    assert "response.mcp_call.completed" in kinds


def test_mcp_calls_wait_for_approval_by_default(client, mcp_servers):
    tool = mcp_tool(mcp_servers)
    first = client.responses.create(
        model="openai/fake-model", input='[[call:add {"a": 20, "b": 22}]] add', tools=[tool]
    )
    conforms(first)
    assert [i.type for i in first.output] == ["mcp_list_tools", "mcp_approval_request"]
    request = first.output[1]
    assert (request.name, json.loads(request.arguments)) == ("add", {"a": 20, "b": 22})
    second = client.responses.create(
        model="openai/fake-model",
        previous_response_id=first.id,
        tools=[tool],
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
    )
    conforms(second)
    assert [i.type for i in second.output] == ["mcp_call", "message"]
    assert second.output[0].output == "42"
    assert second.output[0].approval_request_id == request.id
    assert second.output_text == "Tool results: 42"


def test_an_mcp_server_the_egress_policy_refuses_is_listed_with_its_error(client, mcp_servers):
    refused = {"type": "mcp", "server_label": "inner", "server_url": mcp_servers.http_url, "require_approval": "never"}
    response = client.responses.create(model="openai/fake-model", input="hello", tools=[refused])
    conforms(response)
    listing = response.output[0]
    assert listing.type == "mcp_list_tools"
    assert listing.tools == []
    assert "127.0.0.1" in listing.error
    assert response.output_text == "Echo: hello"


# --- input tokens and compaction -------------------------------------------------------------------------


def test_input_tokens_count_what_a_response_would_send(client, api_stack):
    short = client.responses.input_tokens.count(model="openai/fake-model", input="one two")
    longer = client.responses.input_tokens.count(
        model="openai/fake-model", input="one two three four five six seven eight nine ten eleven twelve"
    )
    assert openapi_errors(short.model_dump(mode="json"), "TokenCountsResource") == []
    assert 0 < short.input_tokens < longer.input_tokens
    first = client.responses.create(model="echo-agent", input="remember the word pineapple")
    chained = client.responses.input_tokens.count(model="echo-agent", input="and?", previous_response_id=first.id)
    alone = client.responses.input_tokens.count(model="echo-agent", input="and?")
    assert chained.input_tokens > alone.input_tokens  # the chain's history counts


def test_compact_shrinks_a_conversation_to_items_a_next_request_takes(client, fake_llm, api_stack):
    first = client.responses.create(model="echo-agent", input="the launch is on friday")
    reply = httpx.post(
        f"{api_stack.base_url}/v1/responses/compact",
        json={"model": "echo-agent", "previous_response_id": first.id, "input": "what was decided?"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    compacted = reply.json()
    assert openapi_errors(compacted, "CompactResource") == []
    sent = next(r for r in reversed(fake_llm.requests()) if "Summarise the conversation" in json.dumps(r))
    assert "the launch is on friday" in json.dumps(sent["messages"])
    assert compacted["output"][0]["content"][0]["text"].startswith("Summary of the conversation so far:")
    assert sent["messages"][0]["content"] == "You are the echo agent."
    follow = client.responses.create(model="echo-agent", input=compacted["output"])
    assert follow.status == "completed"


def test_a_models_reasoning_is_a_reasoning_item_streamed_as_summary_text(client, api_stack):
    body = {
        "model": "openai/fake-model",
        "input": "[[think weighing both options]] decide",
        "reasoning": {"summary": "auto"},
    }
    events = events_of(api_stack.base_url, body)
    kinds = [e["type"] for e in events]
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
    ]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta")
    assert deltas == "weighing both options"
    assert kinds.index("response.reasoning_summary_text.done") < kinds.index("response.output_text.delta")
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": "weighing both options"}]
    stored = client.responses.retrieve(final["id"])
    assert stored.output[0].summary[0].text == "weighing both options"


def test_reasoning_deltas_stay_out_of_the_assistants_stream(client, api_stack):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "[[think quietly]] hello"}])
    body = {"assistant_id": "asst_echoXagent", "stream": True}
    with httpx.stream("POST", f"{api_stack.base_url}/v1/threads/{thread.id}/runs", json=body, timeout=30) as reply:
        names = [line[7:] for line in reply.iter_lines() if line.startswith("event: ")]
    assert "thread.run.completed" in names
    assert not [n for n in names if not n.startswith("thread.") and n != "done"]
    response = client.responses.create(model="echo-agent", input="and now?", conversation=thread.id)
    assert response.output_text == "Echo: and now?"


def test_max_tool_calls_bounds_the_calls_made_on_the_server(client):
    response = client.responses.create(
        model="http-agent",
        input='[[call:lookup {"q": "a"}]] [[call:lookup {"q": "b"}]] [[call:search {"q": "c"}]] twice',
        max_tool_calls=1,
    )
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert len(calls) == 3
    made = [c for c in calls if c.error is None]
    refused = [c for c in calls if c.error is not None]
    assert len(made) == 1
    assert all("max_tool_calls" in c.error.content[0]["text"] for c in refused)
    assert response.max_tool_calls == 1


def test_image_parts_reach_the_model_and_the_conversation(client, fake_llm):
    image = "data:image/png;base64,iVBORw0KGgo="
    response = client.responses.create(
        model="openai/fake-model",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is in the picture?"},
                    {"type": "input_image", "image_url": image, "detail": "low"},
                ],
            }
        ],
    )
    assert response.output_text == "Echo: what is in the picture?"
    sent = next(r for r in reversed(fake_llm.requests()) if "what is in the picture?" in json.dumps(r))
    parts = sent["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": image, "detail": "low"}} in parts
    assert sent["messages"][-1]["role"] == "user"
    items = client.responses.input_items.list(response.id).data
    assert [p.type for p in items[0].content] == ["input_text", "input_image"]


def test_manifest_mcp_tools_carry_their_servers_label(client):
    response = client.responses.create(model="mcp-http-agent", input='[[call:add {"a": 1, "b": 2}]] add')
    (call,) = [item for item in response.output if item.type == "mcp_call"]
    assert (call.server_label, call.output) == ("remote", "3")


def test_max_output_tokens_ends_a_response_incomplete(client):
    response = client.responses.create(model="echo-agent", input="[[long:100]] talk", max_output_tokens=16)
    conforms(response)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 16
