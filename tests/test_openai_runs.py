"""Assistants v2 through the unmodified `openai` SDK: runs, streaming, tool calls, limits, failures."""

import json
import time

import httpx
import openai
import pytest
from openai import AssistantEventHandler, OpenAI

ECHO = "asst_echoXagent"
HASTY = "asst_hastyXagent"


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=30)


class Recorder(AssistantEventHandler):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []
        self.text = ""

    def on_event(self, event):
        self.names.append(event.event)

    def on_text_delta(self, delta, snapshot):
        self.text += delta.value or ""


def thread_with(client, text: str):
    return client.beta.threads.create(messages=[{"role": "user", "content": text}])


def assistant_texts(client, thread_id: str) -> list[str]:
    messages = client.beta.threads.messages.list(thread_id=thread_id, order="asc")
    return [m.content[0].text.value for m in messages.data if m.role == "assistant"]


def test_create_and_poll_runs_the_agent_with_its_system_prompt(client, fake_llm):
    thread = thread_with(client, "hello there")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=ECHO)
    assert run.status == "completed"
    assert run.usage.total_tokens == run.usage.prompt_tokens + run.usage.completion_tokens > 0
    assert run.model == "fake-model"
    assert assistant_texts(client, thread.id) == ["Echo: hello there"]
    sent = fake_llm.last_request()
    assert sent["model"] == "fake-model"
    assert sent["messages"][0] == {"role": "system", "content": "You are the echo agent."}
    assert sent["messages"][-1] == {"role": "user", "content": "hello there"}
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "get_time"]


def test_streamed_run_arrives_in_openai_order_and_the_handler_builds_the_final_state(client):
    thread = thread_with(client, "stream this")
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=ECHO, event_handler=handler) as stream:
        stream.until_done()
        final_messages = stream.get_final_messages()
        final_run = stream.get_final_run()
    expected_start = [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
    ]
    assert handler.names[: len(expected_start)] == expected_start
    assert set(handler.names[len(expected_start) : -3]) == {"thread.message.delta"}
    assert handler.names[-3:] == ["thread.message.completed", "thread.run.step.completed", "thread.run.completed"]
    assert handler.text == "Echo: stream this"
    assert [m.content[0].text.value for m in final_messages] == ["Echo: stream this"]
    assert final_run.status == "completed"
    stored = client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=final_run.id)
    assert stored.status == "completed"
    assert stored.usage == final_run.usage


def test_function_tools_park_the_run_and_submitted_outputs_finish_it(client, fake_llm):
    thread = thread_with(client, 'weather? [[call:get_weather {"city": "Paris"}]]')
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=ECHO, event_handler=handler) as stream:
        stream.until_done()
        run = stream.get_final_run()
    assert run.status == "requires_action"
    assert handler.names[-1] == "thread.run.requires_action"
    assert "thread.run.step.delta" in handler.names
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]

    after = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": calls[0].id, "output": "sunny, 21C"}],
        event_handler=after,
    ) as stream:
        stream.until_done()
        finished = stream.get_final_run()
    assert finished.status == "completed"
    assert after.text == "Tool results: sunny, 21C"
    sent = fake_llm.last_request()["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == calls[0].id
    assert sent[-1] == {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21C"}

    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    assert [(s.type, s.status) for s in steps] == [("tool_calls", "completed"), ("message_creation", "completed")]
    function = steps[0].step_details.tool_calls[0].function
    assert (function.name, json.loads(function.arguments), function.output) == (
        "get_weather",
        {"city": "Paris"},
        "sunny, 21C",
    )
    one = client.beta.threads.runs.steps.retrieve(thread_id=thread.id, run_id=run.id, step_id=steps[1].id)
    assert one.step_details.message_creation.message_id == client.beta.threads.messages.list(thread.id).data[0].id


def test_parallel_tool_calls_and_polling_helpers(client):
    thread = thread_with(client, '[[call:get_weather {"city": "Oslo"}]] [[call:get_time {"city": "Oslo"}]]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=ECHO)
    assert run.status == "requires_action"
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert sorted(c.function.name for c in calls) == ["get_time", "get_weather"]
    outputs = [{"tool_call_id": c.id, "output": f"{c.function.name}-ok"} for c in calls]

    with pytest.raises(openai.BadRequestError) as missing:
        client.beta.threads.runs.submit_tool_outputs(thread_id=thread.id, run_id=run.id, tool_outputs=outputs[:1])
    assert missing.value.body["param"] == "tool_outputs"
    with pytest.raises(openai.BadRequestError) as unknown:
        client.beta.threads.runs.submit_tool_outputs(
            thread_id=thread.id, run_id=run.id, tool_outputs=[*outputs, {"tool_call_id": "call_nope", "output": "x"}]
        )
    assert unknown.value.body["param"] == "tool_outputs[2].tool_call_id"
    assert client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id).status == "requires_action"

    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=outputs
    )
    assert done.status == "completed"
    assert assistant_texts(client, thread.id) == ["Tool results: get_weather-ok | get_time-ok"]
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(thread_id=thread.id, run_id=run.id, tool_outputs=outputs)


def test_a_thread_has_one_active_run_and_takes_no_messages_meanwhile(client):
    thread = thread_with(client, "slowly [[slow:3]]")
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=ECHO)
    with pytest.raises(openai.ConflictError) as second:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=ECHO)
    assert second.value.status_code == 409
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content="more")
    finished = client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id)
    assert finished.status == "completed"
    assert client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=ECHO).status == "completed"


def test_cancel_stops_a_running_model_call(client):
    thread = thread_with(client, "take your time [[slow:20]]")
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=ECHO)
    deadline = time.monotonic() + 10
    while client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id).status == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    cancelling = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert cancelling.status in ("cancelling", "cancelled")
    final = client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id)
    assert final.status == "cancelled"
    assert final.cancelled_at is not None
    assert time.monotonic() - started < 10, "the model call was not interrupted"
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)


def test_cancel_while_waiting_for_tool_outputs(client):
    thread = thread_with(client, '[[call:get_weather {"city": "Rome"}]]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=ECHO)
    assert run.status == "requires_action"
    cancelled = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert cancelled.status == "cancelled"
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data
    assert [s.status for s in steps] == ["cancelled"]
    assert client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=ECHO).status == "requires_action"


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("[[fail:400]]", "failed", "invalid_prompt"),
        ("[[fail:429]]", "failed", "rate_limit_exceeded"),
        ("[[fail:503]]", "failed", "server_error"),
        ("[[fail:503:2]]", "completed", None),
    ],
)
def test_model_failures_are_retried_when_transient_and_reported_without_secrets(client, fake_llm, text, status, code):
    fake_llm.reset()
    thread = thread_with(client, f"try {text}")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=ECHO)
    assert run.status == status
    if code:
        assert run.last_error.code == code
        assert "sk-test-key" not in run.last_error.message
        assert run.failed_at is not None
    attempts = len(fake_llm.requests())
    assert attempts == {"invalid_prompt": 1}.get(code, 3)  # the agent allows 3 attempts for transient errors


def test_max_completion_tokens_makes_the_run_incomplete(client):
    thread = thread_with(client, "talk [[long:400]]")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=ECHO, max_completion_tokens=256)
    assert run.status == "incomplete"
    assert run.incomplete_details.reason == "max_completion_tokens"
    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert message.status == "incomplete"
    assert len(message.content[0].text.value.split()) == 256


def test_max_prompt_tokens_truncates_history_and_reports_when_nothing_fits(client, fake_llm):
    old = " ".join(["old"] * 300)
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": old},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "newest question"},
        ]
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=ECHO, max_prompt_tokens=256)
    assert run.status == "completed"
    sent = fake_llm.last_request()["messages"]
    assert old not in [m["content"] for m in sent]
    assert sent[-1]["content"] == "newest question"

    huge = thread_with(client, " ".join(["word"] * 600))
    run = client.beta.threads.runs.create_and_poll(thread_id=huge.id, assistant_id=ECHO, max_prompt_tokens=256)
    assert run.status == "incomplete"
    assert run.incomplete_details.reason == "max_prompt_tokens"


def test_run_parameters_reach_the_model(client, fake_llm):
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=ECHO,
        additional_instructions="Be terse.",
        temperature=0.25,
        top_p=0.5,
        truncation_strategy={"type": "last_messages", "last_messages": 1},
        tool_choice="none",
        additional_messages=[{"role": "user", "content": "four"}],
        metadata={"ticket": "42"},
        response_format={"type": "json_object"},
    )
    assert run.status == "completed"
    assert run.instructions == "You are the echo agent.\n\nBe terse."
    assert run.metadata == {"ticket": "42"}
    sent = fake_llm.last_request()
    assert sent["messages"] == [
        {"role": "system", "content": "You are the echo agent.\n\nBe terse."},
        {"role": "user", "content": "four"},
    ]
    assert (sent["temperature"], sent["top_p"], sent["tool_choice"]) == (0.25, 0.5, "none")
    assert sent["response_format"] == {"type": "json_object"}


def test_runs_expire_at_the_agents_timeout(client):
    thread = thread_with(client, "very slow [[slow:6]]")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=HASTY)
    assert run.status == "expired"
    assert run.expires_at - run.created_at == 2


def test_create_thread_and_run_and_run_listing(client):
    run = client.beta.threads.create_and_run_poll(
        assistant_id=ECHO, thread={"messages": [{"role": "user", "content": "first"}]}
    )
    assert run.status == "completed"
    second = client.beta.threads.runs.create_and_poll(thread_id=run.thread_id, assistant_id=ECHO)
    runs = client.beta.threads.runs.list(thread_id=run.thread_id, limit=1)
    assert [r.id for r in runs.data] == [second.id]
    assert runs.has_more is True
    rest = client.beta.threads.runs.list(thread_id=run.thread_id, limit=1, after=second.id)
    assert [r.id for r in rest.data] == [run.id]
    assert [r.id for r in client.beta.threads.runs.list(thread_id=run.thread_id).data] == [second.id, run.id]
    updated = client.beta.threads.runs.update(thread_id=run.thread_id, run_id=run.id, metadata={"k": "v"})
    assert updated.metadata == {"k": "v"}


def test_run_retrieval_says_when_to_poll_again(api_stack, client):
    run = client.beta.threads.create_and_run_poll(
        assistant_id=ECHO, thread={"messages": [{"role": "user", "content": "x"}]}
    )
    response = httpx.get(f"{api_stack.base_url}/v1/threads/{run.thread_id}/runs/{run.id}")
    assert int(response.headers["openai-poll-after-ms"]) > 0
    assert response.headers["x-request-id"]


def test_run_errors_name_the_parameter(client):
    thread = thread_with(client, "x")
    with pytest.raises(openai.NotFoundError) as missing:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_nobody")
    assert missing.value.body["param"] == "assistant_id"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id="thread_missing", assistant_id=ECHO)
    with pytest.raises(openai.BadRequestError) as low:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=ECHO, max_prompt_tokens=10)
    assert low.value.body["param"] == "max_prompt_tokens"
    with pytest.raises(openai.BadRequestError) as extra:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=ECHO, extra_body={"colour": "blue"})
    assert extra.value.body["param"] == "colour"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(thread_id=thread.id, run_id="run_missing")
    assert client.beta.threads.runs.list(thread_id=thread.id).data == []  # nothing was created


def test_runs_use_the_assistant_as_it_is_now(client, fake_llm):
    assistant = client.beta.assistants.create(model="openai/fake-model", name="Changing", instructions="First.")
    thread = thread_with(client, "x")
    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert fake_llm.last_request()["messages"][0]["content"] == "First."
    client.beta.assistants.update(assistant.id, instructions="Second.")
    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert fake_llm.last_request()["messages"][0]["content"] == "Second."


def test_a_run_that_keeps_failing_inside_ossabus_ends_failed_after_bounded_redelivery(client, nats_url):
    """Another system wrote a record ossabus cannot use into the run's state (a well-formed step that
    names no message; a record that is not JSON at all would be skipped): every attempt fails, the
    work queue redelivers a bounded number of times, then the run is failed with last_error."""
    import asyncio

    import nats

    thread = thread_with(client, "[[call:ask_the_user {}]]")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_toolsXagent", poll_interval_ms=100
    )
    assert run.status == "requires_action"
    poison = {
        "id": "step_zzzpoison",
        "created_at": 1,
        "assistant_id": run.assistant_id,
        "thread_id": thread.id,
        "run_id": run.id,
        "type": "message_creation",
        "status": "in_progress",
        "step_details": {"type": "message_creation", "message_creation": {}},
    }

    async def write_poison():
        nc = await nats.connect(nats_url)
        kv = await nc.jetstream().key_value("ossa_runs")
        await kv.put(f"{thread.id}.{run.id}.step_zzzpoison", json.dumps(poison).encode())
        await nc.close()

    asyncio.run(write_poison())
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "x"}],
        poll_interval_ms=100,
    )
    assert run.status == "failed"
    assert run.last_error.code == "server_error"
    assert "repeatedly" in run.last_error.message
    assert client.beta.threads.runs.create(thread_id=thread.id, assistant_id=ECHO).status == "queued"  # lock freed


def test_the_tool_loop_is_capped_by_the_agents_max_steps(client):
    thread = thread_with(client, "again and again [[loop]] [[call:step {}]]")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_boundedXagent")
    for _ in range(2):  # two tool-call steps are allowed
        assert run.status == "requires_action"
        calls = run.required_action.submit_tool_outputs.tool_calls
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": c.id, "output": "ok"} for c in calls]
        )
    assert run.status == "failed"
    assert run.last_error.code == "server_error"
    assert "2 tool-call steps" in run.last_error.message


def test_a_missing_provider_key_fails_at_once_and_says_which_variable(client, api_stack):
    retries_before = api_stack.logs().count("model call failed")
    thread = thread_with(client, "hello")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_keylessXagent", poll_interval_ms=100
    )
    assert run.status == "failed"
    assert run.last_error.code == "server_error"
    assert "ANTHROPIC_API_KEY" in run.last_error.message
    assert api_stack.logs().count("model call failed") == retries_before, "a missing key was retried"


@pytest.mark.parametrize("bad", [[], "json", {"type": "xml"}, {"type": "json_object", "extra": 1}])
def test_a_response_format_openai_would_refuse_is_a_400_before_any_run(client, bad):
    thread = thread_with(client, "format me")
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=ECHO, extra_body={"response_format": bad})
    assert info.value.body["param"].startswith("response_format")
    assert client.beta.threads.runs.list(thread_id=thread.id).data == []
