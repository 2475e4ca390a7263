"""An agent's own `security` block (OSSA v0.4.7/v0.5) bounds what it does: its network_access narrows
every destination it chose (HTTP tools, MCP servers by URL, a model base_url), its sandboxing limit
bounds every tool call, its audit settings keep prompts off spans; governance is kept, not enforced."""

import json
import textwrap
import time

import openai
import pytest
from openai import OpenAI

from ossabus.contracts.agent import AuditSettings, NetworkAccess
from ossabus.registry.catalog import validate_text
from ossabus.runtime import genai
from ossabus.runtime.egress import EgressRefused, check_declared_access
from ossabus.runtime.tracing import CONTENT_ENV

from conftest import register_manifest


@pytest.mark.parametrize(
    ("access", "url", "refused_because"),
    [
        ({"allowed_domains": ["api.example.com"]}, "https://api.example.com/x", None),
        ({"allowed_domains": ["*.example.com"]}, "https://a.b.example.com/x", None),
        ({"allowed_domains": ["*.example.com"]}, "https://example.com.evil.test/x", "not in"),
        ({"allowed_domains": []}, "https://api.example.com/x", "not in"),  # [] = no network at all
        ({"allowed_domains": ["api.example.com"], "protocols": ["https"]}, "http://api.example.com/", "protocols"),
        ({"blocked_domains": ["evil.test"]}, "https://evil.test/", "blocked_domains"),
        ({"blocked_domains": ["evil.test"]}, "https://fine.test/", None),
        ({"egress_policy": "deny-all", "allowed_domains": ["a.test"]}, "https://a.test/", "deny-all"),
        ({"egress_policy": "allow-all", "blocked_domains": ["b.test"]}, "https://a.test/", None),
        ({"egress_policy": "allow-all", "blocked_domains": ["b.test"]}, "https://b.test/", "blocked_domains"),
        ({"egress_policy": "allow-list"}, "https://a.test/", "without allowed_domains"),
    ],
)
def test_declared_network_access_only_narrows(access, url, refused_because):
    declared = NetworkAccess.model_validate(access)
    if refused_because is None:
        check_declared_access(declared, url)
    else:
        with pytest.raises(EgressRefused) as refused:
            check_declared_access(declared, url, "the tool's endpoint")
        assert refused.value.code == "egress_refused"
        assert refused_because in refused.value.message
        assert refused.value.message.startswith("the tool's endpoint")


SECURED = """\
apiVersion: ossa/v0.5
kind: Agent
metadata: {name: secured}
spec:
  instructions: You are careful.
  model: {provider: openai, model: fake-model, base_url: "https://llm.corp.test/v1"}
  tools:
    - {type: http, name: slow_http, endpoint: "https://api.example.com/slow", timeout_seconds: 30}
    - {type: http, name: quick_http, endpoint: "https://api.example.com/quick", timeout_seconds: 2}
    - {type: mcp, server: remote, capabilities: [add]}
security:
  tier: tier_1_read
  data_classification: confidential
  network_access: {allowed_domains: [API.example.com], protocols: [https]}
  sandboxing: {required: true, type: process, resource_limits: {max_execution_seconds: 5, max_memory_mb: 256}}
  audit: {log_outputs: true}
governance:
  compliance: {frameworks: [SOC2]}
"""


def test_the_security_block_reaches_where_it_is_enforced():
    batch = validate_text(SECURED, source="secured.yaml")
    assert batch.ok, [d.render() for d in batch.diagnostics]
    d = batch.entries[0].definition
    s = d.security
    assert (s.tier, s.data_classification) == ("tier_1_read", "confidential")
    assert s.network_access.allowed_domains == ["api.example.com"]  # hostnames compare lower-case
    assert (s.sandboxing.required, s.sandboxing.max_memory_mb, s.sandboxing.max_execution_seconds) == (True, 256, 5)
    assert (s.audit.log_inputs, s.audit.log_outputs) == (False, True)  # the schema's default for log_inputs
    assert d.governance == {"compliance": {"frameworks": ["SOC2"]}}
    by_name = {t.name: t for t in d.tools}
    assert by_name["slow_http"].timeout_seconds == 5  # bounded by max_execution_seconds
    assert by_name["quick_http"].timeout_seconds == 2  # never raised
    assert by_name["add"].timeout_seconds == 5
    assert by_name["add"].mcp.timeout_seconds == 5
    assert by_name["slow_http"].http.network == s.network_access
    assert by_name["add"].mcp.network == s.network_access
    warned = [x for x in batch.diagnostics if x.code == "security.network_access"]
    assert [w.message for w in warned] == [
        "the model's base_url: llm.corp.test is not in the agent's security.network_access.allowed_domains: "
        "it will be refused"
    ]


def test_a_security_block_of_another_shape_is_ignored_with_a_warning_and_narrows_nothing():
    batch = validate_text(
        textwrap.dedent(
            """\
            apiVersion: ossa/v0.3.6
            kind: Agent
            metadata: {name: old-security}
            spec:
              role: You help.
              llm: {provider: openai, model: fake-model}
              security:
                network_access: {allowed_domains: "api.example.com"}
                audit: {log_inputs: sometimes}
                authentication: {methods: [oauth2]}
            """
        ),
        source="old.yaml",
    )
    d = batch.entries[0].definition
    assert d.security.network_access is None
    assert d.security.audit is None
    ignored = [x for x in batch.diagnostics if x.code == "security.ignored"]
    assert {x.path for x in ignored} == {"$.spec.security.network_access", "$.spec.security.audit"}
    assert all(x.severity == "warning" for x in ignored)


def test_content_goes_on_spans_only_when_the_operator_and_the_agent_both_allow_it(monkeypatch):
    monkeypatch.delenv(CONTENT_ENV, raising=False)
    assert not genai.captures(None, "log_inputs")  # off by default: prompts may be personal data
    monkeypatch.setenv(CONTENT_ENV, "true")
    assert genai.captures(None, "log_inputs")
    assert not genai.captures(AuditSettings(), "log_inputs")
    assert genai.captures(AuditSettings(log_outputs=True), "log_outputs")
    monkeypatch.setenv(CONTENT_ENV, "false")
    assert not genai.captures(AuditSettings(log_inputs=True), "log_inputs")  # an agent cannot widen it


# --- over the running stack ---------------------------------------------------------------------------


def register(api_stack, name: str, spec: dict, security: dict) -> None:
    manifest = {"apiVersion": "ossa/v0.5", "kind": "Agent", "metadata": {"name": name}, "spec": spec}
    manifest["security"] = security
    register_manifest(api_stack.base_url, manifest)


def tool_outputs(api_stack, assistant: str, text: str) -> tuple[dict[str, str], float]:
    client = OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=90)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    started = time.monotonic()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant, poll_interval_ms=100)
    took = time.monotonic() - started
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    return {c.function.name: c.function.output for c in steps[0].step_details.tool_calls}, took


MCP_SPEC = {
    "instructions": "You add numbers.",
    "model": {"provider": "openai", "model": "fake-model"},
    "tools": [{"type": "mcp", "server": "remote", "capabilities": ["add", "sleepy"]}],
}


@pytest.mark.parametrize(
    ("allowed", "refused"), [(["api.example.com"], True), (["127.0.0.1"], False)], ids=["elsewhere", "listed"]
)
def test_an_agents_network_access_narrows_the_mcp_servers_it_reaches(api_stack, allowed, refused):
    name = f"mcp-narrow-{'x' if refused else 'ok'}"
    register(api_stack, name, MCP_SPEC, {"network_access": {"allowed_domains": allowed}})
    outputs, _ = tool_outputs(api_stack, f"asst_{name.replace('-', 'X')}", '[[call:add {"a": 40, "b": 2}]]')
    if refused:
        error = json.loads(outputs["add"])["error"]
        assert error["code"] == "egress_refused"
        assert "127.0.0.1 is not in the agent's security.network_access.allowed_domains" in error["message"]
    else:
        assert outputs["add"] == "42"  # the operator's own server, reached because the agent lists it


def test_max_execution_seconds_bounds_every_tool_call(api_stack):
    register(
        api_stack,
        "bounded-tools",
        MCP_SPEC,
        {"sandboxing": {"required": False, "resource_limits": {"max_execution_seconds": 1}}},
    )
    outputs, took = tool_outputs(api_stack, "asst_boundedXtools", '[[call:sleepy {"seconds": 6}]]')
    assert json.loads(outputs["sleepy"])["error"]["code"] == "timeout"
    assert took < 5  # the agent's 1 s bound, not the 6 s sleep (nor the default tool timeout)


def test_a_model_base_url_outside_the_agents_own_allowed_domains_is_refused(api_stack, fake_llm):
    root = fake_llm.base_url.replace("127.0.0.1", "localhost")  # the operator allows localhost
    spec = {
        "instructions": "You answer.",
        "model": {"provider": "openai", "model": "fake-model", "base_url": f"{root}/v1"},
    }
    client = OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    register(api_stack, "own-llm-listed", spec, {"network_access": {"allowed_domains": ["localhost"]}})
    register(api_stack, "own-llm-elsewhere", spec, {"network_access": {"allowed_domains": ["llm.example.com"]}})
    before = len(fake_llm.requests())
    listed = client.chat.completions.create(model="own-llm-listed", messages=[{"role": "user", "content": "hi"}])
    assert listed.choices[0].message.content
    assert len(fake_llm.requests()) == before + 1
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="own-llm-elsewhere", messages=[{"role": "user", "content": "hi"}])
    assert "not in the agent's security.network_access.allowed_domains" in str(refused.value)
    assert len(fake_llm.requests()) == before + 1  # nothing was sent
