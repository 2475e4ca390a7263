"""Budgets from the manifest: daily tokens and cost (429 insufficient_quota), concurrency across two
executor processes (429 rate_limit_exceeded at the relay, waiting at the executors)."""

import asyncio
import hashlib
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from openai import OpenAI, RateLimitError

from ossabus.client import OssabusClient

from conftest import eventually, free_port, llm_env, reset_jetstream, start_service, start_stack, stop_all

BUDGET_AGENTS = Path(__file__).with_name("agents_budget")


# --- budgets ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def budget_stack(nats_url, fake_llm, tmp_path_factory):
    """Edge and two executor processes, API keys on, the budget agents loaded."""
    asyncio.run(reset_jetstream(nats_url))
    tmp = tmp_path_factory.mktemp("budget")
    env = {**llm_env(fake_llm), "OSSABUS_API_KEYS": "key-one,key-two"}
    edge = start_stack(
        ["up", "--nats-url", nats_url, "--manifests", str(BUDGET_AGENTS), "--without", "executor"],
        tmp / "edge.log",
        free_port(),
        env=env,
    )
    executors = [start_service("executor", nats_url, env, tmp / f"executor-{i}.log") for i in range(2)]
    yield edge
    stop_all(executors)
    assert edge.stop() == 0, edge.logs()


def test_a_daily_token_budget_refuses_the_next_run_with_429(budget_stack):
    usage_url = f"{budget_stack.base_url}/v1/ossa/usage"
    clients = [
        OpenAI(base_url=f"{budget_stack.base_url}/v1", api_key=key, max_retries=0) for key in ("key-one", "key-two")
    ]
    spent, refused = 0, None
    for i in range(10):
        client = clients[i % 2]
        try:
            thread = client.beta.threads.create(messages=[{"role": "user", "content": f"question {i}"}])
            run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_budgetXagent")
        except RateLimitError as exc:
            refused = exc
            break
        spent += run.usage.total_tokens

        def recorded(expected=spent):
            headers = {"authorization": "Bearer key-one"}
            total = httpx.get(usage_url, params={"agent": "budget-agent"}, headers=headers).json()["total"]
            assert total["total_tokens"] == expected

        eventually(recorded)
    assert refused is not None, "the budget never refused a run"
    assert refused.status_code == 429
    assert refused.body["code"] == "insufficient_quota"
    assert refused.body["type"] == "insufficient_quota"
    assert "maxTokensPerDay" in refused.body["message"]
    assert spent >= 20
    assert spent - run.usage.total_tokens < 20  # refused as soon as the budget was used up, not later
    headers = {"authorization": "Bearer key-one"}
    chat = httpx.post(
        f"{budget_stack.base_url}/v1/chat/completions",
        json={"model": "budget-agent", "messages": [{"role": "user", "content": "more"}]},
        headers=headers,
    )
    assert chat.status_code == 429
    rows = httpx.get(usage_url, params={"agent": "budget-agent"}, headers=headers).json()["data"]
    fingerprints = {"key_" + hashlib.sha256(k.encode()).hexdigest()[:12] for k in ("key-one", "key-two")}
    assert {row["principal"] for row in rows if row["principal"]} == fingerprints


def test_a_daily_cost_budget_is_priced_with_litellm(budget_stack):
    client = OpenAI(base_url=f"{budget_stack.base_url}/v1", api_key="key-one", max_retries=0)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_pricedXagent")
    assert run.status == "completed"
    import litellm

    prompt_price, completion_price = litellm.cost_per_token(
        model="openai/gpt-4o-mini", prompt_tokens=run.usage.prompt_tokens, completion_tokens=run.usage.completion_tokens
    )

    def priced():
        report = httpx.get(
            f"{budget_stack.base_url}/v1/ossa/usage",
            params={"agent": "priced-agent"},
            headers={"authorization": "Bearer key-one"},
        ).json()
        assert report["total"]["cost_usd"] == pytest.approx(prompt_price + completion_price)

    eventually(priced)
    with pytest.raises(RateLimitError) as refused:
        client.beta.threads.create_and_run(assistant_id="asst_pricedXagent", thread={"messages": []})
    assert "maxCostPerDay" in refused.value.body["message"]


def test_concurrency_is_limited_across_two_executor_processes(budget_stack, nats_url, fake_llm):
    tag = uuid.uuid4().hex[:8]

    async def submit_six():
        async with await OssabusClient.connect(nats_url, timeout=60) as bus:
            tasks = [await bus.submit("narrow-agent", f"[[slow:1]] task {i} {tag}") for i in range(6)]
            return [await t.result() for t in tasks]

    started = time.monotonic()
    results = asyncio.run(submit_six())
    assert [r.status for r in results] == ["completed"] * 6
    assert fake_llm.concurrency(tag)["max"] == 2  # reached, and never passed, across both executors
    assert time.monotonic() - started >= 2.9  # three waves of two

    # while two runs hold the slots, the relay refuses a third at once
    client = OpenAI(base_url=f"{budget_stack.base_url}/v1", api_key="key-one", max_retries=0)
    busy = [
        client.beta.threads.create_and_run(
            assistant_id="asst_narrowXagent",
            thread={"messages": [{"role": "user", "content": f"[[slow:3]] busy {tag}"}]},
        )
        for _ in range(2)
    ]
    eventually(lambda: _assert_equal(fake_llm.concurrency(f"busy {tag}")["now"], 2))
    with pytest.raises(RateLimitError) as refused:
        client.beta.threads.create_and_run(assistant_id="asst_narrowXagent", thread={"messages": []})
    assert refused.value.body["code"] == "rate_limit_exceeded"
    assert "maxConcurrentRequests" in refused.value.body["message"]
    for run in busy:
        assert client.beta.threads.runs.poll(thread_id=run.thread_id, run_id=run.id).status == "completed"


def _assert_equal(a, b):
    assert a == b


def test_each_model_call_is_capped_in_tokens_and_time(budget_stack, fake_llm):
    client = OpenAI(base_url=f"{budget_stack.base_url}/v1", api_key="key-one", max_retries=0)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "[[long:40]] talk a lot"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_cappedXagent")
    assert run.status == "completed"
    assert fake_llm.last_request()["max_tokens"] == 5
    answer = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    assert answer == "w0 w1 w2 w3 w4"
    started = time.monotonic()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "[[slow:6]] too slow"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_cappedXagent")
    assert run.status == "failed"
    assert run.last_error.code == "server_error"
    attempts = [r for r in fake_llm.requests() if "too slow" in json.dumps(r.get("messages"))]
    assert len(attempts) == 3  # timed out, and retried as transient, per the default retry policy
    assert time.monotonic() - started < 15  # 3 x 2 s and backoff, not 3 x 6 s
