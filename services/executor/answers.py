"""`ossa.runs.answer`: another system answers a run it started over the bus, with the tool outputs
or approvals the run waits for, as the HTTP API's submit_tool_outputs / submit_tool_approvals do.

The checks and the bookkeeping are the store's (shared with the relay); here the answered run is
announced and handed back to the work queue.
"""

from __future__ import annotations

from nats.aio.client import Client

from ossabus.contracts import subjects
from ossabus.contracts.bus import DEFAULT_PROJECT, RunAnswer
from ossabus.contracts.openai_objects import Run
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.events import RunEvents
from ossabus.runtime.work_queue import queue_run
from ossabus.store import answers
from ossabus.store.state import State


async def answer_run(nc: Client, state: State, agents: AgentDirectory, answer: RunAnswer) -> Run:
    if not (subjects.is_token(answer.thread_id) and subjects.is_token(answer.run_id)):
        raise BusFailure.of("not_found", f"no run {answer.run_id!r} in thread {answer.thread_id!r}", "run_id")
    run = await state.get_run(answer.thread_id, answer.run_id)
    if run is None:
        raise BusFailure.of("not_found", f"no run {answer.run_id!r} in thread {answer.thread_id!r}", "run_id")
    if (answer.tool_outputs is None) == (answer.approvals is None):
        raise BusFailure.of("invalid_request", "give either tool_outputs or approvals", "tool_outputs")
    pending = answers.pending_calls(run)
    try:
        if answer.approvals is not None:
            answers.check_waiting(run, "submit_tool_approvals")
            given = [a.tool_call_id for a in answer.approvals]
            answers.check_answers(pending, given, "approvals", "approval")
            decisions = {a.tool_call_id: (a.approve, a.reason) for a in answer.approvals}
            updated, _ = await answers.record_approvals(state, run, decisions)
            announce, kind = [("thread.run.queued", updated)], "approvals"
        else:
            assert answer.tool_outputs is not None
            answers.check_waiting(run, "submit_tool_outputs")
            given = [o.tool_call_id for o in answer.tool_outputs]
            answers.check_answers(pending, given, "tool_outputs", "tool output")
            outputs = {o.tool_call_id: o.output for o in answer.tool_outputs}
            updated, step = await answers.record_outputs(state, run, outputs)
            announce, kind = [("thread.run.step.completed", step), ("thread.run.queued", updated)], "outputs"
    except answers.AnswerRefused as refused:
        code = "conflict" if refused.code == "invalid_state" else "invalid_request"
        raise BusFailure.of(code, refused.message, refused.param) from refused
    events = RunEvents(nc, run.thread_id, run.id)
    for name, data in announce:
        await events.emit(name, data)
    record = await agents.record(assistant_id=run.assistant_id)
    attempt, msg_id = await answers.hand_over_ids(state, updated, kind)
    thread = await state.get_thread(run.thread_id)
    project = (thread.project if thread else None) or DEFAULT_PROJECT
    await queue_run(nc.jetstream(), updated, record, attempt=attempt, msg_id=msg_id, principal="nats", project=project)
    return updated
