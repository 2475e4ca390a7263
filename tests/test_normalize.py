"""Every accepted manifest shape becomes the same AgentDefinition."""

import textwrap

import pytest

from ossabus.registry.catalog import documents_from_paths, validate_batch, validate_text
from ossabus.registry.providers import PROVIDER_ALIASES

from conftest import REPO


def definition(text: str):
    batch = validate_text(textwrap.dedent(text), source="m.yaml")
    assert batch.ok, [d.render() for d in batch.diagnostics]
    return batch.entries[0].definition


def seed(name: str):
    docs, _ = documents_from_paths([REPO / "manifests" / name])
    return validate_batch(docs).entries[0].definition


def test_every_provider_alias_points_at_a_provider_litellm_knows():
    import litellm

    known = {str(p.value) if hasattr(p, "value") else str(p) for p in litellm.provider_list}
    assert set(PROVIDER_ALIASES.values()) <= known


def test_v0_2_agent_role_llm_and_capabilities():
    d = seed("stock-assistant.ossa.yaml")
    assert d.system_prompt == "Help with stock prices"
    assert (d.llm.provider, d.llm.model, d.llm.litellm_model) == ("openai", "gpt-4-turbo", "openai/gpt-4-turbo")
    price = d.tool("get_stock_price")
    assert price.kind == "function"
    assert price.parameters["required"] == ["symbol"]
    assert price.output_schema["properties"]["price"] == {"type": "number"}
    api = d.tool("stock_api")
    assert api.kind == "http"
    assert api.http.endpoint == "https://api.example.com/stocks"
    assert d.env_refs == ["STOCK_API_KEY"]


def test_v0_3_4_model_prompts_run_config_and_extension_tools_merge():
    d = seed("booking-agent.ossa.yaml")
    assert d.system_prompt.startswith("You are a travel booking assistant.")
    assert d.llm.litellm_model == "openai/gpt-4o-mini"
    assert [t.name for t in d.tools] == ["search_flights", "book_flight"]
    search = d.tool("search_flights")
    # declared under extensions.mcp and extensions.openai_assistants: one tool, both sources
    assert len(search.sources) == 2
    assert search.kind == "mcp"
    assert search.strict is True
    assert d.run_defaults.response_format["type"] == "json_schema"


def test_code_execution_and_retrieval_become_builtin_tools():
    d = seed("code-assistant.ossa.yaml")
    assert {t.kind for t in d.tools} == {"code_interpreter", "file_search"}
    assert d.capabilities[:3] == ["code_execution", "file_access", "retrieval"]
    assert d.limits.max_completion_tokens == 4096
    assert d.limits.timeout_seconds == 120
    assert d.tool_resources["code_interpreter"]["file_ids"] == ["file-abc123", "file-def456"]


def test_vercel_extension_provider_tools_confirmation_and_limits():
    d = seed("customer-support-agent.ossa.yaml")
    assert d.llm.litellm_provider == "anthropic"
    assert d.llm.model == "claude-3-5-sonnet"  # spec.llm wins over the extension's model
    assert d.llm.api_key_env == "ANTHROPIC_API_KEY"
    assert d.streaming.vercel_protocol == "data"
    assert d.limits.max_steps == 10
    assert d.tool("initiate_return").confirmation is True
    assert d.tool("lookup_order").confirmation is False
    assert d.tool("lookup_order").parameters["required"] == ["order_id"]


def test_task_and_workflow_kinds():
    task = seed("email-generator.ossa.yaml")
    assert task.kind == "Task"
    assert task.task.input_schema["required"] == ["subject", "tone", "key_points"]
    assert task.task.output_schema["properties"]["word_count"] == {"type": "integer"}
    assert task.limits.timeout_seconds == 30
    flow = seed("content-pipeline.ossa.yaml")
    assert [(s.id, s.kind, s.ref) for s in flow.workflow.steps] == [
        ("generate", "Task", "content-generator"),
        ("review", "Agent", "content-reviewer"),
        ("optimize", "Task", "seo-optimizer"),
    ]
    assert flow.workflow.steps[2].depends_on == ["review"]


def test_constraints_monitoring_and_subagents_are_kept():
    d = seed("math-tutor.ossa.yaml")
    assert d.limits.max_tokens_per_request == 2048
    assert d.llm.max_tokens == 2048
    assert d.llm.temperature == 0.7
    orchestrator = seed("research-orchestrator.ossa.yaml")
    assert [s["name"] for s in orchestrator.subagents] == ["web-researcher", "data-analyzer", "report-writer"]
    assert orchestrator.orchestration["strategy"] == "sequential"


def test_prompt_precedence_and_one_word_roles():
    d = definition("""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata: {name: a}
        spec:
          role: assistant
          llm: {provider: openai, model: gpt-4o}
        extensions:
          openai_assistants: {instructions: Be brief.}
        """)
    assert d.system_prompt == "Be brief."


def test_zero_values_are_kept_and_numeric_strings_accepted():
    d = definition("""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata: {name: a}
        spec:
          llm: {provider: openai, model: gpt-4o, temperature: 0, maxTokens: "256"}
        """)
    assert d.llm.temperature == 0.0
    assert d.llm.max_tokens == 256


def test_a_manifest_never_reads_the_environment_outside_credential_fields(monkeypatch):
    """Finding 1 of the security review: `${VAR}` in model, provider, base URL or endpoint was expanded
    from the server's environment and returned by the API. Now it is literal text."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-secret-123456")
    monkeypatch.setenv("OSSA_PROVIDER", "ollama")
    d = definition("""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata: {name: a}
        spec:
          llm: {provider: openai, model: "x-${OPENAI_API_KEY}", base_url: "https://h/${OPENAI_API_KEY}"}
          tools:
            - {type: http, name: t, endpoint: "https://h/${OPENAI_API_KEY}"}
        """)
    dumped = d.model_dump_json()
    assert "sk-server-secret" not in dumped
    assert d.llm.model == "x-${OPENAI_API_KEY}"
    assert d.tools[0].http.endpoint == "https://h/${OPENAI_API_KEY}"
    templated = definition("""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata: {name: a}
        spec:
          llm: {provider: "${OSSA_PROVIDER:-anthropic}", model: "${M:-claude-3-5-haiku}", maxTokens: "${T:-99}"}
        """)
    # OSSA templates' `${VAR:-default}` take the default the manifest holds, never the environment's value
    assert templated.llm.litellm_model == "anthropic/claude-3-5-haiku"
    assert templated.llm.max_tokens == 99
    batch = validate_text(
        "apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: a}\n"
        "spec:\n  llm: {provider: '${OSSA_PROVIDER}', model: m}\n"
    )
    assert [d.code for d in batch.diagnostics if d.severity == "error"] == ["llm.provider_unknown"]


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("azure-openai", "gpt-4o", "azure/gpt-4o"),
        ("aws-bedrock", "anthropic.claude-v2", "bedrock/anthropic.claude-v2"),
        ("google", "gemini-1.5-pro", "gemini/gemini-1.5-pro"),
        ("custom", "my-model", "openai/my-model"),
        ("anthropic", "anthropic/claude-3-opus", "anthropic/claude-3-opus"),
    ],
)
def test_provider_names_map_to_litellm(provider, model, expected):
    d = definition(f"""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata: {{name: a}}
        spec:
          llm: {{provider: {provider}, model: {model}}}
        """)
    assert d.llm.litellm_model == expected


def test_namespaced_tool_names_get_function_names():
    d = definition("""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata: {name: a}
        spec:
          tools:
            - {type: function, name: security.scan, description: Scan}
            - {type: mcp, server: fs, capabilities: [read_file]}
            - {type: mcp, server: git}
            - {type: kubernetes, name: pods}
        """)
    assert [(t.name, t.function_name, t.kind) for t in d.tools] == [
        ("security.scan", "security_scan", "function"),
        ("read_file", "read_file", "mcp"),
    ]
    assert d.tool("read_file").parameters_declared is False
    assert [s.server for s in d.mcp_servers] == ["git"]


def test_approval_policies_from_autonomy_tools_capabilities_and_mcp_servers():
    d = definition(
        """
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata: {name: careful}
        spec:
          llm: {provider: openai, model: gpt-4o}
          autonomy: {approval_required: [wire_money]}
          capabilities:
            - {name: delete_user, policy: {requires_approval: true}}
            - {name: read_user}
          tools:
            - {type: http, name: wire_money, endpoint: "https://bank.example/wire"}
            - {type: http, name: quote, endpoint: "https://bank.example/quote", requires_approval: true}
            - {type: mcp, server: files, capabilities: [write_file], approval_required: true, timeout_seconds: 4}
            - {type: mcp, server: shell, requires_approval: true}
        """
    )
    needs = {t.name: d.needs_approval(t) for t in d.tools}
    assert needs == {"delete_user": True, "read_user": False, "wire_money": True, "quote": True, "write_file": True}
    assert d.tool("write_file").timeout_seconds == 4
    assert [(s.server, s.confirmation) for s in d.mcp_servers] == [("shell", True)]
    everything = definition(
        """
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata: {name: supervised}
        spec:
          llm: {provider: openai, model: gpt-4o}
          autonomy: {level: supervised, approval_required: true}
          tools: [{type: http, name: anything, endpoint: "https://x.example/"}]
        """
    )
    assert everything.needs_approval(everything.tool("anything"))


def _official_v04(name: str):
    from ossabus.registry.documents import read_manifest_file
    from ossabus.registry.validation import validate_document

    from conftest import SHARED

    doc = next(d for d in read_manifest_file(SHARED / "ossa" / "examples-v0.4" / name) if d.data.get("kind") == "Agent")
    outcome = validate_document(doc, strict=False)
    assert outcome.definition is not None, [d.render() for d in outcome.report.errors]
    return outcome.definition


def test_a_v0_4_agent_with_instructions_and_a_model_block_normalises_where_the_executor_reads():
    definition = _official_v04("a2a__service-discovery.ossa.yaml")
    assert definition.system_prompt.startswith("You are a distributed agent coordinator")
    assert (definition.llm.provider, definition.llm.model) == ("anthropic", "claude-sonnet-4-20250514")
    assert definition.llm.litellm_model == "anthropic/claude-sonnet-4-20250514"
    assert (definition.llm.temperature, definition.llm.max_tokens) == (0.7, 8192)  # camelCase maxTokens
    assert "discover_agents" in [t.name for t in definition.tools]
    discover = next(t for t in definition.tools if t.name == "discover_agents")
    assert discover.parameters["properties"]["capabilities"]["type"] == "array"  # from input_schema


def test_a_v0_4_agent_with_llm_parameters_keeps_them():
    definition = _official_v04("advanced__reasoning-agent.yaml")
    assert (definition.llm.temperature, definition.llm.max_tokens) == (0.3, 4096)
    assert definition.system_prompt.startswith("You are a research analyst")


def test_v0_4_team_handoffs_and_token_efficiency_are_kept_for_the_workflow_capability():
    team = _official_v04("hierarchical-crewai.ossa.yaml").team
    assert team["lead"] == "devops-manager"
    assert "devops-manager" in [m["name"] for m in team["members"]]
    handoffs = _official_v04("migrations__swarm-to-ossa__after-handoffs.ossa.yaml").handoffs
    assert handoffs[0]["target_agent"] == "order-verification-agent"
    efficiency = _official_v04("migrations__swarm-to-ossa__after-triage-agent.ossa.yaml").token_efficiency
    assert efficiency["caching"]["strategy"] == "semantic"


def test_a_v0_4_runtime_block_gives_the_model_when_no_model_block_does():
    definition = _official_v04("economics__marketplace-agent.ossa.json")
    assert definition.llm.model == "claude-sonnet-4-5"
    assert definition.llm.litellm_model.startswith("anthropic/")
    assert (definition.llm.temperature, definition.llm.max_tokens) == (0.1, 16000)


def test_v0_5_protocols_mcp_servers_become_mcp_tools_bound_by_server_name():
    definition = _official_v04("agent-manifests__v0.5-identity-security-protocols.ossa.yaml")
    offered = {t.name: t for t in definition.tools if t.kind == "mcp"}
    assert {"scan_repository", "generate_report", "check_policy"} <= set(offered)
    assert offered["scan_repository"].mcp.server == "compliance-tools"
    assert definition.protocols["a2a"]["version"] == "0.2.0"  # kept as declared


def test_the_code_interpreters_limits_come_from_sandboxing_and_the_runtimes_resources():
    batch = validate_text(
        textwrap.dedent(
            """
            apiVersion: ossa/v0.5.0
            kind: Agent
            metadata: {name: analyst}
            spec:
              role: You analyse.
              llm: {provider: openai, model: gpt-4o-mini}
              runtime:
                resources: {cpu: 2000m, memory: 512Mi}
                security: {allowNetworkAccess: true}
              security:
                sandboxing: {max_memory_mb: 1024, max_execution_seconds: 30, max_disk_mb: 64}
            extensions:
              openai_assistants:
                tools: [{type: code_interpreter}]
            """
        ),
        source="m.yaml",
    )
    assert batch.ok, [d.render() for d in batch.diagnostics]
    limits = batch.entries[0].definition.sandbox
    # the smaller memory of the two, the call bound and the largest file from sandboxing
    assert (limits.memory_bytes, limits.call_seconds, limits.file_bytes) == (512 << 20, 30.0, 64 << 20)
    warnings = {d.code for d in batch.diagnostics if d.severity == "warning"}
    assert {"runtime.cpu", "runtime.network"} <= warnings


def test_an_agent_without_the_code_interpreter_asks_for_no_kernel_limits():
    assert seed("data-analyst.ossa.yaml").sandbox is None  # its `code_interpreter` is a function of its own


def test_the_operators_maximum_caps_what_a_manifest_asks():
    from ossabus.contracts.sandbox import SandboxLimits
    from ossabus.sandbox.jail import Limits
    from ossabus.sandbox.sessions import limits_for

    ceiling = Limits(memory_bytes=1 << 30, call_seconds=20.0)
    given = limits_for(SandboxLimits(memory_bytes=8 << 30, call_seconds=5.0), ceiling)
    assert (given.memory_bytes, given.call_seconds) == (1 << 30, 5.0)
    assert limits_for(None, ceiling) == ceiling
