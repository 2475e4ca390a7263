"""Turning any accepted manifest shape into one `AgentDefinition`.

Where a value can come from several places, the manifest's own `spec` wins over extensions,
because extensions describe how *other* platforms should see the agent. Nothing here reads the
environment: `${NAME}` is a secret reference only in credential fields, resolved when it is used
(see `ossabus.runtime.secrets`); elsewhere `${NAME:-default}` is its default (OSSA's templates write
models that way) and anything else is literal text.
"""

from __future__ import annotations

import re
from typing import Any

from ossabus.contracts.agent import (
    AgentDefinition,
    Limits,
    LLMSettings,
    ObservabilitySettings,
    RetryPolicy,
    RunDefaults,
    StreamingSettings,
    TaskSettings,
    ToolDefinition,
    WorkflowSettings,
    WorkflowStepRef,
)
from ossabus.contracts.sandbox import SandboxLimits as KernelLimits
from ossabus.registry.data_sources import read_data_sources
from ossabus.registry.normalize_security import apply_security, security_settings
from ossabus.registry.providers import PROVIDER_ALIASES, infer_provider, litellm_model, litellm_provider
from ossabus.registry.team import team_of
from ossabus.registry.tools import ToolCollector, as_json_schema, check_json_schema
from ossabus.registry.validation import Findings
from ossabus.runtime import secrets


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def pick(source: dict, *keys: str) -> Any:
    """First present key: manifests mix camelCase (0.2) and snake_case (0.3) spellings."""
    for key in keys:
        if key in source and source[key] is not None:
            return source[key]
    return None


def first(*values: Any) -> Any:
    """First value that is not None (unlike `or`, keeps 0 and false)."""
    return next((v for v in values if v is not None), None)


def normalize(data: dict, f: Findings) -> AgentDefinition | None:
    spec = _dict(data.get("spec"))
    ext = _dict(data.get("extensions"))
    oa = _dict(ext.get("openai_assistants"))
    va = _dict(ext.get("vercel_ai"))
    metadata = _dict(data.get("metadata"))
    kind = data["kind"]

    env_refs = _collect_env_refs(data, f)
    tools = ToolCollector(f)
    tools.spec_capabilities(spec.get("capabilities"), ["spec", "capabilities"])
    tools.spec_tools(spec.get("tools"), ["spec", "tools"])
    tools.openai_tools(oa.get("tools"), ["extensions", "openai_assistants", "tools"])
    if isinstance(ext.get("mcp"), dict):
        tools.mcp_tools(ext["mcp"], ["extensions", "mcp"])
    for where, protocols in ((["protocols"], data.get("protocols")), (["spec", "protocols"], spec.get("protocols"))):
        mcp = _dict(_dict(protocols).get("mcp"))
        if mcp.get("servers") is not None:
            tools.protocol_mcp_servers(mcp["servers"], [*where, "mcp", "servers"])
    tools.vercel_tools(_dict(va.get("tool_calling")).get("tools"), ["extensions", "vercel_ai", "tool_calling", "tools"])
    sources = read_data_sources(spec, ext, f)
    if sources.vector_store_ids:
        tools.builtin("file_search", sources.first_store_path)

    members, team_tools, max_handoffs = team_of(spec, metadata["name"], f)
    llm_settings = _llm(
        spec, oa, va, f, needs_model=kind == "Agent", runtime=_dict(spec.get("runtime") or data.get("runtime"))
    )
    llm_settings.client = _llm_client(_dict(ext.get("ossabus")), f)
    definition = AgentDefinition(
        name=metadata["name"],
        kind=kind,
        api_version=data["apiVersion"],
        version=str(metadata["version"]) if metadata.get("version") is not None else None,
        description=metadata.get("description") if isinstance(metadata.get("description"), str) else None,
        labels=_dict(metadata.get("labels")),
        annotations=_dict(metadata.get("annotations")),
        system_prompt=_system_prompt(spec, oa, f),
        llm=llm_settings,
        tools=_with_team(_in_openai_order(list(tools.tools.values()), oa.get("tools")), team_tools, f),
        members=members,
        max_handoffs=max_handoffs,
        capabilities=tools.capabilities,
        mcp_servers=tools.mcp_servers,
        tool_resources=_with_stores(_dict(oa.get("tool_resources")), sources.vector_store_ids),
        data_sources=sources.declared,
        limits=_limits(spec, oa, va, f),
        run_defaults=_run_defaults(oa, va),
        observability=_observability(spec, oa),
        streaming=_streaming(oa, va),
        subagents=spec.get("subagents") if isinstance(spec.get("subagents"), list) else [],
        team=_dict(spec.get("team")) or None,
        handoffs=spec.get("handoffs") if isinstance(spec.get("handoffs"), list) else [],
        delegation=_dict(spec.get("delegation")) or None,
        knowledge_sources=_list(spec.get("knowledge_sources") or spec.get("knowledgeSources")),
        protocols=spec.get("protocols") or data.get("protocols") or None,
        token_efficiency=_dict(spec.get("token_efficiency") or data.get("token_efficiency")) or None,
        orchestration=_dict(spec.get("orchestration") or data.get("orchestration")) or None,
        env_refs=env_refs,
        openai_assistant_id=oa.get("assistant_id") if isinstance(oa.get("assistant_id"), str) else None,
        approval_required=_approval_policy(spec, f),
    )
    in_spec = isinstance(spec.get("security"), dict)
    definition.security = security_settings(
        spec.get("security") if in_spec else data.get("security"), ["spec", "security"] if in_spec else ["security"], f
    )
    definition.governance = _dict(spec.get("governance") or data.get("governance")) or None
    apply_security(definition, f)
    definition.sandbox = sandbox_request(definition, _dict(spec.get("runtime")), f)
    if kind == "Task":
        definition.task = _task(spec, va, f)
    if kind == "Workflow":
        definition.workflow = _workflow(spec)
        _check_step_references(spec, _step_ids(spec), f)
    return definition


def _with_team(tools: list[ToolDefinition], team: list[ToolDefinition], f: Findings) -> list[ToolDefinition]:
    """The agent's tools, then those reaching its team (a team tool may not take a declared tool's name)."""
    taken = {t.function_name for t in tools}
    for tool in team:
        if tool.function_name in taken:
            f.warning(
                "team.name_taken",
                f"{tool.function_name!r} is a declared tool; the team member is not reached",
                ["spec"],
            )
        else:
            tools.append(tool)
    return tools


_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)?\s*$")
_QUANTITY_UNITS = {
    None: 1,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def memory_quantity(value: object) -> int | None:
    """A Kubernetes memory quantity (`2Gi`, `512Mi`, `1000000`) in bytes; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if value > 0 else None
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    return int(float(match.group(1)) * _QUANTITY_UNITS[match.group(2)]) or None


def sandbox_request(definition: AgentDefinition, runtime: dict, f: Findings) -> KernelLimits | None:
    """The code interpreter's limits an agent asks for: `security.sandboxing` (v0.5) and seed 000's
    `spec.runtime` (`resources.memory`, `security.allowNetworkAccess`). A kernel never has network,
    whatever the manifest says; a CPU rate (`cpu: 2000m`) needs cgroups, which the jail does not
    use: the kernel has CPU-time and wall-clock bounds instead."""
    if not any(t.kind == "code_interpreter" for t in definition.tools):
        return None  # the limits are the code interpreter's: without it they say nothing
    asked = KernelLimits()
    box = definition.security.sandboxing
    if box is not None:
        asked.memory_bytes = box.max_memory_mb * (1 << 20) if box.max_memory_mb else None
        asked.call_seconds = float(box.max_execution_seconds) if box.max_execution_seconds else None
        asked.file_bytes = box.max_disk_mb * (1 << 20) if box.max_disk_mb else None
    resources = _dict(runtime.get("resources"))
    if "memory" in resources:
        memory = memory_quantity(resources["memory"])
        if memory is None:
            f.warning(
                "runtime.memory",
                "resources.memory is a quantity such as 2Gi; ignored",
                ["spec", "runtime", "resources", "memory"],
            )
        else:
            asked.memory_bytes = min(asked.memory_bytes or memory, memory)
    if "cpu" in resources:
        f.warning(
            "runtime.cpu",
            "a CPU rate is not enforced; the code interpreter bounds CPU time and each call's wall clock",
            ["spec", "runtime", "resources", "cpu"],
        )
    if _dict(runtime.get("security")).get("allowNetworkAccess") is True:
        f.warning(
            "runtime.network",
            "the code interpreter never has network access, whatever a manifest asks",
            ["spec", "runtime", "security", "allowNetworkAccess"],
        )
    return asked if asked.model_dump(exclude_none=True) else None


_EXPRESSION_BODY = re.compile(r"\$\{\{(.*?)\}\}|\$\{([^{}]*)\}", re.S)
_STEP_REFERENCE = re.compile(r"(?<![\w.])steps\.([A-Za-z0-9_-]+)")


_STEP_LISTS = ("steps", "parallel", "else", "compensation_steps", "compensation")


def _step_ids(value: Any, under_steps: bool = False) -> set[str]:
    """Ids of the workflow's steps at any depth (steps of parallel groups, loops, branches)."""
    ids: set[str] = set()
    if isinstance(value, dict):
        if under_steps and isinstance(value.get("id"), str):
            ids.add(value["id"])
        for key, item in value.items():
            ids |= _step_ids(item, key in _STEP_LISTS)
    elif isinstance(value, list):
        for item in value:
            ids |= _step_ids(item, under_steps)
    return ids


def _check_step_references(spec: dict, step_ids: set[str], f: Findings) -> None:
    """`${steps.<id>...}` and `${{ steps.<id>... }}` must name a step of this workflow: a typo there
    would only show when the workflow runs, with a value silently missing."""

    def walk(value: Any, path: list[str | int]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, [*path, str(key)])
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, [*path, i])
        elif isinstance(value, str) and "${" in value:
            for body in _EXPRESSION_BODY.finditer(value):
                for step in _STEP_REFERENCE.findall(body.group(1) or body.group(2) or ""):
                    if step not in step_ids:
                        f.error(
                            "expression.unknown_step",
                            f"{value.strip()!r} refers to step {step!r}, which this workflow does not have "
                            f"(steps: {', '.join(sorted(step_ids)) or 'none'})",
                            path,
                        )

    walk(spec, ["spec"])


def _approval_policy(spec: dict, f: Findings) -> bool | list[str]:
    """`spec.autonomy.approval_required`: true (every server-side tool call needs a person's approval)
    or the names of the tools that do."""
    value = _dict(spec.get("autonomy")).get("approval_required")
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    f.warning(
        "autonomy.approval_required",
        "approval_required is true, false or a list of tool names; ignored",
        ["spec", "autonomy", "approval_required"],
    )
    return False


def _in_openai_order(tools: list, openai_tools: Any) -> list:
    """Tools the OpenAI extension lists come first, in its order: it is the explicit OpenAI view."""
    order: list[str] = []
    for item in openai_tools if isinstance(openai_tools, list) else []:
        if isinstance(item, dict):
            fn = item.get("function") if isinstance(item.get("function"), dict) else {}
            order.append(str(fn.get("name") or item.get("type")))
    rank = {name: i for i, name in enumerate(order)}
    return sorted(tools, key=lambda t: rank.get(t.function_name, rank.get(t.name, len(order))))


_PROMPT_FILE = re.compile(r"^[\w./-]+\.(md|txt|j2|jinja2?|prompt|tmpl)$")


def _system_prompt(spec: dict, oa: dict, f: Findings) -> str | None:
    """`spec.instructions` (v0.4/v0.5), else `spec.prompts.system`, else `spec.role`, else the OpenAI
    extension's instructions.

    A one-word role (`assistant`, `orchestration`) names a role rather than instructing the model,
    so it is used only when nothing else is given.
    """
    prompts = spec.get("prompts")
    system = prompts.get("system") if isinstance(prompts, dict) else None
    if isinstance(system, dict):
        system = pick(system, "template", "content", "text")
    if isinstance(system, str) and _PROMPT_FILE.fullmatch(system.strip()):
        # A path to a prompt file (v0.4 `prompts.system.template: prompts/x.md`): a manifest does not
        # make the server read files, so the prompt comes from what the manifest itself holds.
        f.warning(
            "prompt.file_not_read",
            f"prompts.system names the file {system.strip()!r}, which ossabus does not read; "
            "put the prompt in spec.instructions (or spec.role)",
            ["spec", "prompts", "system"],
        )
        system = None
    role = spec.get("role") if isinstance(spec.get("role"), str) else None
    instructions = oa.get("instructions") if isinstance(oa.get("instructions"), str) else None
    written = spec.get("instructions") if isinstance(spec.get("instructions"), str) else None
    label_only = role is not None and len(role.split()) <= 1
    for candidate in (written, system, None if label_only else role, instructions, role):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def _collect_env_refs(data: Any, f: Findings) -> list[str]:
    """Every secret the manifest's credential fields name (`${NAME}` there, `api_key_env: NAME`).

    A reference that names no variable is an error; one the operator has not allowed is a warning:
    the agent loads, and the tool or model call that needs the secret fails with a clear message.
    """
    names: list[str] = []

    def note(name: str, path: list[str | int], written: str, provider_key: bool = False) -> None:
        if not secrets.NAME.fullmatch(name):
            f.error("env.invalid_reference", f"{written!r} does not name an environment variable", path)
            return
        if not secrets.allowed(name) and not (provider_key and name in secrets.PROVIDER_KEYS):
            f.warning(
                "secret.not_allowed",
                f"{name} is not a secret the operator allows manifests to read ({secrets.ALLOW_ENV}); "
                "calls that need it will fail",
                path,
            )
        if name not in names:
            names.append(name)

    def walk(value: Any, path: list[str | int], credential: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                key = str(key)
                if key in ("api_key_env", "apiKeyEnv") and isinstance(item, str):
                    own_endpoint = not any(value.get(k) for k in ("base_url", "baseUrl", "baseURL"))
                    note(item, [*path, key], item, provider_key=own_endpoint)
                else:
                    inside = credential or key in secrets.CREDENTIAL_KEYS or key in ("headers", "auth")
                    walk(item, [*path, key], inside)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, [*path, i], credential)
        elif isinstance(value, str) and "${" in value:
            for root in secrets.expressions(value):
                if root not in secrets.EXPRESSION_ROOTS:
                    f.warning(
                        "expression.unknown_root",
                        f"{value!r}: '{root}' is not an OSSA expression root "
                        f"({', '.join(('env', 'secrets', *secrets.EXPRESSION_ROOTS))})",
                        path,
                    )
            if credential:
                for name, _ in secrets.references(value):
                    note(name, path, value)

    walk(data, [], False)
    return names


def _number(value: Any, f: Findings, path: list[str | int], cast: type = float) -> Any:
    """A number from a number or numeric string; anything else is ignored with a warning."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return cast(value)
    if isinstance(value, str):
        try:
            text = str(secrets.template_defaults(value))
            return cast(float(text)) if cast is int else cast(text)
        except ValueError:
            pass
    f.warning("value.not_a_number", f"expected a number, got {value!r}; ignored", path)
    return None


def _with_stores(resources: dict, store_ids: list[str]) -> dict:
    """The manifest's own vector stores join the assistant's `file_search` resources, where runs look."""
    if not store_ids:
        return resources
    search = _dict(resources.get("file_search"))
    named = [i for i in _list(search.get("vector_store_ids")) if isinstance(i, str)]
    return {**resources, "file_search": {**search, "vector_store_ids": list(dict.fromkeys(named + store_ids))}}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


LLM_CLIENTS = ("auto", "litellm")


def _llm_client(ours: dict, f: Findings) -> str | None:
    """`extensions.ossabus.llm_client`: `litellm` sends this agent's model calls through litellm even
    where ossabus would speak the OpenAI wire format itself; `auto` (the default) lets it choose."""
    value = ours.get("llm_client")
    if value is None:
        return None
    if value not in LLM_CLIENTS:
        f.warning(
            "llm.client_unknown",
            f"llm_client {value!r} is not one of {', '.join(LLM_CLIENTS)}; ossabus chooses",
            ["extensions", "ossabus", "llm_client"],
        )
        return None
    return value


def _llm(spec: dict, oa: dict, va: dict, f: Findings, needs_model: bool, runtime: dict | None = None) -> LLMSettings:
    # v0.4 `runtime: {model, temperature, max_tokens}` (top level or in spec) stands in for a model block
    runtime = runtime or {}
    llm = _dict(spec.get("llm")) or (runtime if "model" in runtime and "model" not in spec else {})
    model_spec = spec.get("model")
    model_obj = _dict(model_spec)
    params = _dict(model_obj.get("parameters")) or _dict(llm.get("parameters"))  # v0.4: model or llm
    vp = _dict(va.get("provider"))
    base = ["spec", "llm"] if llm else ["spec", "model"] if model_obj else ["spec"]

    provider = secrets.template_defaults(pick(llm, "provider") or pick(model_obj, "provider") or pick(vp, "name"))
    model = secrets.template_defaults(
        pick(llm, "model")
        or (model_spec if isinstance(model_spec, str) else pick(model_obj, "name", "model"))
        or pick(vp, "model")
        or pick(oa, "model")
    )
    if provider is None and oa.get("model") and model == oa.get("model"):
        provider = "openai"
    settings = LLMSettings(
        provider=provider if isinstance(provider, str) else None,
        model=model if isinstance(model, str) else None,
        temperature=_number(first(pick(llm, "temperature"), pick(params, "temperature")), f, [*base, "temperature"]),
        top_p=_number(first(pick(llm, "topP", "top_p"), pick(params, "top_p", "topP")), f, [*base, "top_p"]),
        max_tokens=_number(
            first(pick(llm, "maxTokens", "max_tokens"), pick(params, "max_tokens", "maxTokens")),
            f,
            [*base, "maxTokens"],
            int,
        ),
        seed=_number(first(pick(llm, "seed"), pick(params, "seed")), f, [*base, "seed"], int),
        base_url=secrets.template_defaults(
            pick(llm, "base_url", "baseUrl", "baseURL")
            or pick(model_obj, "base_url", "baseUrl")
            or pick(vp, "base_url")
        ),
        api_key_env=pick(llm, "api_key_env", "apiKeyEnv")
        or pick(model_obj, "api_key_env", "apiKeyEnv")
        or pick(vp, "api_key_env"),
        headers={str(k): str(v) for k, v in _dict(vp.get("headers")).items()},
    )
    stop = pick(llm, "stop") or pick(params, "stop")
    settings.stop = [stop] if isinstance(stop, str) else [str(s) for s in stop] if isinstance(stop, list) else None
    fallbacks = llm.get("fallback_models", model_obj.get("fallback_models"))
    if isinstance(fallbacks, list):
        settings.fallback_models = [m if isinstance(m, str) else str(_dict(m).get("model")) for m in fallbacks if m]
    _resolve_provider(settings, f, base, needs_model)
    return settings


def _resolve_provider(settings: LLMSettings, f: Findings, base: list[str | int], needs_model: bool) -> None:
    if settings.model is None:
        if needs_model:
            f.warning("llm.model_missing", "no model declared; runs use the server's default model", base)
        return
    provider = settings.provider
    if provider is None:
        provider = infer_provider(settings.model)
        if provider is None:
            f.warning(
                "llm.provider_missing",
                f"no provider declared and none implied by model {settings.model!r}; litellm will have to infer it",
                base,
            )
            settings.litellm_model = settings.model
            return
    resolved = litellm_provider(provider)
    if resolved is None:
        known = ", ".join(sorted(PROVIDER_ALIASES))
        f.error(
            "llm.provider_unknown",
            f"provider {provider!r} is not known; use one of: {known}",
            [*base, "provider"],
        )
        return
    settings.litellm_provider = resolved
    settings.litellm_model = litellm_model(resolved, settings.model)


def _limits(spec: dict, oa: dict, va: dict, f: Findings) -> Limits:
    constraints = _dict(spec.get("constraints"))
    cost, perf = _dict(constraints.get("cost")), _dict(constraints.get("performance"))
    run_config = _dict(oa.get("run_config"))
    autonomy = _dict(spec.get("autonomy"))
    tool_calling = _dict(va.get("tool_calling"))
    execution = _dict(spec.get("execution"))
    c, p, r = (
        ["spec", "constraints", "cost"],
        ["spec", "constraints", "performance"],
        ["extensions", "openai_assistants", "run_config"],
    )
    timeout = first(
        pick(run_config, "timeout_seconds"),
        pick(perf, "timeoutSeconds", "timeout_seconds"),
        pick(execution, "timeout_seconds", "timeoutSeconds"),
    )
    return Limits(
        max_prompt_tokens=_number(run_config.get("max_prompt_tokens"), f, [*r, "max_prompt_tokens"], int),
        max_completion_tokens=_number(run_config.get("max_completion_tokens"), f, [*r, "max_completion_tokens"], int),
        max_tokens_per_request=_number(pick(cost, "maxTokensPerRequest", "max_tokens_per_request"), f, c, int),
        max_tokens_per_day=_number(pick(cost, "maxTokensPerDay", "max_tokens_per_day"), f, c, int),
        max_cost_per_day=_number(pick(cost, "maxCostPerDay", "max_cost_per_day"), f, c),
        max_concurrent_requests=_number(pick(perf, "maxConcurrentRequests", "max_concurrent_requests"), f, p, int),
        timeout_seconds=_number(timeout, f, p),
        max_latency_seconds=_number(pick(perf, "maxLatencySeconds", "max_latency_seconds"), f, p),
        max_steps=_number(
            first(pick(autonomy, "max_iterations", "maxIterations"), tool_calling.get("max_steps")),
            f,
            ["spec"],
            int,
        ),
        retry=_retry(spec, oa, f),
    )


def _retry(spec: dict, oa: dict, f: Findings) -> RetryPolicy:
    policy = RetryPolicy()
    model_block = _dict(spec.get("model"))  # v0.4+: the model block carries what spec.llm carried
    llm_retry = _dict(_dict(spec.get("llm")).get("retry_config")) or _dict(
        model_block.get("retry_config") or model_block.get("retry")
    )
    spec_retry = _dict(spec.get("retry_policy"))
    api_retry = _dict(_dict(oa.get("api_config")).get("retry"))
    attempts = first(pick(llm_retry, "max_attempts"), pick(spec_retry, "max_attempts"), pick(api_retry, "max_retries"))
    if (n := _number(attempts, f, ["spec", "llm", "retry_config"], int)) is not None:
        policy.max_attempts = max(1, n)
    strategy = llm_retry.get("backoff_strategy")
    if strategy in ("none", "linear", "exponential"):
        policy.backoff = strategy
    for key in ("initial_delay_ms", "max_delay_ms"):
        if (n := _number(llm_retry.get(key), f, ["spec", "llm", "retry_config", key], int)) is not None:
            setattr(policy, key, n)
    return policy


def _run_defaults(oa: dict, va: dict) -> RunDefaults:
    run_config = _dict(oa.get("run_config"))
    tool_calling = _dict(va.get("tool_calling"))
    parallel = run_config.get("parallel_tool_calls", tool_calling.get("parallel_tool_calls"))
    mode = tool_calling.get("mode")
    return RunDefaults(
        truncation_strategy=_dict(run_config.get("truncation_strategy")) or None,
        response_format=run_config.get("response_format"),
        parallel_tool_calls=parallel if isinstance(parallel, bool) else None,
        tool_choice=mode if mode in ("auto", "required", "none") else None,
    )


def _enabled(section: Any, default: bool = True) -> bool:
    if isinstance(section, bool):
        return section
    if isinstance(section, dict) and isinstance(section.get("enabled"), bool):
        return section["enabled"]
    return default


def _observability(spec: dict, oa: dict) -> ObservabilitySettings:
    obs, mon, oa_obs = (
        _dict(spec.get("observability")),
        _dict(spec.get("monitoring")),
        _dict(oa.get("observability")),
    )
    tracing, logging = _dict(obs.get("tracing")), _dict(obs.get("logging"))
    settings = ObservabilitySettings(
        tracing=_enabled(obs.get("tracing"), _enabled(mon.get("traces"))),
        metrics=_enabled(obs.get("metrics"), _enabled(mon.get("metrics"))),
        logs=_enabled(obs.get("logging"), _enabled(mon.get("logs"))),
        exporter=pick(tracing, "exporter") or pick(oa_obs, "otel_exporter"),
        endpoint=pick(tracing, "endpoint"),
        log_level=pick(logging, "level"),
        log_format=pick(logging, "format"),
    )
    if isinstance(oa_obs.get("trace_run_steps"), bool):
        settings.trace_run_steps = oa_obs["trace_run_steps"]
    if isinstance(oa_obs.get("include_usage"), bool):
        settings.include_usage = oa_obs["include_usage"]
    if isinstance(oa_obs.get("step_types"), list):
        settings.step_types = [str(s) for s in oa_obs["step_types"]]
    return settings


def _streaming(oa: dict, va: dict) -> StreamingSettings:
    streaming = _dict(oa.get("streaming"))
    protocol = va.get("stream_protocol")
    return StreamingSettings(
        enabled=_enabled(streaming),
        events=[str(e) for e in streaming["events"]] if isinstance(streaming.get("events"), list) else None,
        vercel_protocol=protocol if protocol in ("data", "text", "sse") else None,
    )


def _task(spec: dict, va: dict, f: Findings) -> TaskSettings:
    settings = TaskSettings(execution=_dict(spec.get("execution")))
    for key, attr in (("input", "input_schema"), ("output", "output_schema")):
        schema = spec.get(key)
        if schema is not None and check_json_schema(f, schema, ["spec", key], f"spec.{key}"):
            setattr(settings, attr, schema)
    output = _dict(va.get("output_schema"))
    if settings.output_schema is None and isinstance(output.get("schema"), dict):
        schema = as_json_schema(output["schema"])
        path = ["extensions", "vercel_ai", "output_schema", "schema"]
        if check_json_schema(f, schema, path, "vercel_ai output schema"):
            settings.output_schema = schema
    return settings


def _workflow(spec: dict) -> WorkflowSettings:
    steps = spec.get("steps") if isinstance(spec.get("steps"), list) else []
    refs: list[WorkflowStepRef] = []
    for step in steps:
        if not isinstance(step, dict) or not isinstance(step.get("id"), str):
            continue
        ref = step.get("ref") or step.get("agent_ref") or step.get("task_ref")
        kind = step.get("kind") or ("Agent" if "agent_ref" in step else "Task" if "task_ref" in step else None)
        depends = step.get("depends_on") or []
        refs.append(
            WorkflowStepRef(
                id=step["id"],
                kind=kind if isinstance(kind, str) else None,
                ref=ref if isinstance(ref, str) else None,
                depends_on=[depends] if isinstance(depends, str) else [str(d) for d in depends if d],
            )
        )
    return WorkflowSettings(steps=refs, raw_steps=steps)
