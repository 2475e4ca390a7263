"""Agents that use agents: an orchestrator delegating to specialists (child runs linked to their
parent, usage rolled up, fan-out bounded) and hand-offs to a team member and to a registered agent."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from openai import OpenAI

from ossabus.contracts.agent import AgentDefinition, TeamMember, ToolDefinition
from ossabus.contracts.ids import derived_id
from ossabus.executor import team

from conftest import register_manifest, shared_path


def agent(name: str, spec: dict) -> dict:
    return {
        "apiVersion": "ossa/v0.4.7",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"role": f"You are {name}.", "llm": {"provider": "openai", "model": "fake-model"}, **spec},
    }


def client(base: str) -> OpenAI:
    return OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)


def run_to_end(sdk: OpenAI, assistant_id: str, text: str):
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=100)
    return thread, run


def assistant_id(base: str, name: str) -> str:
    found = [a for a in client(base).beta.assistants.list(limit=100) if a.name == name]
    assert found, name
    return found[0].id


def test_an_orchestrator_delegates_to_two_specialists_in_child_runs(api_stack, fake_llm):
    base, tag = api_stack.base_url, uuid.uuid4().hex[:8]
    name = f"orchestrator-{tag}"
    register_manifest(
        base,
        agent(
            name,
            {
                "subagents": [
                    {"name": "researcher", "kind": "specialist", "role": "You research.", "maxTokenBudget": 5000},
                    {"name": "writer", "kind": "worker", "role": "You write.", "tools": ["get_weather"]},
                ],
                "tools": [
                    {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
                ],
            },
        ),
    )
    sdk = client(base)
    orchestrator = assistant_id(base, name)
    tools = {t.function.name for t in sdk.beta.assistants.retrieve(orchestrator).tools}
    assert {"ask_researcher", "ask_writer", "get_weather"} <= tools
    fake_llm.reset()
    text = (
        f'[[call:ask_researcher {{"task": "find facts on bees {tag}"}}]] '
        f'[[call:ask_writer {{"task": "write a line on bees {tag}"}}]] go'
    )
    thread, run = run_to_end(sdk, orchestrator, text)
    assert run.status == "completed", run.last_error
    answer = sdk.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    assert answer == f"Tool results: Echo: find facts on bees {tag} | Echo: write a line on bees {tag}"

    requests = fake_llm.requests()
    child_requests = [
        r
        for r in requests
        if r["messages"][-1]["content"] in (f"find facts on bees {tag}", f"write a line on bees {tag}")
    ]
    assert sorted(r["messages"][0]["content"] for r in child_requests) == ["You research.", "You write."]
    writer = next(r for r in child_requests if r["messages"][0]["content"] == "You write.")
    assert [t["function"]["name"] for t in writer.get("tools", [])] == ["get_weather"]  # its tools only
    researcher = next(r for r in child_requests if r["messages"][0]["content"] == "You research.")
    assert "tools" not in researcher
    assert researcher.get("max_tokens") == 5000 or researcher.get("max_completion_tokens") == 5000

    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data
    calls = [c for s in steps if s.type == "tool_calls" for c in s.step_details.tool_calls]
    assert sorted(c.function.name for c in calls) == ["ask_researcher", "ask_writer"]
    events = httpx.get(f"{base}/v1/threads/{thread.id}/runs/{run.id}/events", timeout=30).text
    assert "event: ossabus.delegate" not in events  # the Assistants stream keeps to OpenAI's events
    # each child is an ordinary run on its own thread, linked to its parent
    children_usage = 0
    for call in calls:
        seed = f"{run.id}:{call.id}"
        child = sdk.beta.threads.runs.retrieve(thread_id=derived_id("thread", seed), run_id=derived_id("run", seed))
        assert child.status == "completed"
        assert child.metadata["parent_run_id"] == run.id
        assert child.metadata["parent_thread_id"] == thread.id
        assert child.metadata["ossa_depth"] == "1"
        children_usage += child.usage.total_tokens
    assert run.usage.total_tokens > children_usage > 0  # the parent's usage counts its delegates'


def test_delegations_per_run_are_bounded(api_stack):
    base, tag = api_stack.base_url, uuid.uuid4().hex[:8]
    name = f"fanout-agent-{tag}"
    register_manifest(base, agent(name, {"subagents": [{"name": "helper", "role": "You help."}]}))
    calls = " ".join(f'[[call:ask_helper {{"task": "job {i} {tag}"}}]]' for i in range(4))
    sdk = client(base)
    thread, run = run_to_end(sdk, assistant_id(base, name), calls)
    assert run.status == "completed"
    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data
    outputs = [c.function.output for s in steps if s.type == "tool_calls" for c in s.step_details.tool_calls]
    refused = [o for o in outputs if "too_many_delegations" in o]
    assert len(outputs) == 4
    assert len(refused) == 1  # OSSABUS_MAX_DELEGATIONS=3 in the test stack


def test_delegation_depth_is_bounded(api_stack, fake_llm):
    """An agent asks one that asks a third: past OSSABUS_MAX_AGENT_DEPTH (1 in the test stack) the
    second is told so, and the third is never asked."""
    base, tag = api_stack.base_url, uuid.uuid4().hex[:8]
    middle = f"middle-{tag}"
    register_manifest(base, agent(middle, {"subagents": [{"name": "echo-agent"}]}))
    top = f"top-{tag}"
    register_manifest(base, agent(top, {"subagents": [{"name": middle}]}))
    inner = json.dumps({"task": f'[[call:ask_echo_agent {{"task": "bottom {tag}"}}]] go on'})
    asked = f"[[call64:ask_middle_{tag} {base64.b64encode(inner.encode()).decode()}]] start"
    sdk = client(base)
    thread, run = run_to_end(sdk, assistant_id(base, top), asked)
    assert run.status == "completed", run.last_error
    answer = sdk.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    assert "too_deep" in answer
    assert not [r for r in fake_llm.requests() if r["messages"][-1].get("content") == f"bottom {tag}"]


def test_a_member_runs_with_its_own_prompt_model_budget_and_tools():
    parent = AgentDefinition(
        name="p",
        kind="Agent",
        api_version="ossa/v0.4.7",
        system_prompt="parent",
        tools=[
            ToolDefinition(name="a", function_name="a"),
            ToolDefinition(name="b", function_name="b"),
            ToolDefinition(name="ask_x", function_name="ask_x", kind="delegate", member="x"),
        ],
        members=[TeamMember(name="x", role="child", tools=["b", "ask_x"], model="gpt-4o-mini", max_tokens=2000)],
    )
    parent.llm.provider, parent.llm.model = "openai", "gpt-4o"
    member = team.member_definition(parent, "x")
    assert member is not None
    assert member.system_prompt == "child"
    assert [t.name for t in member.tools] == ["b"]  # no team tools: depth comes from registered agents
    assert member.llm.litellm_model == "openai/gpt-4o-mini"
    assert member.limits.max_completion_tokens == 2000
    assert team.member_definition(parent, "nobody") is None


def test_a_swarm_hands_the_conversation_over_to_a_member(api_stack, fake_llm):
    base, tag = api_stack.base_url, uuid.uuid4().hex[:8]
    name = f"triage-{tag}"
    register_manifest(
        base,
        agent(
            name,
            {
                "team": {
                    "model": "swarm",
                    "lead": "triage",
                    "members": [
                        {"name": "triage", "kind": "team-lead", "role": "Route requests."},
                        {"name": "sales", "kind": "teammate", "role": f"You are sales {tag}."},
                    ],
                }
            },
        ),
    )
    sdk = client(base)
    fake_llm.reset()
    thread, run = run_to_end(
        sdk, assistant_id(base, name), f'[[call:transfer_to_sales {{"reason": "wants to buy"}}]] buy {tag}'
    )
    assert run.status == "completed", run.last_error
    assert run.instructions == f"You are sales {tag}."
    assert run.metadata["ossa_active"] == "member:sales"
    last = fake_llm.requests()[-1]
    assert last["messages"][0]["content"] == f"You are sales {tag}."  # the rest of the run is the member's
    assert "tools" not in last
    answer = sdk.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    assert answer == 'Tool results: {"handed_over_to": "sales"}'


def test_a_handoff_reaches_a_registered_agent_and_is_bounded(api_stack, fake_llm):
    base, tag = api_stack.base_url, uuid.uuid4().hex[:8]
    name = f"front-desk-{tag}"
    register_manifest(
        base,
        agent(
            name,
            {
                "handoffs": [{"name": "to_echo", "target_agent": "echo-agent", "description": "for echoes"}],
                "handoff_config": {"max_handoffs": 1},
            },
        ),
    )
    sdk = client(base)
    fake_llm.reset()
    _, run = run_to_end(sdk, assistant_id(base, name), f"[[call:to_echo {{}}]] echo {tag}")
    assert run.status == "completed", run.last_error
    second = fake_llm.requests()[1]
    assert second["messages"][0]["content"] == "You are the echo agent."
    assert {t["function"]["name"] for t in second["tools"]} >= {"get_weather", "get_time"}  # echo-agent's tools
    assert run.metadata["ossa_handoffs"] == "1"


@pytest.mark.parametrize(
    "path", ["subagents-pipeline.ossa.yaml", "swarm-handoff.ossa.yaml", "team-lead-teammate.ossa.yaml"]
)
def test_the_shipped_team_examples_become_tools(path):
    from ossabus.registry.documents import parse_documents
    from ossabus.registry.validation import validate_document

    file = shared_path("ossa", "examples-v0.4", path)
    documents = parse_documents(file.read_text(), str(file))
    definition = validate_document(documents[0]).definition
    assert definition is not None
    reached = [t for t in definition.tools if t.kind in ("delegate", "handoff")]
    assert reached
    assert {t.member for t in reached} <= {m.name for m in definition.members}


def test_a_delegation_shows_in_a_responses_answer_as_a_server_side_call(api_stack):
    base, tag = api_stack.base_url, uuid.uuid4().hex[:8]
    name = f"delegating-{tag}"
    register_manifest(base, agent(name, {"subagents": [{"name": "checker", "role": "You check."}]}))
    response = client(base).responses.create(model=name, input=f'[[call:ask_checker {{"task": "check {tag}"}}]] go')
    assert response.status == "completed"
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [(c.name, c.output) for c in calls] == [("ask_checker", f"Echo: check {tag}")]
    assert response.output_text == f"Tool results: Echo: check {tag}"


def test_a_delegates_answer_streams_into_the_parents_vercel_stream(api_stack, node_clients):
    """The `ai` package reads the child's answer as preliminary outputs of the call, then the final one."""
    import subprocess

    base, tag = api_stack.base_url, uuid.uuid4().hex[:8]
    name = f"streaming-lead-{tag}"
    register_manifest(base, agent(name, {"subagents": [{"name": "writer", "role": "You write."}]}))
    words = " ".join(f"w{i}" for i in range(8))
    done = subprocess.run(
        [
            "node",
            str(node_clients / "vercel_chat.mjs"),
            base,
            "parse",
            name,
            f'[[call:ask_writer {{"task": "{words}"}}]] go',
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    outputs = [c for c in result["raw"] if c["type"] == "tool-output-available"]
    preliminary = [c["output"] for c in outputs if c.get("preliminary")]
    assert len(preliminary) >= 2  # the answer as it grew
    assert all(words.startswith(p.removeprefix("Echo: ").rstrip()) or p == "Echo:" for p in preliminary), preliminary
    assert outputs[-1].get("preliminary") is None
    assert outputs[-1]["output"] == f"Echo: {words}"
    part = next(p for p in result["message"]["parts"] if p["type"] == "tool-ask_writer")
    assert part["state"] == "output-available"
    assert part["output"] == f"Echo: {words}"
    assert part.get("preliminary") in (None, False)
