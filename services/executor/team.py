"""Agents that use agents, inside a run: delegate tools start child runs, hand-off tools switch agents.

A delegate call (`ask_<member>`) is a child run of the member (or of the registered agent it names)
on a thread of its own, linked to its parent through its metadata (`parent_run_id`,
`parent_thread_id`, `ossa_depth`); its id derives from the parent run and the call, so a redelivered
parent finds the child it started. The child's answer is the call's output and its usage is added to
the parent's, so the parent's budget counts what its delegates spent. Depth (`OSSABUS_MAX_AGENT_DEPTH`,
3) and delegations per run (`OSSABUS_MAX_DELEGATIONS`, 16) are bounded; past a bound the model is told.

A hand-off call (`transfer_to_<member>`) makes the rest of the run the target's: its instructions,
tools and model, recorded on the run (`ossa_active` in its metadata) so any executor carrying it on
continues as the target. A run hands off at most `max_handoffs` times.

A member defined inline runs with its parent's model connection and its own prompt, model, budget and
the parent's tools it names (no team tools of its own: depth comes from registered agents).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field

from nats.aio.client import Client

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition, ToolDefinition
from ossabus.contracts.bus import ManifestRecord
from ossabus.contracts.ids import derived_id
from ossabus.contracts.openai_objects import Run, RunStep, ToolCall, ToolCallsDetails, Usage
from ossabus.contracts.tools import DispatchResult, tool_error
from ossabus.executor.offered_tools import OfferedTools
from ossabus.registry.convert_openai import to_assistant
from ossabus.registry.providers import litellm_model, litellm_provider
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.child_runs import ChildRuns, StepError
from ossabus.runtime.events import DELEGATE_DELTA, RunEvents
from ossabus.store.state import State

MEMBER = "ossa_member"  # this run is a member of its assistant's team
ACTIVE = "ossa_active"  # the run was handed over: `member:<name>` or `agent:<name>`
HANDOFFS = "ossa_handoffs"
DEPTH = "ossa_depth"
PARENT_RUN = "parent_run_id"
PARENT_THREAD = "parent_thread_id"
TEAM_KINDS = ("delegate", "handoff")


def reached_team(step: RunStep, offered: OfferedTools) -> bool:
    """Whether a tool step called a delegate or a hand-off (the run's record changed under the loop)."""
    assert isinstance(step.step_details, ToolCallsDetails)
    return any(
        (tool := offered.definition(call.function.name)) is not None and tool.kind in TEAM_KINDS
        for call in step.step_details.tool_calls
    )


def max_depth() -> int:
    return int(os.environ.get("OSSABUS_MAX_AGENT_DEPTH", "3"))


def max_delegations() -> int:
    return int(os.environ.get("OSSABUS_MAX_DELEGATIONS", "16"))


def member_definition(parent: AgentDefinition, name: str) -> AgentDefinition | None:
    member = next((m for m in parent.members if m.name == name), None)
    if member is None:
        return None
    tools = [
        t
        for t in parent.tools
        if t.kind not in TEAM_KINDS and (t.name in member.tools or t.function_name in member.tools)
    ]
    llm = parent.llm
    if member.model:
        provider = litellm_provider(llm.provider) or llm.provider
        routed = (
            member.model if "/" in member.model else litellm_model(provider, member.model) if provider else member.model
        )
        llm = llm.model_copy(update={"model": member.model, "litellm_model": routed})
    limits = parent.limits
    if member.max_tokens:
        limits = limits.model_copy(update={"max_completion_tokens": member.max_tokens})
    return parent.model_copy(
        update={
            "system_prompt": member.role or parent.system_prompt,
            "description": member.description or parent.description,
            "tools": tools,
            "llm": llm,
            "limits": limits,
            "members": [],
        }
    )


@dataclass
class Team:
    nc: Client
    state: State
    agents: AgentDirectory
    spent: dict[str, Usage] = field(default_factory=dict)  # run -> its delegates' usage, not yet added
    children: ChildRuns = field(init=False)

    def __post_init__(self) -> None:
        self.children = ChildRuns(self.nc, self.state, self.agents)

    async def effective(self, record: ManifestRecord, run: Run) -> ManifestRecord:
        """The agent this run is: its assistant's, a member of that agent's team, or whom it was handed to."""
        active = run.metadata.get(ACTIVE)
        member = run.metadata.get(MEMBER)
        if active:
            kind, _, name = active.partition(":")
            if kind == "agent":
                return await self.agents.record(name=name)
            member = name
        if member:
            definition = member_definition(record.definition, member)
            if definition is not None:
                return record.model_copy(update={"definition": definition})
        return record

    async def delegate(
        self, run: Run, definition: AgentDefinition, call: ToolCall, tool: ToolDefinition
    ) -> DispatchResult:
        depth = int(run.metadata.get(DEPTH, "0") or 0)
        if depth + 1 > max_depth():
            return DispatchResult(output=tool_error("too_deep", f"agents may delegate {max_depth()} levels deep"))
        made = [
            c.id
            for step in await self.state.list_steps(run.thread_id, run.id)
            if isinstance(step.step_details, ToolCallsDetails)
            for c in step.step_details.tool_calls
            if (t := definition.tool(c.function.name)) is not None and t.kind == "delegate"
        ]
        if call.id in made and made.index(call.id) >= max_delegations():
            return DispatchResult(
                output=tool_error("too_many_delegations", f"a run delegates at most {max_delegations()} tasks")
            )
        try:
            task = json.loads(call.function.arguments or "{}").get("task")
        except (json.JSONDecodeError, AttributeError):
            task = None
        if not isinstance(task, str) or not task.strip():
            return DispatchResult(output=tool_error("invalid_arguments", "give the task to delegate as `task`"))
        try:
            record = await self._target(run, tool)
        except StepError as error:
            return DispatchResult(output=tool_error(error.code, error.message))
        seed = f"{run.id}:{call.id}"
        thread_id, run_id = derived_id("thread", seed), derived_id("run", seed)
        metadata = {PARENT_RUN: run.id, PARENT_THREAD: run.thread_id, DEPTH: str(depth + 1)}
        if tool.member:
            metadata[MEMBER] = tool.member
        thread = await self.state.get_thread(run.thread_id)
        project = (thread.project if thread else None) or "default"
        events = RunEvents(self.nc, run.thread_id, run.id)
        link = {"call_id": call.id, "agent": tool.member or tool.target, "thread_id": thread_id, "run_id": run_id}
        await events.emit("ossabus.delegate.started", link)
        relay = asyncio.create_task(self._relay_answer(thread_id, run_id, call.id, events))
        try:
            result = await self.children.run(
                record, task, thread_id, run_id, project=project, metadata=metadata, principal="delegate"
            )
        except StepError as error:
            return DispatchResult(output=tool_error(error.code, error.message))
        finally:
            relay.cancel()
        if result.usage:
            usage = Usage.model_validate(result.usage)
            self.spent[run.id] = self.spent.get(run.id, Usage()) + usage
        await events.emit("ossabus.delegate.ended", {**link, "status": result.status})
        if result.status != "completed":
            failure = result.last_error or {
                "code": result.status,
                "message": f"the delegate's run ended {result.status}",
            }
            return DispatchResult(output=tool_error(failure.get("code") or result.status, failure.get("message") or ""))
        return DispatchResult(output=result.output_text or "")

    async def _relay_answer(self, thread_id: str, run_id: str, call_id: str, events: RunEvents) -> None:
        """The delegate's answer as it streams, on the parent's subjects (`ossabus.delegate.delta`,
        one per delta of the child): the parent's Vercel stream shows it as the call's preliminary output."""
        subscription = await self.nc.subscribe(subjects.run_event(thread_id, run_id, "thread.message.delta"))
        try:
            async for msg in subscription.messages:
                try:
                    parts = json.loads(msg.data)["data"]["delta"]["content"]
                except (ValueError, KeyError, TypeError):
                    continue
                added = "".join(p.get("text", {}).get("value", "") for p in parts if isinstance(p, dict))
                if added:
                    await events.emit(DELEGATE_DELTA, {"call_id": call_id, "delta": added})
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _target(self, run: Run, tool: ToolDefinition) -> ManifestRecord:
        if tool.target:
            return await self.children.record(tool.target)
        owner = await self.agents.record(assistant_id=run.assistant_id)
        definition = member_definition(owner.definition, tool.member or "")
        if definition is None:
            raise StepError("not_found", f"{tool.member!r} is not a member of this agent's team")
        return owner.model_copy(update={"definition": definition})

    async def handoff(
        self, run: Run, definition: AgentDefinition, tool: ToolDefinition
    ) -> tuple[DispatchResult, dict | None]:
        """The call's output, and the run's new fields when the hand-off happens."""
        owner = await self.agents.record(assistant_id=run.assistant_id)
        made = int(run.metadata.get(HANDOFFS, "0") or 0)
        if made >= owner.definition.max_handoffs:
            return DispatchResult(
                output=tool_error("too_many_handoffs", f"a run hands off at most {owner.definition.max_handoffs} times")
            ), None
        try:
            if tool.target:
                target = await self.children.record(tool.target)
                active, name = f"agent:{tool.target}", tool.target
            else:
                target = await self._target(run, tool)
                active, name = f"member:{tool.member}", tool.member or ""
        except (StepError, BusFailure) as error:
            message = error.message if isinstance(error, StepError) else error.error.message
            return DispatchResult(output=tool_error("not_found", message)), None
        assistant = to_assistant(target.definition, created_at=target.created_at)
        metadata = {**run.metadata, ACTIVE: active, HANDOFFS: str(made + 1)}
        fields = {
            "instructions": assistant.instructions or "",
            "tools": assistant.tools,
            "model": assistant.model,
            "metadata": metadata,
        }
        return DispatchResult(output=json.dumps({"handed_over_to": name})), fields
