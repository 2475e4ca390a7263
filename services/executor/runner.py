"""Carrying one run from `queued` to a terminal state (or to `requires_action`), publishing every step.

A run's truth is its record and its steps in KV, never this process's memory: a run that comes back
(after `submit_tool_outputs`, or redelivered because an executor died) continues from what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from opentelemetry import trace

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition, ToolDefinition
from ossabus.contracts.bus import RunRequest
from ossabus.contracts.ids import new_id
from ossabus.contracts.openai_objects import FunctionCall as StepFunction
from ossabus.contracts.openai_objects import (
    IncompleteDetails,
    LastError,
    Message,
    MessageContentImageFile,
    MessageContentText,
    MessageCreationDetails,
    RequiredAction,
    RequiredActionFunctionCall,
    RequiredActionToolCall,
    Run,
    RunStep,
    SubmitToolApprovals,
    SubmitToolOutputs,
    TextContent,
    ToolApproval,
    ToolCall,
    ToolCallsDetails,
    Usage,
)
from ossabus.contracts.tools import DispatchRequest, DispatchResult, tool_error
from ossabus.executor import code_interpreter, file_search, llm, prompt, team
from ossabus.executor import usage as usage_reports
from ossabus.executor.offered_tools import McpListings, OfferedTools, offered_tools
from ossabus.executor.team import Team
from ossabus.runtime import genai, tracing
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.events import REASONING_DELTA, RunEvents
from ossabus.runtime.tool_directory import ToolDirectory
from ossabus.store import kv as kvs
from ossabus.store.runs import plain_model_record
from ossabus.store.slots import Slots
from ossabus.store.state import State, carrying
from ossabus.store.turns import TurnIds, turn_ids

log = logging.getLogger(__name__)
DEFAULT_MAX_STEPS = 25
DEFAULT_TOOL_TIMEOUT_S = 30.0
SLOT_POLL_S = 0.2  # how often a run waiting for a concurrency slot looks again
# Well inside the events stream's duplicate window (provision.Topology.dedupe_window_s, 600 s).
ANNOUNCE_AGAIN_WITHIN_S = 300


def now() -> int:
    return int(time.time())


@dataclass
class TurnResult:
    ids: TurnIds
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    message: Message | None = None
    message_step: RunStep | None = None
    tool_step: RunStep | None = None
    reasoning: list[str] = field(default_factory=list)

    @property
    def reasoning_id(self) -> str:
        return "rs_" + self.ids.message_step_id.removeprefix("step_")

    def keep_reasoning(self, step: RunStep) -> None:
        """The turn's reasoning goes with the first step the turn made."""
        if self.reasoning:
            step.reasoning, step.reasoning_id = "".join(self.reasoning), self.reasoning_id
            self.reasoning = []


def cut_off(reason: str):
    """A message change: an unfinished message ends `incomplete` for `reason`."""

    def change(message: Message) -> Message | None:
        if message.status != "in_progress":
            return None
        return message.model_copy(
            update={
                "status": "incomplete",
                "incomplete_at": now(),
                "incomplete_details": IncompleteDetails(reason=reason),
            }
        )

    return change


def log_ending(run: Run) -> None:
    """One line per ended run; one that did not complete says why, as its `last_error` does (provider
    errors reach it already stripped of anything but the provider's own message)."""
    if run.status == "completed":
        log.info("run %s completed", run.id)
    elif run.last_error is not None:
        log.warning("run %s %s: %s: %s", run.id, run.status, run.last_error.code, run.last_error.message)
    elif run.incomplete_details is not None:
        log.warning("run %s incomplete: %s", run.id, run.incomplete_details.reason)
    elif run.status == "expired":
        log.warning("run %s expired: it passed its expires_at (%s)", run.id, run.expires_at)
    else:
        log.info("run %s %s", run.id, run.status)


class RunCancelled(Exception):
    """Raised inside a run when a cancel request for it arrives."""


class RunEnded(Exception):
    """The run is terminal already (another carrier ended it): this carrier writes nothing more."""


class Runner:
    """Executes runs; one instance per executor process."""

    def __init__(self, nc: Client, state: State, agents: AgentDirectory, tools: ToolDirectory | None = None):
        self.nc, self.state, self.agents = nc, state, agents
        self.tools = tools or ToolDirectory()
        self.mcp_listings = McpListings(agents.bus)
        self.slots = Slots(state.runs_kv)
        self.slotted: set[str] = set()  # runs this process holds a concurrency slot for
        self.team = Team(nc, state, agents)
        self._sandbox_places = None  # ossa_sandbox_sessions, opened on the first code_interpreter call

    # --- entry ---------------------------------------------------------------------------------------

    async def carry(self, request: RunRequest) -> None:
        """Move the run forward as far as it can go now. Returns when it is terminal or parked.

        Raises `LeaseLost` when another carrier took the run over: this one then stops at once, having
        written nothing after the fence said so.
        """
        try:
            with carrying(request.thread_id, request.run_id):
                await self._carry(request)
        except RunEnded:
            # Another carrier ended it, or our own ending landed although its acknowledgement was lost
            # (NATS restarting, a cluster electing a leader): either way its ending must be announced.
            run = await self.state.get_run(request.thread_id, request.run_id)
            if run is not None:
                await self.announce_ending(run)

    async def announce_ending(self, run: Run) -> None:
        """Publish a terminal run's ending (again). JetStream drops a second copy within the events
        stream's duplicate window (the ending's message id is the run's), so whichever carrier
        gets here, the ending is published exactly once, even when the one that wrote it died first."""
        ended_at = run.completed_at or run.failed_at or run.cancelled_at or run.expires_at or run.started_at
        if run.terminal and ended_at is not None and time.time() - ended_at < ANNOUNCE_AGAIN_WITHIN_S:
            await RunEvents(self.nc, run.thread_id, run.id).emit(f"thread.run.{run.status}", run)

    async def _carry(self, request: RunRequest) -> None:
        run = await self.state.get_run(request.thread_id, request.run_id)
        if run is not None and run.terminal:
            await self.announce_ending(run)  # the carrier that ended it may have died before saying so
            return
        if run is None or run.status == "requires_action":
            return  # deleted, or waiting for the client: nothing to do
        events = RunEvents(self.nc, run.thread_id, run.id)
        if run.status == "cancelling":
            await self.finish(run, events, "cancelled")
            return
        if run.expires_at is not None and now() >= run.expires_at:
            await self.finish(run, events, "expired")
            return
        try:
            record = (
                plain_model_record(run.direct_model)
                if run.direct_model
                else await self.agents.record(assistant_id=run.assistant_id, min_version=request.agent_version)
            )
            if not run.direct_model:
                record = await self.team.effective(record, run)
        except BusFailure as exc:
            await self.finish(run, events, "failed", error=LastError(code="server_error", message=exc.error.message))
            return
        if run.request_tools:  # MCP servers the request named (Responses `tools: [{type: mcp}]`)
            added = [ToolDefinition.model_validate(t) for t in run.request_tools]
            record = record.model_copy(
                update={
                    "definition": record.definition.model_copy(update={"tools": [*record.definition.tools, *added]})
                }
            )
        if not await self.take_slot(run, record.definition):
            return  # ended (cancelled, expired) while it waited for a slot
        traced = record.definition.observability.tracing
        span = genai.agent_span(
            record.name, record.definition.version, run.thread_id, run.id, run.model or None, traced
        )
        with trace.use_span(span, end_on_exit=True):
            run = await self.transition(run, "in_progress", started_at=run.started_at or now())
            await events.emit("thread.run.in_progress", run)
            deadline = run.expires_at or now() + 3600
            try:
                async with asyncio.timeout(max(0.0, deadline - time.time())) as limit:
                    await self.loop(run, record.definition, request, events)
            except TimeoutError:
                if not limit.expired() and time.time() < deadline:
                    raise  # a bus or store operation timed out (NATS restarting): carry the run again later
                await self.finish(await self.reload(run), events, "expired")
            except RunCancelled:
                await self.finish(await self.reload(run), events, "cancelled")
            except llm.LLMError as exc:
                genai.fail(span, None, exc.code)
                await self.finish(
                    await self.reload(run), events, "failed", error=LastError(code=exc.code, message=exc.message)
                )

    async def take_slot(self, run: Run, definition: AgentDefinition) -> bool:
        """Wait, queued, for one of the agent's `maxConcurrentRequests` slots (shared by every executor).
        False when the run ended meanwhile."""
        limit = definition.limits.max_concurrent_requests
        if not limit:
            return True
        until = run.expires_at or time.time() + 3600
        while not await self.slots.acquire(run.assistant_id, run.id, limit, until):
            await asyncio.sleep(SLOT_POLL_S)
            run = await self.reload(run)
            if run.terminal:
                return False
            if run.status == "cancelling":
                await self.finish(run, RunEvents(self.nc, run.thread_id, run.id), "cancelled")
                return False
            if run.expires_at is not None and now() >= run.expires_at:
                await self.finish(run, RunEvents(self.nc, run.thread_id, run.id), "expired")
                return False
        self.slotted.add(run.id)
        return True

    async def give_slot_back(self, run: Run) -> None:
        if run.id in self.slotted:
            self.slotted.discard(run.id)
            with contextlib.suppress(Exception):  # it lapses with the run's deadline anyway
                await self.slots.release(run.assistant_id, run.id)

    async def cancelled(self, request: RunRequest) -> None:
        """The run's task was cancelled on request: record it."""
        run = await self.state.get_run(request.thread_id, request.run_id)
        if run is not None and not run.terminal:
            with contextlib.suppress(RunEnded):
                await self.finish(run, RunEvents(self.nc, run.thread_id, run.id), "cancelled")

    async def fail(self, request: RunRequest, message: str) -> None:
        """Give up on a run that could not be carried (e.g. after its last delivery)."""
        run = await self.state.get_run(request.thread_id, request.run_id)
        if run is not None and not run.terminal:
            events = RunEvents(self.nc, run.thread_id, run.id)
            with contextlib.suppress(RunEnded):
                await self.finish(run, events, "failed", error=LastError(code="server_error", message=message))

    # --- the loop ------------------------------------------------------------------------------------

    async def loop(self, run: Run, definition: AgentDefinition, request: RunRequest, events: RunEvents) -> None:
        model = llm.resolve_model(definition, request.model or run.direct_model or None)
        max_steps = definition.limits.max_steps or DEFAULT_MAX_STEPS
        if await self.pick_up(run, definition, events):
            return
        while True:
            steps = await self.state.list_steps(run.thread_id, run.id)
            if sum(1 for s in steps if s.type == "tool_calls") >= max_steps:
                await self.finish(
                    run,
                    events,
                    "failed",
                    error=LastError(
                        code="server_error", message=f"the run reached its limit of {max_steps} tool-call steps"
                    ),
                )
                return
            usage = run.usage or Usage()
            budget = None
            if run.max_completion_tokens is not None:
                budget = run.max_completion_tokens - usage.completion_tokens
                if budget <= 0:
                    await self.finish(
                        run, events, "incomplete", incomplete=IncompleteDetails(reason="max_completion_tokens")
                    )
                    return
            messages = await self.build_messages(run, steps, model)
            if messages is None:
                await self.finish(run, events, "incomplete", incomplete=IncompleteDetails(reason="max_prompt_tokens"))
                return
            offered = await offered_tools(run, definition, self.mcp_listings)
            call = llm.LLMRequest(
                model=model,
                messages=messages,
                params=self.params(run, definition, budget, bool(offered.by_name)),
                tools=offered.for_model() or None,
                audit=definition.security.audit,
                client=definition.llm.client,
            )
            number = 1 + sum(1 for s in steps if s.type == "tool_calls")
            ids = await turn_ids(self.state.runs_kv, run.thread_id, run.id, number)
            turn = await self.turn(run, call, definition, events, ids)
            run = await self.transition(run, None, usage=usage + turn.usage)
            await usage_reports.report(
                self.nc,
                record_id=f"{run.id}.{new_id('usage')}",  # one per model call: a turn asked twice was paid twice
                agent=definition.name,
                model=model,
                kind="run",
                principal=request.principal,
                project=request.project,
                usage=turn.usage.model_dump(),
                run_id=run.id,
                thread_id=run.thread_id,
            )
            cut_by_budget = turn.finish_reason == "length" and budget is not None
            self.trace_step(turn.message_step, definition)
            if turn.tool_step is not None and not cut_by_budget:
                active = run.metadata.get(team.ACTIVE)
                if await self.settle_tool_calls(run, definition, offered, turn.tool_step, events):
                    return
                self.trace_step(turn.tool_step, definition)
                if not team.reached_team(turn.tool_step, offered):
                    continue  # every call was answered here: the model goes on with their outputs
                run = await self.reload(run)  # delegates' usage added, or handed over to another agent
                if run.metadata.get(team.ACTIVE) != active:
                    owner = await self.agents.record(assistant_id=run.assistant_id)
                    definition = (await self.team.effective(owner, run)).definition
                    model = llm.resolve_model(definition, request.model or None)
                continue  # every call was answered here: the model goes on with their outputs
            if cut_by_budget:
                await self.finish(
                    run, events, "incomplete", incomplete=IncompleteDetails(reason="max_completion_tokens")
                )
                return
            await self.finish(run, events, "completed")
            return

    def trace_step(self, step: RunStep | None, definition: AgentDefinition) -> None:
        observability = definition.observability
        if step is not None and observability.tracing and observability.trace_run_steps and tracing.enabled():
            genai.step_span(step, definition.name)

    async def build_messages(self, run: Run, steps: list[RunStep], model: str):
        thread_messages = await self.state.list_messages(run.thread_id)
        by_id = {m.id: m for m in thread_messages}
        system = prompt.system_message(run)
        try:
            return prompt.truncate(
                system, prompt.history(thread_messages, run), prompt.run_turns(steps, by_id), run, model
            )
        except prompt.PromptTooLong:
            return None

    def params(self, run: Run, definition: AgentDefinition, budget: int | None, has_tools: bool) -> dict[str, Any]:
        params = llm.connection_params(definition)
        settings = definition.llm
        temperature = run.temperature if run.temperature is not None else settings.temperature
        top_p = run.top_p if run.top_p is not None else settings.top_p
        max_tokens = settings.max_tokens
        for bound in (budget, definition.limits.max_tokens_per_request):  # constraints.cost.maxTokensPerRequest
            if bound is not None:
                max_tokens = min(max_tokens, bound) if max_tokens else bound
        if definition.limits.max_latency_seconds:  # constraints.performance.maxLatencySeconds, per model call
            params["timeout"] = definition.limits.max_latency_seconds
        for key, value in (
            ("temperature", temperature),
            ("top_p", top_p),
            ("max_tokens", max_tokens),
            ("stop", settings.stop),
            ("seed", settings.seed),
        ):
            if value is not None:
                params[key] = value
        if run.response_format not in (None, "auto"):
            params["response_format"] = run.response_format
        if has_tools:
            if run.tool_choice not in (None, "auto"):
                params["tool_choice"] = run.tool_choice
            params["parallel_tool_calls"] = run.parallel_tool_calls
        model = self.model_of(run, definition)
        params.update(llm.supported_extras(model, run.provider_params))
        return llm.wire_params(model, params)

    @staticmethod
    def model_of(run: Run, definition: AgentDefinition) -> str:
        return llm.resolve_model(definition, run.direct_model or None)

    # --- one model turn --------------------------------------------------------------------------------

    async def turn(
        self, run: Run, call: llm.LLMRequest, definition: AgentDefinition, events: RunEvents, ids: TurnIds
    ) -> TurnResult:
        result = TurnResult(ids=ids)
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        traced = definition.observability.tracing
        span = genai.chat_span(
            call.model, call.params, run.thread_id, definition.name, call.messages, traced, audit=call.audit
        )
        response_model, failure = None, None
        try:
            async for chunk in llm.stream(call, definition.limits.retry):
                response_model = response_model or chunk.model
                await self.take_chunk(run, chunk, result, text, calls, events)
        except Exception as exc:
            failure = exc
            raise
        finally:
            genai.end_chat_span(
                span,
                response_model=response_model,
                finish_reason=result.finish_reason,
                usage=result.usage.model_dump(),
                output="".join(text),
                error=failure,
                audit=call.audit,
            )
        if result.message is not None and result.message_step is not None:
            result.keep_reasoning(result.message_step)
            result.message = await self.close_message(
                run, result.message, result.message_step, "".join(text), result.finish_reason, result.usage, events
            )
        if result.tool_step is not None:
            result.tool_step.step_details = ToolCallsDetails(
                tool_calls=[
                    ToolCall(
                        id=c["id"] or new_id("call"),
                        type=self.call_type(run, c["name"]),
                        function=StepFunction(name=c["name"], arguments=c["arguments"]),
                    )
                    for _, c in sorted(calls.items())
                ]
            )
            if result.message is None:
                result.tool_step.usage = result.usage
            result.keep_reasoning(result.tool_step)
            await self.state.put_step(result.tool_step)
        return result

    async def take_chunk(
        self,
        run: Run,
        chunk: llm.Chunk,
        result: TurnResult,
        text: list[str],
        calls: dict[int, dict[str, str]],
        events: RunEvents,
    ) -> None:
        """One streamed chunk: text goes to the turn's message, tool-call pieces to its tool step."""
        if chunk.reasoning:
            result.reasoning.append(chunk.reasoning)
            await events.emit(REASONING_DELTA, {"id": result.reasoning_id, "delta": chunk.reasoning})
        if chunk.text:
            if result.message is None:
                result.message_step, result.message = await self.open_message(run, events, result.ids)
            text.append(chunk.text)
            await events.emit(
                "thread.message.delta",
                {
                    "id": result.message.id,
                    "object": "thread.message.delta",
                    "delta": {
                        "content": [{"index": 0, "type": "text", "text": {"value": chunk.text, "annotations": []}}]
                    },
                },
            )
        for delta in chunk.tool_calls:
            if result.tool_step is None:
                result.tool_step = await self.open_step(
                    run, ToolCallsDetails(tool_calls=[]), events, result.ids.tool_step_id
                )
            slot = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] = slot["id"] or delta.id or ""
            slot["name"] = slot["name"] or delta.name or ""
            slot["arguments"] += delta.arguments
            kind = self.call_type(run, slot["name"])
            if kind == "file_search":
                if not delta.name:
                    continue  # OpenAI's streams show a file_search call once, without its query
                entry: dict[str, Any] = {"index": delta.index, "type": "file_search", "file_search": {}}
            elif kind == "code_interpreter":  # the code streams as it is written, as OpenAI's input deltas
                code = code_interpreter.partial_code(slot["arguments"])
                added, slot["shown"] = code[len(slot.get("shown", "")) :], code
                if not added and not delta.name:
                    continue
                entry = {"index": delta.index, "type": "code_interpreter", "code_interpreter": {"input": added}}
                if delta.name:
                    entry["code_interpreter"]["outputs"] = []
            else:
                fn: dict[str, Any] = {"arguments": delta.arguments, "output": None}
                if delta.name:
                    fn["name"] = delta.name
                entry = {"index": delta.index, "type": "function", "function": fn}
            if delta.id:
                entry["id"] = delta.id
            await events.emit(
                "thread.run.step.delta",
                {
                    "id": result.tool_step.id,
                    "object": "thread.run.step.delta",
                    "delta": {"step_details": {"type": "tool_calls", "tool_calls": [entry]}},
                },
            )
        if chunk.finish_reason:
            result.finish_reason = chunk.finish_reason
        if chunk.usage:
            result.usage = Usage(**chunk.usage)

    @staticmethod
    def call_type(run: Run, name: str) -> str:
        if name == file_search.NAME and file_search.offered(run):
            return "file_search"
        if name == code_interpreter.NAME and code_interpreter.offered(run):
            return "code_interpreter"
        return "function"

    async def open_message(self, run: Run, events: RunEvents, ids: TurnIds) -> tuple[RunStep, Message]:
        message = Message(
            id=ids.message_id,
            created_at=now(),
            thread_id=run.thread_id,
            status="in_progress",
            role="assistant",
            assistant_id=run.assistant_id,
            run_id=run.id,
        )
        details = MessageCreationDetails(message_creation={"message_id": message.id})
        step = await self.open_step(run, details, events, ids.message_step_id)
        await self.state.put_message(message)
        await events.emit("thread.message.created", message)
        await events.emit("thread.message.in_progress", message)
        return step, message

    async def close_message(
        self, run: Run, message: Message, step: RunStep, text: str, finish: str | None, usage: Usage, events: RunEvents
    ) -> Message:
        annotations = []
        if file_search.offered(run) and "】" in text:
            annotations = file_search.citations(text, await self.state.list_steps(run.thread_id, run.id))
        content: list = []
        if code_interpreter.offered(run):
            made = code_interpreter.files_since_last_message(
                await self.state.list_steps(run.thread_id, run.id), step.id
            )
            content += [MessageContentImageFile(image_file={"file_id": f["file_id"]}) for f in made if f.get("image")]
            annotations += code_interpreter.file_paths(text, made)
        message.content = [*content, MessageContentText(text=TextContent(value=text, annotations=annotations))]
        if finish == "length" and run.max_completion_tokens is not None:
            message.status, message.incomplete_at = "incomplete", now()
            message.incomplete_details = IncompleteDetails(reason="max_tokens")
        else:
            message.status, message.completed_at = "completed", now()
        await self.state.put_message(message)
        await events.emit(f"thread.message.{message.status}", message)
        step.status, step.completed_at, step.usage = "completed", now(), usage
        await self.state.put_step(step)
        await events.emit("thread.run.step.completed", step)
        return message

    async def open_step(
        self, run: Run, details: MessageCreationDetails | ToolCallsDetails, events: RunEvents, step_id: str
    ) -> RunStep:
        """A new step of the run, stored and announced (created, then in_progress)."""
        step = RunStep(
            id=step_id,
            created_at=now(),
            assistant_id=run.assistant_id,
            thread_id=run.thread_id,
            run_id=run.id,
            type=details.type,
            step_details=details,
        )
        await self.state.put_step(step)
        await events.emit("thread.run.step.created", step)
        await events.emit("thread.run.step.in_progress", step)
        return step

    # --- endings ---------------------------------------------------------------------------------------

    async def require_action(
        self, run: Run, pending: list[ToolCall], events: RunEvents, *, approval: bool = False
    ) -> None:
        calls = [
            RequiredActionToolCall(
                id=c.id, function=RequiredActionFunctionCall(name=c.function.name, arguments=c.function.arguments)
            )
            for c in pending
        ]
        if approval:
            action = RequiredAction(
                type="submit_tool_approvals", submit_tool_approvals=SubmitToolApprovals(tool_calls=calls)
            )
        else:
            action = RequiredAction(submit_tool_outputs=SubmitToolOutputs(tool_calls=calls))
        run = await self.transition(run, "requires_action", required_action=action)
        await self.give_slot_back(run)  # waiting for a person or a client uses no model
        await events.emit("thread.run.requires_action", run)

    async def settle_tool_calls(
        self, run: Run, definition: AgentDefinition, offered: OfferedTools, step: RunStep, events: RunEvents
    ) -> bool:
        """Answer every call of the step that can be answered here, all at once: a worker, an HTTP
        endpoint or an MCP server serves the tool (after a person's approval when the agent's policy
        asks for it), or the model named a tool the run does not have. Returns True when the run
        parks in `requires_action`: for approvals first, then for the outputs only the client has."""
        assert isinstance(step.step_details, ToolCallsDetails)
        before = {c.id for c in step.step_details.tool_calls if c.function.output is not None}
        jobs, awaiting, for_client = [], [], []
        for call in step.step_details.tool_calls:
            if call.function.output is not None:
                continue  # answered before this executor resumed the step
            name = call.function.name
            if name not in offered:
                call.function.output = tool_error("unknown_tool", f"no tool named {name!r}")
                continue
            bound = offered.definition(name)
            server_side = bound is not None and (
                bound.http is not None or bound.kind in ("mcp", "file_search", "code_interpreter", *team.TEAM_KINDS)
            )
            if not (self.tools.serves(name) or server_side):
                for_client.append(call)
                continue
            tool = bound or ToolDefinition(name=name, function_name=name, parameters_declared=False)
            if definition.needs_approval(tool) or call.approval is not None:
                call.approval = call.approval or ToolApproval()
                if call.approval.status == "pending":
                    awaiting.append(call)
                    continue
                if call.approval.status == "denied":
                    reason = f": {call.approval.reason}" if call.approval.reason else ""
                    call.function.output = tool_error("denied", f"a person declined this call{reason}")
                    continue
            jobs.append((call, tool))
        jobs = await self.within_max_tool_calls(run, jobs)
        handoffs = [(call, tool) for call, tool in jobs if tool.kind == "handoff"]
        jobs = [(call, tool) for call, tool in jobs if tool.kind != "handoff"]
        results = await asyncio.gather(*(self.run_tool(run, definition, call, tool) for call, tool in jobs))
        for (call, _), result in zip(jobs, results, strict=True):
            call.function.output = result.output
        handed_over = None
        for call, tool in handoffs:
            if handed_over is not None:
                call.function.output = tool_error("one_handoff", "the run was handed over by another call of this turn")
                continue
            result, handed_over = await self.team.handoff(run, definition, tool)
            call.function.output = result.output
        await self.announce_outputs(step, before, events)
        done = not awaiting and not for_client
        if done:
            step.status, step.completed_at = "completed", now()
        await self.state.put_step(step)
        spent = self.team.spent.pop(run.id, None)
        if spent is not None or handed_over is not None:
            latest = await self.reload(run)
            usage = (latest.usage or Usage()) + spent if spent is not None else latest.usage
            await self.transition(latest, None, usage=usage, **(handed_over or {}))
        if done:
            await events.emit("thread.run.step.completed", step)
            return False
        if awaiting:
            await self.require_action(run, awaiting, events, approval=True)
        else:
            await self.require_action(run, for_client, events)
        return True

    async def within_max_tool_calls(self, run: Run, jobs: list) -> list:
        """Responses' `max_tool_calls`: calls past the bound are not made; the model is told so."""
        if run.max_tool_calls is None or not jobs:
            return jobs
        made = 0
        for step in await self.state.list_steps(run.thread_id, run.id):
            if isinstance(step.step_details, ToolCallsDetails):
                made += sum(
                    1
                    for c in step.step_details.tool_calls
                    if c.function.output is not None and not c.client and '"max_tool_calls"' not in c.function.output
                )
        room = max(0, run.max_tool_calls - made)
        for call, _ in jobs[room:]:
            call.function.output = tool_error(
                "max_tool_calls", f"not made: this response may make {run.max_tool_calls} tool calls"
            )
        return jobs[:room]

    async def announce_outputs(self, step: RunStep, before: set[str], events: RunEvents) -> None:
        """A step delta with the outputs answered now, so streams show tool progress."""
        assert isinstance(step.step_details, ToolCallsDetails)
        answered = [
            (i, c)
            for i, c in enumerate(step.step_details.tool_calls)
            if c.function.output is not None and c.id not in before
        ]
        if not answered:
            return
        await events.emit(
            "thread.run.step.delta",
            {
                "id": step.id,
                "object": "thread.run.step.delta",
                "delta": {
                    "step_details": {
                        "type": "tool_calls",
                        "tool_calls": [self.output_delta(i, c) for i, c in answered],
                    }
                },
            },
        )

    @staticmethod
    def output_delta(index: int, call: ToolCall) -> dict[str, Any]:
        if call.type == "file_search":
            return {"index": index, "id": call.id, "type": "file_search", "file_search": call.file_search or {}}
        if call.type == "code_interpreter":
            outputs = (call.code_interpreter or {}).get("outputs", [])
            return {"index": index, "id": call.id, "type": "code_interpreter", "code_interpreter": {"outputs": outputs}}
        return {"index": index, "id": call.id, "type": "function", "function": {"output": call.function.output}}

    async def pick_up(self, run: Run, definition: AgentDefinition, events: RunEvents) -> bool:
        """Continue from what earlier attempts stored (one listing of the run's steps). A turn cut off
        mid-stream is dropped and redone under the same ids (`store.turns`), so no assistant message
        appears twice; an answer that was stored whole is kept even if its step was not closed; a step
        whose calls the model already made (approved, or left by a carrier that died) is finished; a
        final answer that was stored but never ended the run ends it now, instead of asking the model
        for a second one. True when the run is parked or ended."""
        kept: list[RunStep] = []
        for step in await self.state.list_steps(run.thread_id, run.id):
            details = step.step_details
            if step.status == "in_progress" and isinstance(details, MessageCreationDetails):
                message_id = details.message_creation["message_id"]
                message = await self.state.get_message(run.thread_id, message_id)
                if message is not None and message.status in ("completed", "incomplete"):
                    step.status, step.completed_at = "completed", message.completed_at or now()
                    kept.append(await self.state.put_step(step))
                    continue
                await self.state.delete_message(run.thread_id, message_id)
                await self.state.delete_step(run.thread_id, run.id, step.id)
            elif step.status == "in_progress" and not details.tool_calls:  # the calls never arrived whole
                await self.state.delete_step(run.thread_id, run.id, step.id)
            else:
                kept.append(step)
        pending = next((s for s in reversed(kept) if s.status == "in_progress"), None)
        if pending is not None:
            offered = await offered_tools(run, definition, self.mcp_listings)
            return await self.settle_tool_calls(run, definition, offered, pending, events)
        last = kept[-1] if kept else None
        if last is None or last.status != "completed" or not isinstance(last.step_details, MessageCreationDetails):
            return False
        message = await self.state.get_message(run.thread_id, last.step_details.message_creation["message_id"])
        if message is None or message.status not in ("completed", "incomplete"):
            return False
        if message.status == "incomplete":
            await self.finish(run, events, "incomplete", incomplete=IncompleteDetails(reason="max_completion_tokens"))
        else:
            await self.finish(run, events, "completed")
        return True

    async def run_tool(
        self, run: Run, definition: AgentDefinition, call: ToolCall, tool: ToolDefinition
    ) -> DispatchResult:
        if tool.kind == "code_interpreter":
            return await self.interpret(run, definition, call)
        if tool.kind == "delegate":
            return await self.team.delegate(run, definition, call, tool)
        if tool.kind != "file_search":
            return await self.dispatch(run, call, tool)
        steps = await self.state.list_steps(run.thread_id, run.id)
        made = [c.id for c in file_search.searches(steps)]
        number = made.index(call.id) if call.id in made else len(made)
        thread = await self.state.get_thread(run.thread_id)
        scope = file_search.scope_of(run, definition, thread)
        project = (thread.project if thread else None) or "default"
        await file_search.search(self.agents.bus, call, number, scope, project)
        return DispatchResult(output=call.function.output or "")

    async def interpret(self, run: Run, definition: AgentDefinition, call: ToolCall) -> DispatchResult:
        """The call's code, run in the thread's sandbox session; the call shows its input and outputs."""
        thread = await self.state.get_thread(run.thread_id)
        messages = await self.state.list_messages(run.thread_id)
        project = (thread.project if thread else None) or "default"
        result = await code_interpreter.execute(
            self.agents.bus,
            await self.sandbox_places(),
            call,
            session=run.thread_id,
            project=project,
            file_ids=code_interpreter.files_of(run, definition, thread, messages),
            limits=code_interpreter.limits_of(run, definition),
        )
        call.type = "code_interpreter"
        code = code_interpreter.code_of(call)
        if isinstance(result, str):  # a tool error: the model reads it, the step shows it as logs
            call.code_interpreter = {"input": code, "outputs": [{"type": "logs", "logs": result}]}
            return DispatchResult(output=result)
        call.code_interpreter = {
            "input": code,
            "outputs": code_interpreter.step_outputs(result),
            "files": [f.model_dump(mode="json") for f in result.files],
        }
        return DispatchResult(output=code_interpreter.model_output(result))

    async def sandbox_places(self):
        if self._sandbox_places is None:
            js = self.nc.jetstream()
            self._sandbox_places = await kvs.leader_reads(js, await js.key_value(subjects.SANDBOX_SESSIONS_BUCKET))
        return self._sandbox_places

    async def dispatch(self, run: Run, call: ToolCall, tool: ToolDefinition) -> DispatchResult:
        request = DispatchRequest(
            tool=tool,
            call_id=call.id,
            arguments=call.function.arguments,
            run_id=run.id,
            thread_id=run.thread_id,
            agent=run.assistant_id,
        )
        try:
            return await self.agents.bus.call(
                subjects.DISPATCHER_CALL,
                request,
                DispatchResult,
                wait_s=(tool.timeout_seconds or DEFAULT_TOOL_TIMEOUT_S) + 5,
            )
        except BusFailure as failure:
            error = {"error": {"code": "dispatcher_unavailable", "message": failure.error.message}}
            return DispatchResult(output=json.dumps(error))

    async def finish(
        self,
        run: Run,
        events: RunEvents,
        status: str,
        *,
        error: LastError | None = None,
        incomplete: IncompleteDetails | None = None,
    ) -> Run:
        stamp = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}.get(status)
        fields: dict[str, Any] = {"required_action": None, "last_error": error, "incomplete_details": incomplete}
        if stamp:
            fields[stamp] = now()
        if run.usage is None:
            fields["usage"] = Usage()
        # Steps and messages first, so whoever sees the run ended sees them final too (seen: a client
        # read a failed run's cut-off message still `in_progress`). Best effort here: a run whose steps
        # cannot be closed (a damaged record) must still end, and the second pass reports it.
        with contextlib.suppress(Exception):
            await self.close_open_steps(run, status)
        run = await self.transition(run, status, **fields)
        await self.close_open_steps(run, status)
        await self.give_slot_back(run)
        await events.emit(f"thread.run.{status}", run)
        await self.state.release_thread(run.thread_id, run.id)
        log_ending(run)
        return run

    async def close_open_steps(self, run: Run, status: str) -> None:
        """Steps still in progress when a run ends share its fate (cancelled, failed, expired), and a
        message cut off with them becomes `incomplete` (reason `run_<status>`, as OpenAI says), so a
        partial answer never looks like one still being written."""
        step_status = {"cancelled": "cancelled", "failed": "failed", "expired": "expired"}.get(status, "cancelled")
        for step in await self.state.list_steps(run.thread_id, run.id):
            if step.status != "in_progress":
                continue
            step.status = step_status  # type: ignore[assignment]
            setattr(step, f"{step_status}_at", now())
            await self.state.put_step(step)
            if isinstance(step.step_details, MessageCreationDetails):
                await self.state.update_message(
                    run.thread_id, step.step_details.message_creation["message_id"], cut_off(f"run_{step_status}")
                )

    # --- helpers -----------------------------------------------------------------------------------------

    async def transition(self, run: Run, status: str | None, **fields: Any) -> Run:
        """Write status and fields with compare-and-set; a concurrent cancel request wins over progress,
        and a run that is terminal stays so (`RunEnded`): only the carrier whose write ended the run
        announces its end."""
        cancel_seen = False

        def change(current: Run) -> Run:
            nonlocal cancel_seen
            if current.terminal:
                raise RunEnded(current.id)
            if current.status == "cancelling" and status not in ("cancelled", "failed", "expired"):
                cancel_seen = True
            updated = current.model_copy(update=fields)
            if status is not None and not cancel_seen:
                updated.status = status  # type: ignore[assignment]
            return updated

        updated = await self.state.update_run(run.thread_id, run.id, change)
        if updated is None:
            raise RunCancelled  # the thread was deleted under us: stop
        if cancel_seen and status not in (None,):
            raise RunCancelled
        return updated

    async def reload(self, run: Run) -> Run:
        return await self.state.get_run(run.thread_id, run.id) or run
