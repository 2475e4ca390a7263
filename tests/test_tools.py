"""Server-side tools: workers in Python and Node.js processes, validation, timeouts, failures, steps."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai import OpenAI

from conftest import register_manifest

TOOLS = "asst_toolsXagent"


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def start_worker(command: list[str], ready: str) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    for line in process.stdout:
        if ready in line or time.monotonic() > deadline:
            break
    assert process.poll() is None, "the tool worker died at start"
    time.sleep(0.3)  # its announcement reaches the executors
    return process


@pytest.fixture(scope="module")
def workers(api_stack, nats_url, node_clients):
    python = start_worker(
        [sys.executable, "-u", str(Path(__file__).with_name("tool_worker.py")), nats_url], "serving tools"
    )
    node = start_worker(["node", str(node_clients / "tool_worker.mjs"), nats_url], "ready")
    yield python, node
    for process in (python, node):
        process.terminate()
        process.wait(10)


def run_with(client, text: str):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=TOOLS, poll_interval_ms=100)
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    answer = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    return run, steps, answer.content[0].text.value


def test_tools_served_by_python_and_nodejs_workers_run_in_parallel(client, workers):
    run, steps, answer = run_with(client, '[[call:get_weather {"city": "Oslo"}]] [[call:get_time {"city": "Oslo"}]]')
    assert run.status == "completed"
    assert [(s.type, s.status) for s in steps] == [("tool_calls", "completed"), ("message_creation", "completed")]
    calls = {c.function.name: c.function for c in steps[0].step_details.tool_calls}
    assert json.loads(calls["get_weather"].output) == {"city": "Oslo", "sky": "clear", "celsius": 21}
    assert calls["get_time"].output == "12:00 in Oslo (from node)"
    assert answer == f"Tool results: {calls['get_weather'].output} | {calls['get_time'].output}"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ('[[call:get_weather {"town": "Oslo"}]]', "invalid_arguments"),
        ("[[call:get_weather {not json]]", "invalid_arguments"),
        ("[[call:invented_tool {}]]", "unknown_tool"),
        ("[[call:broken_tool {}]]", "tool_failed"),
        ('[[call:slow_tool {"seconds": 5}]]', "timeout"),
    ],
)
def test_tool_failures_are_results_the_model_sees_and_the_run_goes_on(client, workers, call, code):
    started = time.monotonic()
    run, steps, answer = run_with(client, call)
    assert run.status == "completed"
    output = json.loads(steps[0].step_details.tool_calls[0].function.output)
    assert output["error"]["code"] == code
    assert answer == f"Tool results: {steps[0].step_details.tool_calls[0].function.output}"
    assert time.monotonic() - started < 15


def test_only_idempotent_tools_are_retried(client, workers):
    run, steps, _ = run_with(client, '[[call:flaky_tool {"key": "retried"}]]')
    assert steps[0].step_details.tool_calls[0].function.output == "worked on attempt 3"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": '[[call:flaky_tool {"key": "once"}]]'}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_fragileXagent", poll_interval_ms=100
    )
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    output = json.loads(steps[0].step_details.tool_calls[0].function.output)
    assert output["error"] == {"code": "tool_failed", "message": "ConnectionError: backend hiccup"}


def test_oversize_outputs_are_truncated_with_a_marker(client, workers):
    run, steps, _ = run_with(client, "[[call:big_tool {}]]")
    output = steps[0].step_details.tool_calls[0].function.output
    assert run.status == "completed"
    assert len(output.encode()) < 70_000
    assert output.endswith("[output truncated: 34464 of 100000 bytes omitted]")


def test_tools_nobody_serves_stay_with_the_client(client, workers):
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": '[[call:ask_the_user {}]] [[call:get_weather {"city": "Rome"}]]'}]
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=TOOLS, poll_interval_ms=100)
    assert run.status == "requires_action"
    assert [c.function.name for c in run.required_action.submit_tool_outputs.tool_calls] == ["ask_the_user"]
    pending = run.required_action.submit_tool_outputs.tool_calls[0]
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": pending.id, "output": "yes"}]
    )
    assert done.status == "completed"
    text = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    assert "yes" in text
    assert '"sky": "clear"' in text


def test_a_worker_that_died_is_a_fast_clear_tool_error(client, workers, nats_url):
    python, _ = workers
    python.kill()
    python.wait(5)
    started = time.monotonic()
    run, steps, _ = run_with(client, '[[call:get_weather {"city": "Bergen"}]]')
    output = json.loads(steps[0].step_details.tool_calls[0].function.output)
    assert run.status == "completed"
    assert output["error"]["code"] == "no_worker"
    assert time.monotonic() - started < 10


HTTP = "asst_httpXagent"


def http_run(client, text: str):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=HTTP, poll_interval_ms=100)
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    return run, steps[0].step_details.tool_calls[0].function.output


def test_http_tools_send_the_arguments_and_credentials(client):
    run, output = http_run(client, '[[call:lookup {"q": "ossa"}]]')
    assert run.status == "completed"
    assert json.loads(output) == {"received": {"q": "ossa"}, "authorization": "Bearer sk-direct-key-abcdef"}
    run, output = http_run(client, '[[call:search {"q": "nats"}]]')
    assert json.loads(output)["received"] == {"q": "nats"}


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ("[[call:failing {}]]", "http_error"),
        ("[[call:metadata {}]]", "egress_refused"),
        ("[[call:sneaky {}]]", "egress_refused"),
        ("[[call:lookup {}]]", "invalid_arguments"),
    ],
)
def test_http_tool_failures_and_the_ssrf_guard(client, call, code):
    run, output = http_run(client, call)
    assert run.status == "completed"
    assert json.loads(output)["error"]["code"] == code


def test_an_http_tool_answering_50_megabytes_is_cut_at_the_limit(client):
    run, output = http_run(client, "[[call:huge {}]]")
    assert run.status == "completed"
    assert len(output.encode()) < 70_000
    assert "truncated" in output


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",  # carrier-grade NAT
        "::1",
        "fe80::1",
        "fd00::1",
        "fec0::1",  # site-local
        "0.0.0.0",
        "::ffff:10.0.0.1",  # IPv4-mapped
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "224.0.0.1",
    ],
)
def test_the_egress_policy_refuses_every_non_public_address(address):
    from ipaddress import ip_address

    from ossabus.runtime.egress import EgressPolicy, is_public

    assert not is_public(ip_address(address))
    assert not EgressPolicy.parse("").allows("example.test", ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111", "8.8.8.8", "2002:5db8:d822::"])
def test_the_egress_policy_lets_public_addresses_through(address):
    from ipaddress import ip_address

    from ossabus.runtime.egress import is_public

    assert is_public(ip_address(address))


def test_the_operator_allows_hosts_domains_and_networks():
    from ipaddress import ip_address

    from ossabus.runtime.egress import EgressPolicy

    policy = EgressPolicy.parse("vllm.internal, *.corp.test, 10.20.0.0/16, fd12::/16")
    loopback = ip_address("127.0.0.1")
    assert policy.allows("vllm.internal", loopback)
    assert policy.allows("a.b.corp.test", loopback)
    assert not policy.allows("corp.test.evil", loopback)
    assert policy.allows("x", ip_address("10.20.3.4"))
    assert policy.allows("x", ip_address("::ffff:10.20.3.4"))
    assert not policy.allows("x", ip_address("10.21.3.4"))
    assert policy.allows("x", ip_address("fd12::5"))
    assert not policy.allows("x", ip_address("169.254.169.254"))


@pytest.mark.parametrize(
    ("network_access", "code", "says"),
    [
        ({"allowed_domains": ["api.example.com", "*.example.org"]}, "egress_refused", "allowed_domains"),
        ({"allowed_domains": ["localhost"], "blocked_domains": ["localhost"]}, "egress_refused", "blocked_domains"),
        ({"allowed_domains": ["localhost"]}, None, None),
    ],
)
def test_an_agents_own_network_access_narrows_the_reach_of_its_http_tools(
    api_stack, fake_llm, network_access, code, says
):
    root = fake_llm.base_url.replace("127.0.0.1", "localhost")
    manifest = {
        "apiVersion": "ossa/v0.5",
        "kind": "Agent",
        "metadata": {"name": "narrow-agent"},
        "spec": {
            "instructions": "You call one service.",
            "model": {"provider": "openai", "model": "fake-model"},
            "tools": [
                {"type": "http", "name": "lookup", "endpoint": f"{root}/tools/echo", "allow_private_network": True}
            ],
            "security": {"network_access": network_access},
        },
    }
    register_manifest(api_stack.base_url, manifest)
    client = OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": '[[call:lookup {"q": "x"}]]'}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_narrowXagent")
    assert run.status == "completed"
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    output = json.loads(steps[0].step_details.tool_calls[0].function.output)
    if code is None:
        assert output["received"] == {"q": "x"}  # the operator allows localhost and so does the agent
    else:
        assert output["error"]["code"] == code
        assert says in output["error"]["message"]
