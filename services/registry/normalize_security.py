"""`security` and `governance` of a manifest, as far as they bear on running it.

Each piece is taken when it has the shape the v0.4.7/v0.5 schema gives it and ignored (with a
warning) otherwise: older manifests use `security` for other things (auth schemes, roles), and a
shape we cannot read must not silently widen or narrow what an agent may do.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ossabus.contracts.agent import (
    AgentDefinition,
    AuditSettings,
    NetworkAccess,
    SandboxLimits,
    SecuritySettings,
)
from ossabus.registry.validation import Findings
from ossabus.runtime.egress import EgressRefused, check_declared_access


def _part(model: type[BaseModel], raw: Any, path: list[str | int], f: Findings) -> Any:
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        f.warning("security.ignored", f"{where}: {first['msg']}; this block is ignored", path)
        return None


def security_settings(raw: Any, path: list[str | int], f: Findings) -> SecuritySettings:
    """`security` (top level in v0.5, `spec.security` in some v0.4 examples) in the shapes the
    current schemas define."""
    if not isinstance(raw, dict):
        return SecuritySettings()
    sandboxing = raw.get("sandboxing")
    limits = sandboxing.get("resource_limits") if isinstance(sandboxing, dict) else None
    sandbox = None
    if isinstance(sandboxing, dict):
        merged = {k: v for k, v in sandboxing.items() if k != "resource_limits"}
        merged |= limits if isinstance(limits, dict) else {}
        sandbox = _part(SandboxLimits, merged, [*path, "sandboxing"], f)
    return SecuritySettings(
        tier=raw.get("tier") if isinstance(raw.get("tier"), str) else None,
        data_classification=raw.get("data_classification") if isinstance(raw.get("data_classification"), str) else None,
        network_access=_part(NetworkAccess, raw.get("network_access"), [*path, "network_access"], f),
        sandboxing=sandbox,
        audit=_part(AuditSettings, raw.get("audit"), [*path, "audit"], f),
        capabilities=raw.get("capabilities") if isinstance(raw.get("capabilities"), dict) else None,
    )


def apply_security(definition: AgentDefinition, f: Findings) -> None:
    """Carry the agent's own bounds to where they are enforced: its network reach onto every HTTP
    tool and MCP server, its execution limit onto every tool's timeout (never raising one). A
    destination the manifest names and its own network_access refuses is a warning now rather than
    a surprise at run time."""
    security = definition.security
    access = security.network_access
    if access is not None:
        access.allowed_domains = None if access.allowed_domains is None else [d.lower() for d in access.allowed_domains]
        access.blocked_domains = [d.lower() for d in access.blocked_domains]
        _warn_refused(definition, access, f)
        for tool in definition.tools:
            if tool.http is not None:
                tool.http.network = access
            if tool.mcp is not None:
                tool.mcp.network = access
        for server in definition.mcp_servers:
            server.network = access
    bound = security.sandboxing.max_execution_seconds if security.sandboxing else None
    if bound:
        for tool in definition.tools:
            tool.timeout_seconds = min(tool.timeout_seconds or bound, bound)
        for server in definition.mcp_servers:
            server.timeout_seconds = min(server.timeout_seconds or bound, bound)
        for tool in definition.tools:
            if tool.mcp is not None:
                tool.mcp.timeout_seconds = min(tool.mcp.timeout_seconds or bound, bound)


def _warn_refused(definition: AgentDefinition, access: NetworkAccess, f: Findings) -> None:
    named = [("the model's base_url", definition.llm.base_url)]
    named += [(f"tool {t.name!r}", t.http.endpoint) for t in definition.tools if t.http is not None]
    named += [(f"MCP server {m.server or m.url!r}", m.url) for m in definition.mcp_servers]
    named += [(f"tool {t.name!r}", t.mcp.url) for t in definition.tools if t.mcp is not None]
    for what, url in named:
        if not url or "${" in url:
            continue
        try:
            check_declared_access(access, url, what)
        except EgressRefused as refused:
            f.warning("security.network_access", f"{refused.message}: it will be refused", ["security"])
