"""Answers to a parked run: the client's tool outputs, or a person's approvals.

Shared by the HTTP API (submit_tool_outputs, submit_tool_approvals, /api/chat) and the bus
(`ossa.runs.answer`), so both check the same things: the run waits for exactly this kind of answer,
every pending call is answered exactly once, and of two concurrent answers one wins (the run moves
from `requires_action` to `queued` with compare-and-set).
"""

from __future__ import annotations

import time

from ossabus.contracts.openai_objects import Run, RunStep, ToolApproval, ToolCallsDetails
from ossabus.store.state import State

WHAT = {"submit_tool_outputs": "tool outputs", "submit_tool_approvals": "tool approvals"}


class AnswerRefused(Exception):
    """The answer does not fit the run; `param` names what is wrong."""

    def __init__(self, message: str, param: str, code: str = "invalid_value"):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def pending_calls(run: Run) -> list[str]:
    """Ids of the calls the run waits on, whichever kind of answer it waits for."""
    action = run.required_action
    if action is None:
        return []
    waiting = action.submit_tool_outputs or action.submit_tool_approvals
    return [c.id for c in waiting.tool_calls] if waiting else []


def check_waiting(run: Run, action: str) -> None:
    if run.status != "requires_action" or run.required_action is None:
        raise AnswerRefused(f'Runs in status "{run.status}" do not accept {WHAT[action]}.', "run_id", "invalid_state")
    if run.required_action.type != action:
        raise AnswerRefused(f"The run waits for {run.required_action.type}, not {action}.", "run_id", "invalid_state")


def check_answers(expected: list[str], given: list[str], field: str, what: str) -> None:
    """Every pending call answered exactly once, and nothing else."""
    for i, call_id in enumerate(given):
        if call_id not in expected:
            raise AnswerRefused(
                f"Invalid '{field}[{i}].tool_call_id': no pending tool call '{call_id}'.",
                f"{field}[{i}].tool_call_id",
            )
        if given.index(call_id) != i:
            raise AnswerRefused(f"Duplicate {what} for '{call_id}'.", f"{field}[{i}].tool_call_id")
    if [c for c in expected if c not in given]:
        raise AnswerRefused(f"Expected {what}s for call_ids {expected}, got {given}.", field)


async def pending_step(state: State, run: Run) -> RunStep:
    for step in reversed(await state.list_steps(run.thread_id, run.id)):
        if step.type == "tool_calls" and step.status == "in_progress":
            return step
    raise AnswerRefused("The run has no pending tool calls.", "run_id", "invalid_state")


async def requeue(state: State, run: Run, what: str) -> Run:
    """requires_action -> queued with compare-and-set: of two concurrent answers, one wins."""

    def change(current: Run) -> Run | None:
        if current.status != "requires_action":
            return None
        return current.model_copy(update={"status": "queued", "required_action": None})

    updated = await state.update_run(run.thread_id, run.id, change)
    if updated is None or updated.status != "queued":
        raise AnswerRefused(f"The run no longer accepts {what}.", "run_id", "invalid_state")
    return updated


async def record_outputs(state: State, run: Run, outputs: dict[str, str]) -> tuple[Run, RunStep]:
    """The client's outputs into the pending step, which completes; the run is queued again."""
    step = await pending_step(state, run)
    updated = await requeue(state, run, "tool outputs")
    assert isinstance(step.step_details, ToolCallsDetails)
    for call in step.step_details.tool_calls:
        if call.id in outputs:
            call.function.output = outputs[call.id]
            call.client = True
    step = step.model_copy(update={"status": "completed", "completed_at": int(time.time())})
    await state.put_step(step)
    return updated, step


async def record_approvals(
    state: State, run: Run, decisions: dict[str, tuple[bool, str | None]]
) -> tuple[Run, RunStep]:
    """A person's decisions onto the pending calls (the step stays open: the executor runs the
    approved calls); the run is queued again."""
    step = await pending_step(state, run)
    updated = await requeue(state, run, "tool approvals")
    assert isinstance(step.step_details, ToolCallsDetails)
    for call in step.step_details.tool_calls:
        if call.id in decisions:
            approved, reason = decisions[call.id]
            status = "approved" if approved else "denied"
            call.approval = ToolApproval(status=status, reason=reason, decided_at=int(time.time()))
    await state.put_step(step)
    return updated, step


async def hand_over_ids(state: State, run: Run, answered: str) -> tuple[int, str]:
    """(attempt, Nats-Msg-Id) of the work message that resumes the run. Each tool step is answered
    at most once per kind (approvals, then outputs), which makes the id unique."""
    resumes = sum(1 for s in await state.list_steps(run.thread_id, run.id) if s.type == "tool_calls")
    return resumes + 1, f"{run.id}.{resumes + 1}.{answered}"
