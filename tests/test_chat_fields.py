"""Chat Completions accept every field OpenAI documents, pass on what the provider takes, put the
legacy `functions` and `custom` tools back in their own shapes, and run an agent's server-side tools
on the server: only calls to the client's own tools come back as `tool_calls`."""

import json

import httpx
import openai
import pytest
from openai import OpenAI

from openapi_check import openapi_errors


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def last_request(fake_llm, marker: str) -> dict:
    return next(r for r in reversed(fake_llm.requests()) if marker in json.dumps(r.get("messages")))


def test_documented_fields_are_accepted_and_passed_on(client, fake_llm):
    completion = client.chat.completions.create(
        model="openai/fake-model",
        messages=[{"role": "user", "content": "fields please"}],
        logprobs=True,
        top_logprobs=2,
        prediction={"type": "content", "content": "Echo: fields please"},
        modalities=["text"],
        verbosity="low",
        prompt_cache_retention="24h",
        service_tier="auto",
        prompt_cache_key="k1",
    )
    body = completion.model_dump(mode="json", exclude_unset=True)
    assert openapi_errors(body, "CreateChatCompletionResponse") == [], body
    tokens = [t.token for t in completion.choices[0].logprobs.content]
    assert tokens == ["Echo:", "fields", "please"]
    sent = last_request(fake_llm, "fields please")
    assert (sent["logprobs"], sent["top_logprobs"], sent["verbosity"]) == (True, 2, "low")
    assert sent["prediction"]["type"] == "content"
    assert sent["prompt_cache_key"] == "k1"


def test_logprobs_come_in_the_chunks(client):
    stream = client.chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": "stream logprobs"}], logprobs=True, stream=True
    )
    tokens = [t.token for chunk in stream for c in chunk.choices if c.logprobs for t in c.logprobs.content]
    assert tokens == ["Echo:", " stream", " logprobs"]


def test_a_field_the_provider_cannot_honour_is_a_400_naming_it(client, fake_llm):
    before = len(fake_llm.requests())
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="anthropic/claude-3-5-haiku-latest", messages=[{"role": "user", "content": "x"}], logprobs=True
        )
    assert refused.value.body["param"] == "logprobs"
    assert len(fake_llm.requests()) == before  # refused before anything was sent


def test_legacy_functions_come_back_as_function_call(client, fake_llm):
    completion = client.chat.completions.create(
        model="openai/fake-model",
        messages=[{"role": "user", "content": '[[call:get_time {"city": "Lima"}]] legacy'}],
        functions=[{"name": "get_time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        function_call="auto",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call.name == "get_time"
    assert json.loads(choice.message.function_call.arguments) == {"city": "Lima"}
    assert last_request(fake_llm, "legacy")["tools"][0]["function"]["name"] == "get_time"


def test_custom_tools_come_back_as_custom_calls(client):
    completion = client.chat.completions.create(
        model="openai/fake-model",
        messages=[{"role": "user", "content": '[[call:run_sql {"input": "select 1"}]] custom'}],
        tools=[{"type": "custom", "custom": {"name": "run_sql", "description": "Runs SQL"}}],
    )
    (call,) = completion.choices[0].message.tool_calls
    assert (call.type, call.custom.name, call.custom.input) == ("custom", "run_sql", "select 1")


def test_an_agents_server_side_tools_run_inside_the_completion(client, fake_llm):
    completion = client.chat.completions.create(
        model="http-agent", messages=[{"role": "user", "content": '[[call:lookup {"q": "inside"}]] server side'}]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert choice.message.content.startswith("Tool results: ")
    assert '"q": "inside"' in choice.message.content or '"q":"inside"' in choice.message.content
    follow_up = last_request(fake_llm, "server side")
    assert follow_up["messages"][-1]["role"] == "tool"  # the server answered the call and asked again
    assert completion.usage.prompt_tokens > follow_up["messages"][-1]["content"].count(" ")  # both turns counted


def test_streamed_with_server_side_tools_the_client_sees_only_text(client):
    stream = client.chat.completions.create(
        model="http-agent",
        messages=[{"role": "user", "content": '[[call:lookup {"q": "streamed"}]] stream it'}],
        stream=True,
    )
    chunks = list(stream)
    assert not any(c.delta.tool_calls for chunk in chunks for c in chunk.choices)
    text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
    assert text.startswith("Tool results: ")
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_only_the_clients_own_tools_come_back(client, fake_llm):
    mine = {"type": "function", "function": {"name": "ask_me", "parameters": {"type": "object", "properties": {}}}}
    completion = client.chat.completions.create(
        model="http-agent", messages=[{"role": "user", "content": "[[call:ask_me {}]] mine"}], tools=[mine]
    )
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "ask_me"
    offered = {t["function"]["name"] for t in last_request(fake_llm, "mine")["tools"]}
    assert {"ask_me", "lookup"} <= offered


def test_an_agent_tool_nobody_here_runs_is_not_offered(client, fake_llm):
    client.chat.completions.create(model="echo-agent", messages=[{"role": "user", "content": "unbound tools"}])
    assert "tools" not in last_request(fake_llm, "unbound tools")  # get_weather has no server and no client


def test_stored_completions_are_not_listed(api_stack):
    reply = httpx.get(f"{api_stack.base_url}/v1/chat/completions", timeout=10)
    assert reply.status_code == 405
    assert "POST" in reply.headers["allow"]
