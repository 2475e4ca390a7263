"""MCP tools: a stdio server and a streamable-HTTP server written with the `mcp` SDK (tests/mcp_server.py),
reached through the dispatcher's sessions; tools listed from the server, calls forwarded, failures as
tool errors the model reads."""

import json
import subprocess
import time

import pytest
from openai import OpenAI

from conftest import ossabus_command

STDIO_AGENT = "asst_mcpXagent"
HTTP_AGENT = "asst_mcpXhttpXagent"


@pytest.fixture(scope="module")
def client(api_stack) -> OpenAI:
    return OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=90)


def run_with(client: OpenAI, assistant: str, text: str):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant, poll_interval_ms=100)
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    answer = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    return run, steps, answer.content[0].text.value


def outputs(steps) -> dict[str, str]:
    return {c.function.name: c.function.output for c in steps[0].step_details.tool_calls}


def error_of(output: str) -> dict:
    return json.loads(output)["error"]


def offered_to_model(fake_llm, marker: str) -> dict[str, dict]:
    """The tools of the model request whose conversation contains `marker`."""
    for request in reversed(fake_llm.requests()):
        if marker in json.dumps(request.get("messages")):
            return {t["function"]["name"]: t["function"] for t in request.get("tools") or []}
    raise AssertionError(f"no model request mentions {marker!r}")


def test_every_tool_the_stdio_server_lists_is_offered_with_its_schema_and_called(client, fake_llm):
    run, steps, answer = run_with(
        client, STDIO_AGENT, '[[call:add {"a": 2, "b": 3}]] [[call:lookup_order {"order_id": "A-1"}]] first'
    )
    assert run.status == "completed", run.last_error
    results = outputs(steps)
    assert results["add"] == "5"
    order = json.loads(results["lookup_order"])
    assert (order["order_id"], order["status"]) == ("A-1", "shipped")
    assert answer == f"Tool results: {results['add']} | {results['lookup_order']}"
    tools = offered_to_model(fake_llm, "first")
    assert {"add", "lookup_order", "broken", "crash", "sleepy", "ghost", "homemade_tool"} <= set(tools)
    assert tools["add"]["parameters"]["required"] == ["a", "b"]
    assert tools["add"]["description"] == "Add two integers."


@pytest.mark.parametrize(
    ("call", "code", "says"),
    [
        ('[[call:add {"a": "two", "b": 3}]]', "invalid_arguments", "$.a"),
        ("[[call:broken {}]]", "tool_failed", "broken"),
        ("[[call:ghost {}]]", "mcp_unconfigured", "'nowhere' is not configured"),
        ("[[call:homemade_tool {}]]", "mcp_unconfigured", "OSSABUS_MCP_CONFIG"),
    ],
)
def test_mcp_failures_are_tool_errors_and_the_run_goes_on(client, call, code, says):
    run, steps, answer = run_with(client, STDIO_AGENT, call)
    assert run.status == "completed"
    output = steps[0].step_details.tool_calls[0].function.output
    assert error_of(output)["code"] == code
    assert says in error_of(output)["message"]
    assert answer == f"Tool results: {output}"


def test_a_crashing_stdio_server_is_a_tool_error_and_is_restarted_for_the_next_call(client, mcp_servers):
    run_with(client, STDIO_AGENT, '[[call:add {"a": 1, "b": 1}]]')  # the server is up
    starts_before = len(mcp_servers.starts.read_text().splitlines())
    run, steps, _ = run_with(client, STDIO_AGENT, "[[call:crash {}]]")
    assert run.status == "completed"
    error = error_of(outputs(steps)["crash"])
    assert error["code"] == "mcp_server_failed"
    run, steps, _ = run_with(client, STDIO_AGENT, '[[call:add {"a": 20, "b": 22}]]')
    assert run.status == "completed"
    assert outputs(steps)["add"] == "42"
    assert len(mcp_servers.starts.read_text().splitlines()) == starts_before + 1


def test_streamable_http_server_tools_named_in_the_manifest_get_the_servers_schema(client, fake_llm):
    run, steps, _ = run_with(client, HTTP_AGENT, '[[call:add {"a": 40, "b": 2}]] remote')
    assert run.status == "completed", run.last_error
    assert outputs(steps)["add"] == "42"
    tools = offered_to_model(fake_llm, "remote")
    assert set(tools) == {"add", "sleepy"}  # only what the manifest names, not lookup_order & co
    assert tools["sleepy"]["parameters"]["properties"]["seconds"]["type"] == "number"


def test_a_slow_mcp_call_times_out_while_its_parallel_sibling_completes(client):
    started = time.monotonic()
    run, steps, _ = run_with(client, HTTP_AGENT, '[[call:sleepy {"seconds": 5}]] [[call:add {"a": 1, "b": 2}]]')
    assert run.status == "completed"
    results = outputs(steps)
    assert error_of(results["sleepy"])["code"] == "timeout"
    assert results["add"] == "3"
    assert time.monotonic() - started < 4.5  # the 1 s timeout, not the 5 s sleep


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ('{"mcpServers": {"files": {"args": ["-y"]}}}', "mcpServers.files"),
        ('{"mcpServers": {"files": {"command": "npx", "url": "http://x/mcp"}}}', "exactly one of"),
        ("{not json", "cannot read the MCP configuration"),
        ('{"servers_by_name": {}}', "expected an object with `mcpServers`"),
    ],
)
def test_a_broken_mcp_config_stops_ossabus_at_start_with_a_clear_message(tmp_path, config, says):
    path = tmp_path / "mcp.json"
    path.write_text(config)
    result = subprocess.run(
        ossabus_command("serve", "dispatcher", "--mcp-config", str(path), "--nats-url", "nats://127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr
