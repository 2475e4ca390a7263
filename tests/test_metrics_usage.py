"""Metrics parsed with the Prometheus client's parser after known runs; usage per agent and day."""

import time

import httpx
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from conftest import eventually

# --- metrics and usage ------------------------------------------------------------------------------------


def metric_samples(base_url: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if not k.startswith("otel_")))
            samples[(sample.name, labels)] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_the_runs_tokens_and_tools(api_stack):
    client = OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0)
    before = metric_samples(api_stack.base_url)
    usages = []
    for text in ("one", "two", "three"):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_echoXagent")
        assert run.status == "completed"
        usages.append(run.usage)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "[[fail:400]]"}])
    failed = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_echoXagent")
    assert failed.status == "failed"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": '[[call:lookup {"order": "M"}]]'}])
    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_approvalXagent")

    def counted():
        after = metric_samples(api_stack.base_url)

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("ossabus_runs_total", agent="echo-agent", status="completed") == 3
        assert delta("ossabus_runs_total", agent="echo-agent", status="failed") == 1
        assert delta("ossabus_run_duration_seconds_count", agent="echo-agent", status="completed") == 3
        assert delta("ossabus_time_to_first_token_seconds_count", agent="echo-agent") == 3
        assert delta("ossabus_tokens_total", agent="echo-agent", type="input") == sum(u.prompt_tokens for u in usages)
        assert delta("ossabus_tokens_total", agent="echo-agent", type="output") == sum(
            u.completion_tokens for u in usages
        )
        assert delta("ossabus_tool_calls_total", tool="lookup", outcome="ok") == 1
        assert delta("ossabus_tool_duration_seconds_count", tool="lookup") == 1

    eventually(counted)
    time.sleep(1)
    counted()  # and nothing counted twice afterwards


def test_usage_per_agent_and_day_is_exact(api_stack):
    client = OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0)
    usage_url = f"{api_stack.base_url}/v1/ossa/usage"
    before = httpx.get(usage_url, params={"agent": "summary-task"}).json()["total"]
    reply = client.chat.completions.create(model="summary-task", messages=[{"role": "user", "content": "sum it up"}])

    def added():
        report = httpx.get(usage_url, params={"agent": "summary-task"}).json()
        assert report["total"]["total_tokens"] - before["total_tokens"] == reply.usage.total_tokens
        assert report["total"]["requests"] - before["requests"] == 1
        return report

    report = eventually(added)
    today = report["data"][0]["day"]
    assert {row["principal"] for row in report["data"]} == {None, "anonymous"}
    assert httpx.get(usage_url, params={"agent": "summary-task", "to": "2000-01-01"}).json()["data"] == []
    assert httpx.get(usage_url, params={"agent": "summary-task", "from": today, "to": today}).json()["data"]
    bad = httpx.get(usage_url, params={"from": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"]
