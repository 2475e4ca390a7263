"""Runs and run steps: create (and stream), create-thread-and-run, retrieve, list, update, cancel,
submit_tool_outputs, and the ossabus extension submit_tool_approvals. The relay writes the run and
hands it to the work queue; executors move it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ossabus.contracts import subjects
from ossabus.contracts.bus import ManifestRecord
from ossabus.contracts.openai_objects import LastError, Run, RunStep
from ossabus.contracts.retrieval import without_content
from ossabus.relay import budgets
from ossabus.relay.auth import caller, principal
from ossabus.relay.context import POLL_AFTER_MS, assistant_record, checked_id, not_found, now, state
from ossabus.relay.errors import ApiError
from ossabus.relay.openai_requests import (
    RunCreate,
    RunOptions,
    RunUpdate,
    SubmitToolApprovals,
    SubmitToolOutputs,
    ThreadAndRunCreate,
)
from ossabus.relay.pagination import paginate
from ossabus.relay.routes_threads import create_thread_from, message_from, thread_or_404
from ossabus.relay.run_stream import RunStream, resume_point
from ossabus.relay.thread_files import add_to_thread_store, check_attachments
from ossabus.runtime.events import RunEvents
from ossabus.runtime.work_queue import queue_run
from ossabus.store import answers
from ossabus.store.runs import new_run, plain_model_record

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/threads", tags=["runs"])
Follow = Callable[[RunStream], Response]


async def start(
    request: Request,
    thread_id: str,
    options: RunOptions,
    *,
    additional_instructions: str | None = None,
    additional_messages=None,
    follow: Follow | None = None,
):
    record = await assistant_record(request, options.assistant_id)
    await budgets.check(request, record.definition, options.assistant_id)
    params = options.model_dump(exclude_none=True, mode="json")
    if additional_instructions:
        params["additional_instructions"] = additional_instructions
    run = new_run(thread_id, record, params)
    searched = [
        f
        for i, m in enumerate(additional_messages or [])
        for f in await check_attachments(request, m.attachments, f"additional_messages[{i}].attachments")
    ]
    holder = await state(request).claim_thread(thread_id, run.id)
    if holder is not None:
        raise ApiError(
            409, f"Thread {thread_id} already has an active run {holder}.", param="thread_id", code="run_active"
        )
    for message in additional_messages or []:
        await state(request).put_message(message_from(thread_id, message))
    if searched:
        await add_to_thread_store(request, await thread_or_404(request, thread_id), searched)
    await state(request).put_run(run)
    return await launch(
        request,
        run,
        record,
        attempt=1,
        stream=bool(options.stream),
        before=["thread.run.created", "thread.run.queued"],
        follow=follow,
    )


async def launch(
    request: Request,
    run: Run,
    record: ManifestRecord,
    *,
    attempt: int,
    stream: bool,
    before: list[str],
    before_data: list | None = None,
    msg_id: str | None = None,
    follow: Follow | None = None,
):
    """Announce the run's new state and put it on the work queue; stream its events when asked
    (as OpenAI's SSE, or through `follow`, which turns the run's event stream into a response).

    The work message's id is `msg_id`, by default run and attempt (see runtime/work_queue.py)."""
    nc = request.app.state.broker.connection
    js = nc.jetstream()
    events = RunStream.open(js, run.thread_id, run.id) if stream else None
    stream_handle = await events if events else None
    emitter = RunEvents(nc, run.thread_id, run.id)
    try:
        for name, data in zip(before, before_data or [run] * len(before), strict=True):
            await emitter.emit(name, data)
        msg_id = msg_id or f"{run.id}.{attempt}"
        await queue_run(
            js,
            run,
            record,
            attempt=attempt,
            msg_id=msg_id,
            principal=principal(request),
            project=caller(request).project,
        )
    except Exception as exc:
        if stream_handle:
            await stream_handle.close()
        log.exception("could not queue run %s", run.id)
        await state(request).update_run(
            run.thread_id,
            run.id,
            lambda r: r.model_copy(
                update={
                    "status": "failed",
                    "failed_at": now(),
                    "last_error": LastError(code="server_error", message="the run could not be queued"),
                }
            ),
        )
        await state(request).release_thread(run.thread_id, run.id)
        raise ApiError(503, "the run could not be queued; try again", code="unavailable") from exc
    if stream_handle:
        return follow(stream_handle) if follow else stream_handle.response()
    return run


async def run_or_404(request: Request, thread_id: str, run_id: str) -> Run:
    await thread_or_404(request, thread_id)
    run = await state(request).get_run(thread_id, checked_id(run_id, "run", "run_id"))
    if run is None:
        raise not_found("run", run_id, "run_id")
    if run.status == "requires_action" and run.expires_at is not None and now() >= run.expires_at:
        run = await expire(request, run)
    return run


async def expire(request: Request, run: Run) -> Run:
    """Runs waiting for tool outputs past `expires_at` expire when someone next looks at them."""

    def change(current: Run) -> Run | None:
        if current.status != "requires_action":
            return None
        return current.model_copy(update={"status": "expired", "required_action": None})

    updated = await state(request).update_run(run.thread_id, run.id, change) or run
    if updated.status == "expired":
        await RunEvents(request.app.state.broker.connection, run.thread_id, run.id).emit("thread.run.expired", updated)
        await state(request).release_thread(run.thread_id, run.id)
    return updated


@router.post("/runs")
async def create_thread_and_run(request: Request, body: ThreadAndRunCreate):
    from ossabus.relay.openai_requests import ThreadCreate

    await assistant_record(request, body.assistant_id)  # 404 before anything is written
    thread_body = body.thread or ThreadCreate()
    if body.tool_resources is not None and thread_body.tool_resources is None:
        thread_body.tool_resources = body.tool_resources
    thread = await create_thread_from(request, thread_body)
    return await start(request, thread.id, body)


@router.post("/{thread_id}/runs")
async def create_run(request: Request, thread_id: str, body: RunCreate):
    await thread_or_404(request, thread_id)
    return await start(
        request,
        thread_id,
        body,
        additional_instructions=body.additional_instructions,
        additional_messages=body.additional_messages,
    )


@router.get("/{thread_id}/runs")
async def list_runs(
    request: Request,
    thread_id: str,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
):
    await thread_or_404(request, thread_id)
    runs = await state(request).list_runs(thread_id)
    return paginate(
        runs, lambda r: r.id, lambda r: r.model_dump(mode="json"), limit=limit, order=order, after=after, before=before
    )


@router.get("/{thread_id}/runs/{run_id}")
async def get_run(request: Request, thread_id: str, run_id: str):
    run = await run_or_404(request, thread_id, run_id)
    return JSONResponse(run.model_dump(mode="json"), headers={"openai-poll-after-ms": POLL_AFTER_MS})


@router.post("/{thread_id}/runs/{run_id}")
async def update_run(request: Request, thread_id: str, run_id: str, body: RunUpdate):
    await run_or_404(request, thread_id, run_id)
    metadata = body.metadata or {}
    return await state(request).update_run(thread_id, run_id, lambda r: r.model_copy(update={"metadata": metadata}))


@router.post("/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(request: Request, thread_id: str, run_id: str):
    run = await run_or_404(request, thread_id, run_id)
    if run.terminal or run.status == "cancelling":
        raise ApiError(400, f"Cannot cancel run with status '{run.status}'.", param="run_id", code="invalid_state")
    return await cancel(request, run)


async def cancel(request: Request, run: Run) -> Run:
    """Cancel a run that is not over: at once when nothing runs (it waits for the client), else by
    asking its executor (`cancelling`, then `cancelled` when the executor stops)."""
    thread_id, run_id = run.thread_id, run.id
    nc = request.app.state.broker.connection

    def change(current: Run) -> Run | None:
        if current.terminal or current.status == "cancelling":
            return None
        if current.status == "requires_action":  # nothing runs: it is cancelled at once
            return current.model_copy(update={"status": "cancelled", "cancelled_at": now(), "required_action": None})
        return current.model_copy(update={"status": "cancelling"})

    updated = await state(request).update_run(thread_id, run_id, change) or run
    emitter = RunEvents(nc, thread_id, run_id)
    if updated.status == "cancelled":
        for step in await state(request).list_steps(thread_id, run_id):
            if step.status == "in_progress":
                await state(request).put_step(step.model_copy(update={"status": "cancelled", "cancelled_at": now()}))
        await emitter.emit("thread.run.cancelled", updated)
        await state(request).release_thread(thread_id, run_id)
    elif updated.status == "cancelling":
        await emitter.emit("thread.run.cancelling", updated)
        await nc.publish(subjects.run_cancel(run_id), b"")
    return updated


@router.post("/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(request: Request, thread_id: str, run_id: str, body: SubmitToolOutputs):
    run = await run_or_404(request, thread_id, run_id)
    outputs = {o.tool_call_id: o.output for o in body.tool_outputs}
    given = [o.tool_call_id for o in body.tool_outputs]
    with refused_as_400(run):
        answers.check_waiting(run, "submit_tool_outputs")
        answers.check_answers(answers.pending_calls(run), given, "tool_outputs", "tool output")
    return await apply_tool_outputs(request, run, outputs, body.stream)


@router.post("/{thread_id}/runs/{run_id}/submit_tool_approvals")
async def submit_tool_approvals(request: Request, thread_id: str, run_id: str, body: SubmitToolApprovals):
    """ossabus extension: approve or deny the calls a run waits on (`required_action.type` is
    `submit_tool_approvals`); approved calls run, denied ones answer the model with the reason."""
    run = await run_or_404(request, thread_id, run_id)
    decisions = {a.tool_call_id: (a.approve, a.reason) for a in body.approvals}
    given = [a.tool_call_id for a in body.approvals]
    with refused_as_400(run):
        answers.check_waiting(run, "submit_tool_approvals")
        answers.check_answers(answers.pending_calls(run), given, "approvals", "approval")
    return await apply_tool_approvals(request, run, decisions, body.stream)


@contextlib.contextmanager
def refused_as_400(run: Run):
    """An answer that does not fit the run: 400, naming the endpoint the run does wait on."""
    try:
        yield
    except answers.AnswerRefused as refused:
        message = refused.message
        if refused.code == "invalid_state" and run.required_action is not None:
            waits = run.required_action.type
            message += f" POST /v1/threads/{run.thread_id}/runs/{run.id}/{waits}."
        raise ApiError(400, message, param=refused.param, code=refused.code) from refused


async def apply_tool_outputs(
    request: Request, run: Run, outputs: dict[str, str], stream: bool | None, follow: Follow | None = None
):
    """Record the client's outputs (already checked against the pending calls) and resume the run."""
    with refused_as_400(run):
        updated, step = await answers.record_outputs(state(request), run, outputs)
    events = ["thread.run.step.completed", "thread.run.queued"]
    return await resume(request, updated, stream, events, [step, updated], "outputs", follow)


async def apply_tool_approvals(
    request: Request,
    run: Run,
    decisions: dict[str, tuple[bool, str | None]],
    stream: bool | None,
    follow: Follow | None = None,
):
    """Record a person's decisions (already checked against the pending calls) and resume the run."""
    with refused_as_400(run):
        updated, _ = await answers.record_approvals(state(request), run, decisions)
    return await resume(request, updated, stream, ["thread.run.queued"], [updated], "approvals", follow)


async def resume(
    request: Request,
    run: Run,
    stream: bool | None,
    before: list[str],
    before_data: list,
    answered: str,
    follow: Follow | None = None,
) -> Response:
    """Hand a run that got its answers back to the executors."""
    record = (
        plain_model_record(run.direct_model) if run.direct_model else await assistant_record(request, run.assistant_id)
    )
    attempt, msg_id = await answers.hand_over_ids(state(request), run, answered)
    return await launch(
        request,
        run,
        record,
        attempt=attempt,
        stream=bool(stream),
        before=before,
        before_data=before_data,
        msg_id=msg_id,
        follow=follow,
    )


@router.get("/{thread_id}/runs/{run_id}/events")
async def run_events(request: Request, thread_id: str, run_id: str, after: int | None = Query(None, ge=0)):
    """ossabus extension: the run's event stream, from its start or after `Last-Event-ID` (or `?after=`),
    then live until the run ends or waits for tool outputs; how a client resumes a dropped stream."""
    run = await run_or_404(request, thread_id, run_id)
    after = resume_point(request.headers.get("last-event-id"), after)
    js = request.app.state.broker.connection.jetstream()
    stream = await RunStream.replay(js, thread_id, run_id, after, run.status)
    return stream.response()


FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


def included(request: Request) -> set[str]:
    """`include[]` as the SDK sends it (`include` also accepted); an unknown value is a 400."""
    values = set(request.query_params.getlist("include[]") + request.query_params.getlist("include"))
    unknown = values - {FILE_SEARCH_CONTENT}
    if unknown:
        raise ApiError(400, f"include may only hold {FILE_SEARCH_CONTENT!r}", param="include")
    return values


def shown_step(step: RunStep, include: set[str]) -> dict:
    """A step as the API answers: file_search results without their content unless it was asked for."""
    data = step.model_dump(mode="json")
    if FILE_SEARCH_CONTENT not in include and data["step_details"]["type"] == "tool_calls":
        for call in data["step_details"]["tool_calls"]:
            if call.get("type") == "file_search":
                call["file_search"] = without_content(call["file_search"])
    return data


@router.get("/{thread_id}/runs/{run_id}/steps")
async def list_steps(
    request: Request,
    thread_id: str,
    run_id: str,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
):
    include = included(request)
    await run_or_404(request, thread_id, run_id)
    steps = await state(request).list_steps(thread_id, run_id)
    return paginate(
        steps, lambda s: s.id, lambda s: shown_step(s, include), limit=limit, order=order, after=after, before=before
    )


@router.get("/{thread_id}/runs/{run_id}/steps/{step_id}")
async def get_step(request: Request, thread_id: str, run_id: str, step_id: str):
    include = included(request)
    await run_or_404(request, thread_id, run_id)
    step = await state(request).get_step(thread_id, run_id, checked_id(step_id, "step", "step_id"))
    if step is None:
        raise not_found("step", step_id, "step_id")
    return shown_step(step, include)
