"""The normalised agent definition: one shape for every OSSA version, kind and extension.

The executor, dispatcher, relay and telemetry read only this model, never raw manifests, so a new
manifest shape costs one normaliser change and nothing downstream.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ossabus.contracts.sandbox import SandboxLimits as KernelLimits

Kind = Literal["Agent", "Task", "Workflow", "Flow"]
ToolKind = Literal["function", "http", "mcp", "code_interpreter", "file_search", "delegate", "handoff"]


class LLMSettings(BaseModel):
    """Which model to call and how, in litellm's terms."""

    provider: str | None = Field(None, description="Provider as the manifest names it, e.g. `openai`, `azure-openai`.")
    litellm_provider: str | None = Field(None, description="litellm's provider id, e.g. `azure`, `bedrock`.")
    model: str | None = Field(None, description="Model id as the manifest names it.")
    litellm_model: str | None = Field(None, description="`<litellm_provider>/<model>`, what litellm is called with.")
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    base_url: str | None = None
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    headers: dict[str, str] = Field(default_factory=dict)
    fallback_models: list[str] = Field(default_factory=list)
    client: Literal["auto", "litellm"] | None = Field(
        None, description="`extensions.ossabus.llm_client`: `litellm` forces litellm for this agent's model calls."
    )


class RetryPolicy(BaseModel):
    max_attempts: int = 3
    backoff: Literal["none", "linear", "exponential"] = "exponential"
    initial_delay_ms: int = 500
    max_delay_ms: int = 10_000


class NetworkAccess(BaseModel):
    """v0.4.7/v0.5 `security.network_access`: what the agent says it may reach. Checked on every
    destination the manifest chose (HTTP tools, MCP servers by URL, a model base_url) on top of the
    operator's egress policy, which it can only narrow."""

    allowed_domains: list[str] | None = Field(None, description="None: not declared; [] means no network at all.")
    blocked_domains: list[str] = Field(default_factory=list)
    protocols: list[str] | None = Field(None, description="URL schemes allowed, e.g. `https`.")
    egress_policy: Literal["allow-all", "allow-list", "deny-all"] | None = None


class SandboxLimits(BaseModel):
    """`security.sandboxing`: bounds the agent asks for; the operator's maximum still caps them."""

    required: bool = False
    type: str | None = None
    max_memory_mb: int | None = None
    max_cpu_cores: float | None = None
    max_execution_seconds: int | None = None
    max_disk_mb: int | None = None


class AuditSettings(BaseModel):
    """`security.audit` with the schema's defaults: a declared audit block keeps inputs and outputs
    off traces unless it says otherwise (they can only narrow what the operator captures)."""

    log_inputs: bool = False
    log_outputs: bool = False
    log_tool_calls: bool = True
    retention_days: int | None = None


class SecuritySettings(BaseModel):
    tier: str | None = None
    data_classification: str | None = None
    network_access: NetworkAccess | None = None
    sandboxing: SandboxLimits | None = None
    audit: AuditSettings | None = None
    capabilities: dict[str, Any] | None = None


class HttpBinding(BaseModel):
    endpoint: str
    method: str = "POST"
    auth: dict[str, Any] | None = None
    allow_private: bool = Field(False, description="May call loopback, private and link-local addresses.")
    network: NetworkAccess | None = Field(
        None, description="The agent's own `security.network_access`: narrows the operator's policy, never widens it."
    )


class McpBinding(BaseModel):
    """An MCP server as a manifest names it; how to reach it comes from the operator's MCP config."""

    server: str | None = None
    transport: str | None = None
    command: list[str] | None = None
    url: str | None = None
    allow_private: bool = False
    timeout_seconds: float | None = Field(None, description="Per-call timeout for every tool of this server.")
    idempotent: bool = Field(False, description="Every tool of this server may be retried after a failure.")
    confirmation: bool = Field(False, description="Every call of a tool of this server needs a person's approval.")
    network: NetworkAccess | None = Field(None, description="The agent's own `security.network_access`.")


class ToolDefinition(BaseModel):
    """A tool the model may call, and where it runs."""

    name: str = Field(description="The name the manifest gives, e.g. `security.scan`.")
    function_name: str = Field(
        "",
        description="What the model calls it: the name with characters function calling refuses replaced by `_`.",
    )
    kind: ToolKind = "function"
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    parameters_declared: bool = Field(
        True, description="False when the manifest gave no schema (e.g. an MCP tool listed by name only)."
    )
    output_schema: dict[str, Any] | None = None
    strict: bool | None = None
    confirmation: bool = Field(False, description="Needs human approval before it runs.")
    idempotent: bool = False
    timeout_seconds: float | None = None
    http: HttpBinding | None = None
    mcp: McpBinding | None = None
    handler: str | None = Field(None, description="Declared handler reference (informational).")
    target: str | None = Field(None, description="delegate/handoff: the registered agent it reaches.")
    member: str | None = Field(None, description="delegate/handoff: the member of this agent's team it reaches.")
    sources: list[str] = Field(default_factory=list, description="JSON paths of every declaration merged here.")


class Limits(BaseModel):
    """Bounds a run must respect; None means no bound from the manifest."""

    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    max_tokens_per_request: int | None = None
    max_tokens_per_day: int | None = None
    max_cost_per_day: float | None = None
    max_concurrent_requests: int | None = None
    timeout_seconds: float | None = None
    max_latency_seconds: float | None = None
    max_steps: int | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class RunDefaults(BaseModel):
    """Per-run settings a manifest can preset (OpenAI `run_config`, Vercel `tool_calling`)."""

    truncation_strategy: dict[str, Any] | None = None
    response_format: Any = None
    parallel_tool_calls: bool | None = None
    tool_choice: str | None = None


class ObservabilitySettings(BaseModel):
    tracing: bool = True
    metrics: bool = True
    logs: bool = True
    exporter: str | None = None
    endpoint: str | None = None
    log_level: str | None = None
    log_format: str | None = None
    trace_run_steps: bool = True
    include_usage: bool = True
    step_types: list[str] | None = None


class StreamingSettings(BaseModel):
    enabled: bool = True
    events: list[str] | None = None
    vercel_protocol: Literal["data", "text", "sse"] | None = None


class TaskSettings(BaseModel):
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    execution: dict[str, Any] = Field(default_factory=dict)


class TeamMember(BaseModel):
    """An agent defined inside another (`spec.subagents`, `spec.team.members`): it runs with the
    parent's model connection and its own prompt, model, a subset of the parent's tools and a budget."""

    name: str
    role: str | None = Field(None, description="Its system prompt.")
    description: str | None = None
    model: str | None = Field(None, description="None or `inherit`: the parent's model.")
    tools: list[str] = Field(default_factory=list, description="Names of the parent's tools it may use.")
    max_tokens: int | None = Field(None, description="`maxTokenBudget`: completion tokens per invocation.")


class WorkflowStepRef(BaseModel):
    id: str
    kind: str | None = None
    ref: str | None = None
    depends_on: list[str] = Field(default_factory=list)


class WorkflowSettings(BaseModel):
    steps: list[WorkflowStepRef] = Field(default_factory=list)
    raw_steps: list[Any] = Field(default_factory=list)


class AgentDefinition(BaseModel):
    """Everything ossabus needs to run an OSSA Agent, Task or Workflow."""

    name: str
    kind: Kind
    api_version: str
    version: str | None = Field(None, description="`metadata.version` of the manifest.")
    description: str | None = None
    labels: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str | None = None
    llm: LLMSettings = Field(default_factory=LLMSettings)
    tools: list[ToolDefinition] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list, description="Abstract capabilities, e.g. `retrieval`.")
    mcp_servers: list[McpBinding] = Field(
        default_factory=list, description="MCP servers whose tools are listed at run time."
    )
    tool_resources: dict[str, Any] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    run_defaults: RunDefaults = Field(default_factory=RunDefaults)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    streaming: StreamingSettings = Field(default_factory=StreamingSettings)
    task: TaskSettings | None = None
    workflow: WorkflowSettings | None = None
    subagents: list[Any] = Field(default_factory=list, description="Kept for multi-agent orchestration.")
    orchestration: dict[str, Any] | None = None
    # v0.4/v0.5 multi-agent and context declarations: validated and kept, run by the workflow capability
    team: dict[str, Any] | None = None
    handoffs: list[Any] = Field(default_factory=list)
    members: list[TeamMember] = Field(
        default_factory=list, description="Subagents and team members, reached by the delegate and handoff tools."
    )
    max_handoffs: int = Field(10, description="Hand-offs one run may make (`handoff_config.max_handoffs`).")
    delegation: dict[str, Any] | None = None
    knowledge_sources: list[Any] = Field(default_factory=list)
    data_sources: list[Any] = Field(
        default_factory=list,
        description="Every retrieval source declared (`data_sources`, `knowledge_sources`); the ossabus vector "
        "stores among them are in `tool_resources.file_search`.",
    )
    protocols: Any = Field(None, description="`protocols` (mcp, a2a, rest, ...), as declared.")
    token_efficiency: dict[str, Any] | None = None
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    sandbox: KernelLimits | None = Field(
        None,
        description="What the code interpreter's kernel may use, from `security.sandboxing` and "
        "`spec.runtime.resources` (the operator's maximum still caps it).",
    )
    governance: dict[str, Any] | None = Field(None, description="`governance`, as declared (stored, not enforced).")
    env_refs: list[str] = Field(default_factory=list, description="`${VAR}` names the manifest reads.")
    openai_assistant_id: str | None = None
    approval_required: bool | list[str] = Field(
        False,
        description="`spec.autonomy.approval_required`: every server-side tool call (true) or calls of the "
        "tools named here wait for a person's approval.",
    )

    def tool(self, name: str) -> ToolDefinition | None:
        """The tool with this manifest name or function name."""
        return next((t for t in self.tools if name in (t.name, t.function_name)), None)

    def needs_approval(self, tool: ToolDefinition) -> bool:
        if tool.confirmation or self.approval_required is True:
            return True
        return isinstance(self.approval_required, list) and bool(
            {tool.name, tool.function_name} & set(self.approval_required)
        )
