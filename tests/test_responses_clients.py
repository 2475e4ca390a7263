"""Today's clients, unmodified and on their defaults (the Responses API), against ossabus over a real
socket: the OpenAI Agents SDK (a function tool, a handoff), pydantic-ai's OpenAIResponsesModel,
LangChain's Responses mode, and the Vercel AI SDK's `@ai-sdk/openai` in Node.js; plus LangChain's
`logprobs=True` and the Agents SDK on an agent with a server-side tool through Chat Completions."""

import asyncio
import json
import subprocess

import pytest


@pytest.fixture(scope="module")
def base(api_stack) -> str:
    return f"{api_stack.base_url}/v1"


# --- the OpenAI Agents SDK ---------------------------------------------------------------------------


def agents_run(base: str, build, text: str):
    """Run an Agents SDK agent against ossabus (its default model class: the Responses API)."""
    import agents
    from openai import AsyncOpenAI

    async def main():
        client = AsyncOpenAI(base_url=base, api_key="unused", max_retries=0)
        agents.set_default_openai_client(client, use_for_tracing=False)
        agents.set_tracing_disabled(True)
        return await agents.Runner.run(build(agents), text)

    return asyncio.run(main())


def test_the_agents_sdk_runs_its_function_tool(base):
    seen = []

    def build(agents):
        @agents.function_tool
        def get_weather(city: str) -> str:
            """Weather for a city."""
            seen.append(city)
            return f"cloudy in {city}"

        return agents.Agent(
            # (the SDK strips an `openai/` prefix; a plain OpenAI model name goes to the operator's provider)
            name="weather",
            instructions="You tell the weather.",
            model="gpt-4o-mini",
            tools=[get_weather],
        )

    result = agents_run(base, build, '[[call:get_weather {"city": "Tromso"}]] weather?')
    assert seen == ["Tromso"]
    assert result.final_output == "Tool results: cloudy in Tromso"


def test_the_agents_sdk_hands_off_between_two_agents(base, fake_llm):
    def build(agents):
        spanish = agents.Agent(name="spanish", instructions="Respondes en castellano.", model="gpt-4o-mini")
        return agents.Agent(name="triage", instructions="You route.", model="gpt-4o-mini", handoffs=[spanish])

    result = agents_run(base, build, "[[call:transfer_to_spanish {}]] hola")
    assert result.last_agent.name == "spanish"
    assert result.final_output.startswith("Tool results: ")
    last = next(r for r in reversed(fake_llm.requests()) if "hola" in json.dumps(r.get("messages")))
    assert last["messages"][0] == {"role": "system", "content": "Respondes en castellano."}  # the second agent spoke


def test_the_agents_sdk_sees_server_side_tools_as_done_through_responses(base):
    def build(agents):
        return agents.Agent(name="caller", instructions="", model="http-agent")

    result = agents_run(base, build, '[[call:lookup {"q": "sdk"}]] look')
    assert result.final_output.startswith("Tool results: ")
    kinds = [item.type for item in result.new_items]
    assert "tool_call_item" in kinds  # the mcp_call, as a hosted call the SDK did not have to run


def test_the_agents_sdk_on_chat_completions_gets_only_the_final_answer(base):
    def build(agents):
        from agents import OpenAIChatCompletionsModel
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=base, api_key="unused", max_retries=0)
        return agents.Agent(
            name="chatter", instructions="", model=OpenAIChatCompletionsModel(model="http-agent", openai_client=client)
        )

    result = agents_run(base, build, '[[call:lookup {"q": "chat"}]] look')
    assert result.final_output.startswith("Tool results: ")  # no "Tool lookup not found"


# --- pydantic-ai ---------------------------------------------------------------------------------------


def test_pydantic_ai_responses_model_with_a_tool(base):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIResponsesModel("openai/fake-model", provider=OpenAIProvider(base_url=base, api_key="unused"))
    agent = Agent(model, instructions="You help.")
    asked = []

    @agent.tool_plain
    def get_time(city: str) -> str:
        """Time in a city."""
        asked.append(city)
        return f"noon in {city}"

    result = agent.run_sync('[[call:get_time {"city": "Quito"}]] time?')
    assert asked == ["Quito"]
    assert result.output == "Tool results: noon in Quito"
    plain = Agent(OpenAIResponsesModel("echo-agent", provider=OpenAIProvider(base_url=base, api_key="unused")))
    assert plain.run_sync("from pydantic").output == "Echo: from pydantic"


# --- LangChain -----------------------------------------------------------------------------------------


def test_langchain_in_responses_mode(base):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="echo-agent", base_url=base, api_key="unused", use_responses_api=True, max_retries=0)
    assert chat.invoke("from langchain").text == "Echo: from langchain"
    with_tool = chat.bind_tools(
        [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
    )
    message = with_tool.invoke('[[call:get_weather {"city": "Nice"}]] weather')
    assert message.tool_calls[0]["name"] == "get_weather"
    assert message.tool_calls[0]["args"] == {"city": "Nice"}


def test_langchain_logprobs_through_chat_completions(base):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="openai/fake-model", base_url=base, api_key="unused", logprobs=True, max_retries=0)
    message = chat.invoke("with logprobs")
    tokens = [entry["token"] for entry in message.response_metadata["logprobs"]["content"]]
    assert tokens == ["Echo:", "with", "logprobs"]


# --- the Vercel AI SDK's OpenAI provider (Node.js) --------------------------------------------------------


def test_ai_sdk_openai_provider_on_its_default_responses_path(api_stack, node_clients):
    out = subprocess.run(
        ["node", str(node_clients / "ai_sdk_openai.mjs"), api_stack.base_url, "openai/fake-model"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout)
    assert seen["calls"] == ["Bergen"]  # the SDK ran its own tool and sent the output back
    assert seen["text"] == "Tool results: sunny in Bergen"
    assert seen["steps"] == 2
    assert seen["streamedText"] == "Echo: stream through the ai sdk"
    assert seen["streamedParts"] > 1
    assert seen["usage"]["outputTokens"] > 0
