"""Agents that use agents: `spec.subagents`, `spec.team` and `spec.handoffs` become tools.

- A subagent, or a member of a `lead-teammate`, `hierarchical` or `peer-to-peer` team, is reached by a
  delegate tool, `ask_<name>`: the model gives it a task and gets its answer (a child run).
- A member of a `swarm` team, and every `spec.handoffs` entry, is reached by a hand-off tool,
  `transfer_to_<name>`: the run goes on as that agent (its prompt, model and tools), on the same
  conversation, up to `handoff_config.max_handoffs` times.

A member with its own `role` (or v0.2.2 `prompt`) is defined inline; one with neither names a
registered agent. A hand-off's `target_agent` names a member, or else a registered agent.
"""

from __future__ import annotations

import re
from typing import Any

from ossabus.contracts.agent import TeamMember, ToolDefinition
from ossabus.registry.validation import Findings

DELEGATE_PARAMETERS = {
    "type": "object",
    "properties": {
        "task": {"type": "string", "description": "What to ask, with everything the agent needs to know to answer."}
    },
    "required": ["task"],
}
HANDOFF_PARAMETERS = {
    "type": "object",
    "properties": {"reason": {"type": "string", "description": "Why the conversation moves on to this agent."}},
}
DELEGATING_TEAMS = ("lead-teammate", "hierarchical", "peer-to-peer")


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _function_name(prefix: str, name: str) -> str:
    return (prefix + re.sub(r"[^A-Za-z0-9_]", "_", name))[:64]


def _member(raw: dict) -> TeamMember | None:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        return None
    role = raw.get("role") or raw.get("prompt") or raw.get("instructions")
    tokens = raw.get("maxTokenBudget") or raw.get("max_tokens")
    model = raw.get("model")
    return TeamMember(
        name=name,
        role=role if isinstance(role, str) and role.strip() else None,
        description=raw.get("description") if isinstance(raw.get("description"), str) else None,
        model=model if isinstance(model, str) and model != "inherit" else None,
        tools=[t for t in raw.get("tools") or [] if isinstance(t, str)],
        max_tokens=tokens if isinstance(tokens, int) and tokens > 0 else None,
    )


def team_of(spec: dict, agent_name: str, f: Findings) -> tuple[list[TeamMember], list[ToolDefinition], int]:
    """(members, the tools that reach them or other agents, the hand-off bound)."""
    members: list[TeamMember] = []
    tools: list[ToolDefinition] = []

    def reach(member: TeamMember, kind: str, path: list[str | int]) -> None:
        inline = member.role is not None
        if not inline and member.name == agent_name:
            return  # the lead is this agent itself
        prefix = "ask_" if kind == "delegate" else "transfer_to_"
        what = member.description or (member.role or "").strip().split("\n")[0][:200] or f"the {member.name} agent"
        verb = "Ask" if kind == "delegate" else "Hand the conversation over to"
        tools.append(
            ToolDefinition(
                name=_function_name(prefix, member.name),
                function_name=_function_name(prefix, member.name),
                kind=kind,  # type: ignore[arg-type]
                description=f"{verb} {member.name}: {what}",
                parameters=DELEGATE_PARAMETERS if kind == "delegate" else HANDOFF_PARAMETERS,
                member=member.name if inline else None,
                target=None if inline else member.name,
                sources=[f"$.{'.'.join(str(p) for p in path)}"],
            )
        )

    for i, raw in enumerate(spec.get("subagents") or []):
        member = _member(_dict(raw))
        if member is None:
            f.warning("team.member_unnamed", "a subagent without a name cannot be reached", ["spec", "subagents", i])
            continue
        members.append(member)
        reach(member, "delegate", ["spec", "subagents", i])
    team = _dict(spec.get("team"))
    model = team.get("model")
    for i, raw in enumerate(team.get("members") or []):
        member = _member(_dict(raw))
        if member is None:
            continue
        members.append(member)
        if member.name == team.get("lead"):
            continue  # the lead is the one that delegates or hands over
        reach(member, "handoff" if model == "swarm" else "delegate", ["spec", "team", "members", i])
    if team and model not in (*DELEGATING_TEAMS, "swarm"):
        f.warning("team.model", f"team model {model!r} is run as lead-teammate", ["spec", "team", "model"])
    names = {m.name for m in members}
    for i, raw in enumerate(spec.get("handoffs") or []):
        raw = _dict(raw)
        target = raw.get("target_agent") or raw.get("target") or raw.get("agent")
        if not isinstance(target, str):
            f.warning("team.handoff_target", "a hand-off without target_agent cannot happen", ["spec", "handoffs", i])
            continue
        named = raw.get("function") or raw.get("name")
        function = _function_name("", named) if isinstance(named, str) else _function_name("transfer_to_", target)
        tools.append(
            ToolDefinition(
                name=function,
                function_name=function,
                kind="handoff",
                description=raw.get("description") or f"Hand the conversation over to {target}",
                parameters=HANDOFF_PARAMETERS,
                member=target if target in names else None,
                target=None if target in names else target,
                sources=[f"$.spec.handoffs[{i}]"],
            )
        )
    bound = _dict(spec.get("handoff_config")).get("max_handoffs")
    return members, _unique(tools, f), bound if isinstance(bound, int) and 1 <= bound <= 100 else 10


def _unique(tools: list[ToolDefinition], f: Findings) -> list[ToolDefinition]:
    seen: dict[str, ToolDefinition] = {}
    for tool in tools:
        if tool.function_name in seen:
            f.warning(
                "team.duplicate", f"two members are reached by {tool.function_name!r}; the first is kept", ["spec"]
            )
            continue
        seen[tool.function_name] = tool
    return list(seen.values())
