"""A v0.5 agent written by hand, as OSSA is written today: registered over HTTP, then used through the
OpenAI SDK (Chat Completions and Assistants) and the Vercel AI SDK's `/api/chat`."""

import json

import httpx
import openai
import pytest

V05 = """\
apiVersion: ossa/v0.5
kind: Agent
metadata:
  name: v05-helper
  version: 1.0.0
spec:
  instructions: You are the v0.5 helper. Answer briefly.
  model:
    provider: openai
    model: fake-model
    parameters:
      temperature: 0.2
      maxTokens: 321
  tools:
    - type: function
      name: lookup
      description: Look a word up
      input_schema:
        type: object
        properties: {word: {type: string}}
        required: [word]
"""
YAML = {"content-type": "application/yaml"}


@pytest.fixture(scope="module")
def registered(api_stack):
    base = api_stack.base_url
    reply = httpx.put(f"{base}/v1/ossa/manifests/v05-helper", content=V05, headers=YAML, timeout=30)
    assert reply.status_code in (200, 201), reply.text
    strict = httpx.post(f"{base}/v1/ossa/validate?strict=true", content=V05, headers=YAML, timeout=30).json()
    assert strict["valid"] is True, strict
    return base


def test_a_hand_written_v0_5_agent_answers_chat_completions_with_its_instructions_and_parameters(registered, fake_llm):
    client = openai.OpenAI(base_url=f"{registered}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="v05-helper", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Echo: hi"
    sent = fake_llm.last_request()
    assert sent["messages"][0] == {"role": "system", "content": "You are the v0.5 helper. Answer briefly."}
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 321)
    # its function tool has no server: not offered in a chat completion, where nobody could answer it,
    # but in a response (a run), where the client answers it
    assert "tools" not in sent
    response = client.responses.create(model="v05-helper", input='[[call:lookup {"word": "ossa"}]] look')
    (call,) = response.output
    assert (call.type, call.name, call.arguments) == ("function_call", "lookup", '{"word": "ossa"}')
    asked = [r for r in fake_llm.requests() if "[[call:lookup" in json.dumps(r.get("messages"))]
    offered = asked[-1]["tools"]
    assert offered[0]["function"]["parameters"]["required"] == ["word"]


def test_a_hand_written_v0_5_agent_is_an_assistant(registered):
    client = openai.OpenAI(base_url=f"{registered}/v1", api_key="unused", max_retries=0)
    assistant = client.beta.assistants.retrieve("asst_v05Xhelper")
    assert assistant.instructions == "You are the v0.5 helper. Answer briefly."
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "run me"}]}
    )
    assert run.status == "completed", run.last_error
    answer = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0]
    assert answer.content[0].text.value == "Echo: run me"


def test_a_hand_written_v0_5_agent_streams_to_the_vercel_ai_sdk(registered):
    body = {
        "id": "chat-v05",
        "agent": "v05-helper",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "from the browser"}]}],
    }
    with httpx.stream("POST", f"{registered}/api/chat", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers.get("x-vercel-ai-ui-message-stream") == "v1"
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    text = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
    assert text == "Echo: from the browser"
    assert chunks[-1]["type"] == "finish"
