"""The Vercel AI SDK endpoints, driven by the real `ai` npm package (current major: AbstractChat +
DefaultChatTransport and its stream parsers; AI SDK 4: callChatApi and processDataStream), and the
bad-input paths over plain HTTP."""

import json
import subprocess

import httpx
import pytest

# Fields each UI message chunk type defines: older SDKs reject anything else.
CHUNK_FIELDS = {
    "start": {"messageId"},
    "start-step": set(),
    "finish-step": set(),
    "text-start": {"id"},
    "text-delta": {"id", "delta"},
    "text-end": {"id"},
    "tool-input-start": {"toolCallId", "toolName"},
    "tool-input-delta": {"toolCallId", "inputTextDelta"},
    "tool-input-available": {"toolCallId", "toolName", "input"},
    "tool-output-available": {"toolCallId", "output", "preliminary"},  # preliminary: a delegate streaming
    "tool-output-error": {"toolCallId", "errorText"},
    "tool-output-denied": {"toolCallId"},
    "tool-approval-request": {"approvalId", "toolCallId"},
    "error": {"errorText"},
    "finish": {"finishReason"},
}
FINISH_REASONS = {"stop", "length", "content-filter", "tool-calls", "error", "other"}


@pytest.fixture(scope="module")
def node(api_stack, node_clients):
    def run(script: str, scenario: str, agent: str, text: str) -> dict:
        done = subprocess.run(
            ["node", str(node_clients / script), api_stack.base_url, scenario, agent, text],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    return run


@pytest.fixture(scope="module")
def http(api_stack):
    with httpx.Client(base_url=api_stack.base_url, timeout=60) as client:
        yield client


def check_chunks(chunks: list[dict]) -> None:
    for chunk in chunks:
        kind = chunk["type"]
        assert kind in CHUNK_FIELDS, chunk
        assert set(chunk) - {"type"} <= CHUNK_FIELDS[kind], chunk
        if kind == "finish":
            assert chunk["finishReason"] in FINISH_REASONS


def texts(message: dict) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def tool_parts(message: dict) -> dict[str, dict]:
    return {p["type"].removeprefix("tool-"): p for p in message["parts"] if p["type"].startswith("tool-")}


# --- AI SDK, current major ----------------------------------------------------------------------------


def test_use_chat_streams_an_answer_and_the_chat_persists_as_a_thread(node, http):
    result = node("vercel_chat.mjs", "text", "echo-agent", "hello from the browser")
    first = result["first"]
    assert first["status"] == "ready"
    assert first.get("error") is None
    user, answer = first["messages"]
    assert texts(answer) == "Echo: hello from the browser"
    assert answer["id"].startswith("run_")
    stored = http.get(f"/api/chat/{result['chatId']}/messages").json()
    assert [(m["role"], texts(m)) for m in stored["messages"]] == [
        ("user", "hello from the browser"),
        ("assistant", "Echo: hello from the browser"),
    ]
    assert stored["messages"][0]["id"] == user["id"]  # the SDK's own message id is kept
    assert stored["status"] == "completed"


def test_server_side_tools_stream_as_tool_parts_with_inputs_and_outputs(node):
    result = node("vercel_chat.mjs", "parse", "approval-agent", '[[call:lookup {"order": "B-2"}]]')
    assert result["status"] == 200
    assert result["headers"]["x-vercel-ai-ui-message-stream"] == "v1"
    check_chunks(result["raw"])
    kinds = [c["type"] for c in result["raw"]]
    assert kinds[:3] == ["start", "start-step", "tool-input-start"]
    assert kinds.index("tool-input-available") < kinds.index("tool-output-available") < kinds.index("text-start")
    assert kinds[-1] == "finish"
    assert result["raw"][-1]["finishReason"] == "stop"
    lookup = tool_parts(result["message"])["lookup"]
    assert lookup["state"] == "output-available"
    assert lookup["input"] == {"order": "B-2"}
    assert lookup["output"]["received"] == {"order": "B-2"}
    assert texts(result["message"]).startswith("Tool results: ")


def test_client_side_tools_run_in_the_browser_once_and_resume_the_run(node):
    result = node("vercel_chat.mjs", "client-tool", "echo-agent", '[[call:get_weather {"city": "Oslo"}]]')
    assert [c["toolName"] for c in result["calls"]] == ["get_weather"]  # onToolCall once, not per response
    final = result["final"]
    assert final["status"] == "ready"
    answer = final["messages"][-1]
    weather = tool_parts(answer)["get_weather"]
    assert weather["state"] == "output-available"
    assert weather["output"] == {"city": "Oslo", "sky": "foggy (from the browser)"}
    assert texts(answer) == 'Tool results: {"city": "Oslo", "sky": "foggy (from the browser)"}'
    assert len(final["messages"]) == 2  # one assistant message across both responses


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_tool_approval_requests_and_responses_go_through_use_chat(node, decision):
    result = node("vercel_chat.mjs", decision, "approval-agent", '[[call:refund {"order": "A-7", "amount": 20}]]')
    asked = tool_parts(result["asked"]["messages"][-1])["refund"]
    assert asked["state"] == "approval-requested"
    assert asked["input"] == {"order": "A-7", "amount": 20}
    answer = result["final"]["messages"][-1]
    refund = tool_parts(answer)["refund"]
    if decision == "approve":
        assert refund["state"] == "output-available"
        assert refund["output"]["received"] == {"order": "A-7", "amount": 20}
    else:
        assert refund["state"] == "output-denied"
        assert "a person declined this call: not today" in texts(answer)


def test_regenerate_replaces_the_last_answer(node, http):
    result = node("vercel_chat.mjs", "regenerate", "echo-agent", "once more")
    first_answer = result["first"]["messages"][-1]
    after = result["after"]["messages"]
    assert len(after) == 2
    assert after[-1]["id"] != first_answer["id"]
    assert texts(after[-1]) == "Echo: once more"
    stored = http.get(f"/api/chat/{result['chatId']}/messages").json()["messages"]
    assert [(m["role"], m["id"]) for m in stored][-1] == ("assistant", after[-1]["id"])
    assert len(stored) == 2


def test_a_dropped_stream_resumes_with_nothing_lost_or_doubled(node):
    prompt = "[[long:60]] [[delay:20]]"
    uninterrupted = node("vercel_chat.mjs", "text", "echo-agent", prompt)["first"]["messages"][-1]
    result = node("vercel_chat.mjs", "drop-and-resume", "echo-agent", prompt)
    assert '"text-delta"' in result["beforeDrop"]
    assert result["resumeStatus"] == 200
    check_chunks(result["raw"])
    assert texts(result["resumed"]) == texts(uninterrupted)
    assert len(texts(uninterrupted).split()) == 60
    assert result["afterStatus"] == 204  # finished: nothing left to resume


# --- AI SDK 4 ------------------------------------------------------------------------------------------


def test_ai_sdk_4_use_chat_reads_the_data_stream(node):
    result = node("vercel_chat_v4.mjs", "text", "echo-agent", "hello v4")
    assert result["message"]["content"] == "Echo: hello v4"
    assert result["finishReason"] == "stop"
    assert result["usage"]["completionTokens"] == 3


def test_ai_sdk_4_client_tools_and_tool_invocations(node):
    result = node("vercel_chat_v4.mjs", "client-tool", "echo-agent", '[[call:get_weather {"city": "Bergen"}]]')
    assert [(c["toolName"], c["args"]) for c in result["calls"]] == [("get_weather", {"city": "Bergen"})]
    invocation = result["second"]["toolInvocations"][0]
    assert invocation["state"] == "result"
    assert invocation["result"] == {"city": "Bergen", "sky": "foggy (from v4)"}
    assert result["second"]["content"] == 'Tool results: {"city": "Bergen", "sky": "foggy (from v4)"}'


def test_ai_sdk_4_parsers_see_every_data_stream_part(node):
    result = node("vercel_chat_v4.mjs", "parse", "approval-agent", '[[call:lookup {"order": "C-3"}]]')
    assert result["status"] == 200
    assert result["header"] == "v1"
    kinds = [p["type"] for p in result["parts"]]
    for kind in ("start_step", "tool_call_streaming_start", "tool_call_delta", "tool_call", "tool_result", "text"):
        assert kind in kinds
    call = next(p["value"] for p in result["parts"] if p["type"] == "tool_call")
    assert call["args"] == {"order": "C-3"}
    assert kinds[-1] == "finish_message"


def test_plain_text_protocol(node):
    result = node("vercel_chat_v4.mjs", "text-protocol", "echo-agent", "just text")
    assert result["message"]["content"] == "Echo: just text"


# --- bad input -------------------------------------------------------------------------------------------


def user_message(text: str = "hi") -> dict:
    return {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}


@pytest.mark.parametrize(
    ("url", "body", "status", "param"),
    [
        ("/api/chat", {"id": "x", "agent": "echo-agent", "messages": []}, 400, "messages"),
        ("/api/chat", {"id": "x", "messages": [user_message()]}, 400, "agent"),
        ("/api/chat", {"id": "x", "agent": "nobody", "messages": [user_message()]}, 404, "agent"),
        ("/api/chat?protocol=morse", {"id": "x", "agent": "echo-agent", "messages": [user_message()]}, 400, "protocol"),
        ("/api/chat", {"id": "x", "agent": "echo-agent", "messages": [{"role": "robot", "content": "x"}]}, 400, None),
        (
            "/api/chat",
            {"id": "y", "agent": "echo-agent", "messages": [{"role": "assistant", "content": "x"}]},
            400,
            None,
        ),
        ("/api/completion", {"agent": "echo-agent"}, 400, "prompt"),
        ("/api/generate-object", {"agent": "echo-agent", "prompt": "x", "schema": {"type": 12}}, 400, "schema"),
    ],
)
def test_bad_requests_get_clear_json_errors_before_any_stream(http, url, body, status, param):
    response = http.post(url, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if param:
        assert error["param"] == param


def test_malformed_and_oversized_bodies(http):
    broken = http.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert "error" in broken.json()
    huge = {"id": "big", "agent": "echo-agent", "messages": [user_message("x" * (9 * 1024 * 1024))]}
    assert http.post("/api/chat", json=huge).status_code == 413


def test_tool_results_without_a_waiting_run_are_refused(http):
    body = {
        "id": "nothing-waits",
        "agent": "echo-agent",
        "messages": [
            user_message(),
            {
                "id": "a1",
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool-get_weather",
                        "toolCallId": "call_x",
                        "state": "output-available",
                        "input": {},
                        "output": "sunny",
                    }
                ],
            },
        ],
    }
    response = http.post("/api/chat", json=body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"


def test_a_run_that_fails_mid_stream_ends_with_an_error_chunk(http):
    body = {"id": "failing-chat", "agent": "echo-agent", "messages": [user_message("[[fail:400]]")]}
    with http.stream("POST", "/api/chat", json=body) as response:
        assert response.status_code == 200
        lines = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    check_chunks(chunks)
    error = next(c for c in chunks if c["type"] == "error")
    assert "rejected" in error["errorText"]
    assert chunks[-1] == {"type": "finish", "finishReason": "error"}


def test_a_busy_chat_and_an_unknown_stream(http):
    assert http.get("/api/chat/never-seen/stream").status_code == 204
    body = {"id": "busy-chat", "agent": "echo-agent", "messages": [user_message('[[call:get_weather {"city": "X"}]]')]}
    with http.stream("POST", "/api/chat", json=body) as response:
        assert response.status_code == 200
        list(response.iter_lines())
    again = http.post("/api/chat", json={**body, "messages": [user_message("another question")]})
    assert again.status_code == 409
    assert "tool calls" in again.json()["error"]["message"]
    assert http.get("/api/chat/busy-chat/stream").status_code == 204  # parked, not streaming


# --- useCompletion and generateObject ---------------------------------------------------------------------


def test_completion_streams_plain_text_and_the_data_stream(http):
    body = {"prompt": "complete me", "agent": "echo-agent"}
    plain = http.post("/api/completion?protocol=text", json=body)
    assert plain.status_code == 200
    assert plain.text == "Echo: complete me"
    data = http.post("/api/completion?protocol=data", json=body)
    assert data.headers["x-vercel-ai-data-stream"] == "v1"
    lines = data.text.splitlines()
    assert lines[0].startswith("f:")
    assert "".join(json.loads(line[2:]) for line in lines if line.startswith("0:")) == "Echo: complete me"
    assert json.loads(lines[-1].removeprefix("d:"))["finishReason"] == "stop"


def test_completion_ui_message_stream(http):
    response = http.post("/api/completion", json={"prompt": "complete me", "agent": "echo-agent"})
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    chunks = [json.loads(line) for line in lines[:-1]]
    check_chunks(chunks)
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "Echo: complete me"
    assert lines[-1] == "[DONE]"


def test_generate_object_validates_against_the_schema(http):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "ok": {"type": "boolean"}},
        "required": ["answer", "ok"],
    }
    good = http.post("/api/generate-object", json={"agent": "echo-agent", "prompt": "[[json]] hi", "schema": schema})
    assert good.status_code == 200, good.text
    assert good.json()["object"]["ok"] is True
    strict = {**schema, "required": ["answer", "ok", "score"]}
    bad = http.post("/api/generate-object", json={"agent": "echo-agent", "prompt": "[[json]] hi", "schema": strict})
    assert bad.status_code == 502
    assert bad.json()["error"]["code"] == "no_object_generated"
    assert "score" in bad.json()["error"]["message"]
    prose = http.post("/api/generate-object", json={"agent": "echo-agent", "prompt": "no json", "schema": schema})
    assert prose.status_code == 502


def test_a_failing_run_is_an_error_part_in_the_data_stream_too(http):
    body = {"id": "failing-v4", "agent": "echo-agent", "messages": [{"role": "user", "content": "[[fail:400]]"}]}
    response = http.post("/api/chat", json=body)
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-data-stream"] == "v1"
    lines = response.text.splitlines()
    error = next(json.loads(line[2:]) for line in lines if line.startswith("3:"))
    assert "rejected" in error
    assert json.loads(lines[-1].removeprefix("d:"))["finishReason"] == "error"
