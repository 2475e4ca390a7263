"""Bounded model calls: a provider that never answers, or answers with something that is no completion.

The hung provider is a loopback socket that accepts connections and never sends a byte, as a stuck
proxy or an overloaded provider does. Calls must end (retried per the agent's policy first), with
OpenAI-shaped errors on HTTP and a failed run whose `last_error` says what happened.
"""

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import openai
import pytest

from conftest import eventually, free_port, llm_env, rendered_agents, reset_jetstream, start_stack

IDLE_S = 1.0


class HungProvider:
    """Accepts every connection and reads what is sent, never answering."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture(scope="module")
def hung() -> Iterator[HungProvider]:
    provider = HungProvider()
    yield provider
    provider.close()


@pytest.fixture(scope="module", params=["direct", "litellm"])
def hung_stack(request, nats_url, fake_llm, hung, tmp_path_factory):
    """Both ways to a model (see test_provider_paths.py) must bound a call the same way."""
    asyncio.run(reset_jetstream(nats_url))
    env = {
        **llm_env(fake_llm),
        "OPENAI_BASE_URL": f"http://127.0.0.1:{hung.port}/v1",
        "OSSABUS_LLM_IDLE_TIMEOUT_S": str(IDLE_S),
    }
    if request.param == "litellm":
        env["OSSABUS_LITELLM_PROVIDERS"] = "openai"
    log = tmp_path_factory.mktemp("hung") / "ossabus.log"
    # the agents that name the fake upstream themselves (direct-agent) still reach it: tests of answers
    # that stall or are no completion use them
    agents = str(rendered_agents(fake_llm.base_url))
    running = start_stack(["up", "--nats-url", nats_url, "--manifests", agents], log, free_port(), env=env)
    yield running
    assert running.stop() == 0, running.logs()


def sdk(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_completion_against_a_provider_that_never_answers_ends_in_a_504(hung_stack, hung, stream):
    before = len(hung.connections)
    started = time.monotonic()

    def ask():
        reply = sdk(hung_stack).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello?"}], stream=stream
        )
        return list(reply) if stream else reply

    with pytest.raises(openai.APIStatusError) as info:
        ask()
    took = time.monotonic() - started
    assert info.value.status_code == 504
    assert info.value.body["code"] == "upstream_timeout"
    assert f"did not answer within {IDLE_S:g} s" in info.value.body["message"]
    # three attempts (the default retry policy), each bounded by the idle timeout, plus the backoff between
    assert len(hung.connections) - before == 3
    assert took < 3 * IDLE_S + 1.5 + 20, took  # ends well before the client's own 60 s (CPU-starved CI took 9.6 s)


def test_a_run_against_a_provider_that_never_answers_fails_with_a_clear_last_error(hung_stack):
    client = sdk(hung_stack)
    assistant = client.beta.assistants.create(model="gpt-4o-mini", name="hung-assistant")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "anyone there?"}]}
    )
    assert run.status == "failed"
    assert run.last_error.code == "server_error"
    assert f"did not answer within {IDLE_S:g} s" in run.last_error.message
    ending = f"run {run.id} failed: server_error: the model provider did not answer"

    def logged() -> None:  # the executor logs the ending just after it stores it, which the poll saw
        assert ending in hung_stack.logs()

    eventually(logged, timeout=10)
    messages = client.beta.threads.messages.list(run.thread_id).data
    assert [m.role for m in messages] == ["user"]  # no empty answer left behind


def test_a_provider_answering_200_with_no_completion_fails_the_run(hung_stack):
    client = sdk(hung_stack)
    run = client.beta.threads.create_and_run_poll(
        assistant_id="asst_directXagent", thread={"messages": [{"role": "user", "content": "[[garbage]]"}]}
    )
    assert run.status == "failed"
    assert run.last_error.code == "server_error"
    assert "not a chat completion" in run.last_error.message
    assert "secret_internal" not in run.last_error.message
    assert [m.role for m in client.beta.threads.messages.list(run.thread_id).data] == ["user"]


def test_the_idle_timeout_applies_between_chunks_too(hung_stack):
    """A provider that starts answering and then stalls: the stall is bounded like silence is, and
    the partial answer does not stay behind as if it were one."""
    client = sdk(hung_stack)
    run = client.beta.threads.create_and_run_poll(
        assistant_id="asst_directXagent",
        thread={"messages": [{"role": "user", "content": "stall [[long:4]] [[stall:3000]]"}]},
    )
    assert run.status == "failed"
    assert f"did not answer within {IDLE_S:g} s" in run.last_error.message
    messages = client.beta.threads.messages.list(run.thread_id, order="asc").data
    assert [(m.role, m.status) for m in messages] == [("user", "completed"), ("assistant", "incomplete")]
    assert messages[1].incomplete_details.reason == "run_failed"
    assert messages[1].content == []  # the streamed words before the stall were never an answer
    brisk = client.beta.threads.create_and_run_poll(
        assistant_id="asst_directXagent",
        thread={"messages": [{"role": "user", "content": "brisk [[long:4]] [[delay:300]]"}]},
    )
    assert brisk.status == "completed"
