"""Tracing: one trace per run across three processes and real NATS hops, with the GenAI attributes."""

import asyncio
import json
import time
from pathlib import Path

import pytest
from openai import OpenAI

from conftest import (
    free_port,
    llm_env,
    register_manifest,
    rendered_agents,
    reset_jetstream,
    start_service,
    start_stack,
    stop_all,
)


def spans_in(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- tracing --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traced(nats_url, fake_llm, tmp_path_factory):
    """The relay (and registry, telemetry) in one process, the executor and the dispatcher in two
    others, each writing its spans to a file of its own."""
    asyncio.run(reset_jetstream(nats_url))
    tmp = tmp_path_factory.mktemp("traced")
    files = {name: tmp / f"{name}.jsonl" for name in ("edge", "executor", "dispatcher")}
    env = llm_env(fake_llm)
    content = {"OSSABUS_TRACE_CONTENT": "true"}  # the operator opts in, where the model is called
    edge = start_stack(
        [
            "up",
            "--nats-url",
            nats_url,
            "--manifests",
            str(rendered_agents(fake_llm.base_url)),
            "--without",
            "executor",
            "--without",
            "dispatcher",
        ],
        tmp / "edge.log",
        free_port(),
        env={**env, "OSSABUS_TRACES_FILE": str(files["edge"])},
    )
    others = [
        start_service(name, nats_url, {**env, "OSSABUS_TRACES_FILE": str(files[name]), **content}, tmp / f"{name}.log")
        for name in ("executor", "dispatcher")
    ]
    yield edge, files
    stop_all(others)
    assert edge.stop() == 0, edge.logs()


def test_one_trace_follows_a_run_across_processes_and_nats_hops(traced):
    edge, files = traced
    client = OpenAI(base_url=f"{edge.base_url}/v1", api_key="unused", max_retries=0)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": '[[call:lookup {"order": "T-1"}]]'}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_approvalXagent", poll_interval_ms=100
    )
    assert run.status == "completed"
    time.sleep(0.5)  # the last spans are written when they end
    by_process = {name: spans_in(path) for name, path in files.items()}
    agent = next(s for s in by_process["executor"] if s["name"] == "invoke_agent approval-agent")
    trace_id = agent["context"]["trace_id"]
    in_trace = {name: [s for s in spans if s["context"]["trace_id"] == trace_id] for name, spans in by_process.items()}
    assert all(in_trace.values()), {name: len(spans) for name, spans in in_trace.items()}  # all three processes

    everything = {s["context"]["span_id"]: s for spans in in_trace.values() for s in spans}
    http = next(s for s in in_trace["edge"] if s["name"].startswith("POST") and s["kind"] == "SpanKind.SERVER")
    consumed = next(s for s in in_trace["executor"] if s["name"] == "ossa.tasks.approval-agent process")
    assert consumed["parent_id"] in {s["context"]["span_id"] for s in in_trace["edge"]}  # a real NATS hop

    def ancestors(span: dict) -> list[str]:
        names = []
        while span.get("parent_id") in everything:
            span = everything[span["parent_id"]]
            names.append(span["name"])
        return names

    chat = next(s for s in in_trace["executor"] if s["name"] == "chat fake-model")
    tool = next(s for s in in_trace["dispatcher"] if s["name"] == "execute_tool lookup")
    assert "invoke_agent approval-agent" in ancestors(chat)
    assert "invoke_agent approval-agent" in ancestors(tool)  # executor -> bus -> dispatcher
    assert http["name"] in ancestors(tool)  # ... and back to the HTTP request that started it

    assert agent["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert agent["attributes"]["gen_ai.agent.name"] == "approval-agent"
    assert agent["attributes"]["gen_ai.conversation.id"] == thread.id
    a = chat["attributes"]
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == (
        "chat",
        "openai",
        "fake-model",
    )
    assert a["gen_ai.response.model"] == "fake-model"
    assert a["gen_ai.response.finish_reasons"] in (["tool_calls"], ["stop"])
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.conversation.id"] == thread.id
    assert "T-1" in a["gen_ai.input.messages"]  # the operator opted in and the agent has no audit block
    t = tool["attributes"]
    assert (t["gen_ai.operation.name"], t["gen_ai.tool.name"]) == ("execute_tool", "lookup")
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    assert t["gen_ai.tool.call.id"] == steps[0].step_details.tool_calls[0].id
    step_spans = [s["name"] for s in in_trace["executor"] if s["name"].startswith("run_step")]
    assert step_spans == ["run_step tool_calls", "run_step message_creation"]  # trace_run_steps is on by default


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_completion_is_one_trace_from_the_http_request_to_the_model_call(traced, stream):
    """The executor serves `ossa.chat.*` on a plain nats-py subscription (not FastStream's): the trace
    context still crosses the bus, into a CONSUMER span that is the model call's ancestor."""
    edge, files = traced
    client = OpenAI(base_url=f"{edge.base_url}/v1", api_key="unused", max_retries=0)
    marker = f"traced chat {stream} {time.time_ns()}"
    messages = [{"role": "user", "content": marker}]
    if stream:
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="openai/fake-model", messages=messages, stream=True)
            if c.choices
        )
    else:
        text = client.chat.completions.create(model="openai/fake-model", messages=messages).choices[0].message.content
    assert text == f"Echo: {marker}"
    time.sleep(0.5)
    executor = spans_in(files["executor"])
    chat = next(
        s
        for s in executor
        if s["name"] == "chat fake-model" and marker in s["attributes"].get("gen_ai.input.messages", "")
    )
    trace_id = chat["context"]["trace_id"]
    edge_spans = {s["context"]["span_id"]: s for s in spans_in(files["edge"]) if s["context"]["trace_id"] == trace_id}
    http = [s for s in edge_spans.values() if s["name"].startswith("POST") and s["kind"] == "SpanKind.SERVER"]
    assert len(http) == 1, [s["name"] for s in edge_spans.values()]
    mine = {s["context"]["span_id"]: s for s in executor if s["context"]["trace_id"] == trace_id}
    consumed = mine[chat["parent_id"]]
    while consumed["kind"] != "SpanKind.CONSUMER":
        consumed = mine[consumed["parent_id"]]
    assert consumed["name"].startswith("ossa.chat.")
    assert consumed["name"].endswith(" process")
    assert consumed["attributes"]["messaging.system"] == "nats"
    assert consumed["parent_id"] in edge_spans  # a real NATS hop, from the relay's request


def test_an_agent_whose_manifest_turns_tracing_off_gets_no_agent_or_model_spans(traced):
    edge, files = traced
    client = OpenAI(base_url=f"{edge.base_url}/v1", api_key="unused", max_retries=0)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "quietly"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_untracedXagent")
    assert run.status == "completed"
    time.sleep(0.5)
    names = [s["name"] for s in spans_in(files["executor"])]
    assert "ossa.tasks.untraced-agent process" in names  # the bus hop is still traced
    assert "invoke_agent untraced-agent" not in names
    assert not any(s["attributes"].get("gen_ai.conversation.id") == thread.id for s in spans_in(files["executor"]))


def test_an_agents_audit_block_keeps_its_prompts_off_spans_even_when_the_operator_captures_content(traced):
    edge, files = traced
    manifest = """\
apiVersion: ossa/v0.5
kind: Agent
metadata: {name: audited-agent}
spec:
  instructions: You keep secrets.
  model: {provider: openai, model: fake-model}
security:
  audit: {log_inputs: false, log_outputs: true}
"""
    register_manifest(edge.base_url, manifest)
    client = OpenAI(base_url=f"{edge.base_url}/v1", api_key="unused", max_retries=0)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "my PIN is zq-4711-kx"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_auditedXagent")
    assert run.status == "completed"
    answer = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    time.sleep(0.5)
    chat = next(
        s
        for s in spans_in(files["executor"])
        if s["name"] == "chat fake-model" and s["attributes"].get("gen_ai.conversation.id") == thread.id
    )
    assert "gen_ai.input.messages" not in chat["attributes"]
    assert answer in chat["attributes"]["gen_ai.output.messages"]  # outputs: the agent allows them
    for span in spans_in(files["executor"]):  # and the PIN is nowhere else (the fake's answer repeats it)
        span["attributes"].pop("gen_ai.output.messages", None)
        assert "zq-4711-kx" not in json.dumps(span), span["name"]  # (a bare 4711 can be in a timestamp)
