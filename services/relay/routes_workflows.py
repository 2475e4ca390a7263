"""Workflow runs over HTTP (an ossabus extension under `/v1/ossa/`): start (and stream), retrieve,
list, cancel, follow the events (resumable with `Last-Event-ID`), and decide a step that waits for a
person. The relay writes the run's record and hands it to the workflow runners; they move it. A run
belongs to the project of the key that started it; another project's run is not found."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ossabus.contracts import subjects
from ossabus.contracts.bus import GetManifestRequest, ManifestRecord
from ossabus.contracts.ids import derived_id
from ossabus.contracts.workflow import StepApproval, StepDecision, WorkflowRun
from ossabus.relay.auth import caller, principal
from ossabus.relay.context import bus, checked_id, not_found
from ossabus.relay.errors import ApiError
from ossabus.relay.pagination import paginate
from ossabus.relay.run_stream import WORKFLOW_END_EVENTS, RunStream, resume_point
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.events import RunEvents
from ossabus.runtime.workflow_start import WorkflowRejected, launch, new_workflow_run, plan_for
from ossabus.store.workflow_runs import WorkflowRuns

router = APIRouter(prefix="/v1/ossa/workflows", tags=["workflows"])


class WorkflowRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Any = None
    stream: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)
    run_id: str | None = Field(None, description="Choose the run's id (`wfrun_...`); a repeat finds the same run.")


async def workflow_record(request: Request, name: str) -> ManifestRecord:
    checked_id(name, "workflow", "name")
    try:
        record = await bus(request).call(subjects.REGISTRY_GET, GetManifestRequest(name=name), ManifestRecord)
    except BusFailure as exc:
        if exc.error.code == "not_found":
            raise ApiError(404, f"No workflow found with name '{name}'.", param="name", code="not_found") from exc
        raise
    if record.kind != "Workflow":
        raise ApiError(
            404, f"No workflow found with name '{name}' ({name} is an {record.kind}).", param="name", code="not_found"
        )
    return record


async def run_or_404(request: Request, name: str, run_id: str) -> WorkflowRun:
    checked_id(name, "workflow", "name")
    checked_id(run_id, "workflow run", "run_id")
    run = await (await workflow_runs(request)).get(name, run_id)
    if run is None or (run.project or "default") != caller(request).project:
        raise not_found("workflow run", run_id, "run_id")
    return run


async def workflow_runs(request: Request) -> WorkflowRuns:
    store = getattr(request.app.state, "workflow_runs", None)
    if store is None:
        store = await WorkflowRuns.open(request.app.state.broker.connection.jetstream())
        request.app.state.workflow_runs = store
    return store


@router.post("/{name}/runs")
async def create_run(request: Request, name: str, body: WorkflowRunCreate):
    record = await workflow_record(request, name)
    try:
        run = new_workflow_run(
            record,
            body.input,
            project=caller(request).project,
            run_id=body.run_id,
            metadata=body.metadata,
            trigger={"type": "manual", "by": principal(request)},
        )
    except WorkflowRejected as exc:
        raise ApiError(400, exc.message, param=exc.param, code=exc.code) from exc
    store = await workflow_runs(request)
    nc = request.app.state.broker.connection
    taken = await store.get(name, run.id) if body.run_id else None
    if taken is not None and (taken.project or "default") != caller(request).project:
        raise ApiError(409, f"run_id {run.id!r} is taken", param="run_id", code="conflict")
    stream = await RunStream.open(nc.jetstream(), name, run.id, WORKFLOW_END_EVENTS) if body.stream else None
    try:
        stored = await launch(nc, store, run)
    except Exception:
        if stream is not None:
            await stream.close()
        raise
    if stream is not None:
        return stream.response()
    return stored


@router.post("/{name}/webhook", status_code=202)
async def webhook(request: Request, name: str):
    """A `type: webhook` trigger: the request's JSON body is the run's input. It is authenticated like
    every route, by the caller's API key (a manifest's own `path` or `secret_ref` is not used: a manifest
    does not choose the server's routes or read its secrets). An `Idempotency-Key` header makes a
    repeated delivery find the run the first one started."""
    record = await workflow_record(request, name)
    try:
        plan = plan_for(record)
    except WorkflowRejected as exc:
        raise ApiError(400, exc.message, code=exc.code) from exc
    if not any(t.type == "webhook" for t in plan.triggers):
        raise ApiError(404, f"workflow {name!r} has no webhook trigger", param="name", code="not_found")
    raw = await request.body()
    try:
        value = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "the webhook body is not JSON", code="invalid_json") from exc
    key = request.headers.get("idempotency-key")
    project = caller(request).project
    run_id = derived_id("wfrun", f"webhook:{name}:{project}:{key}") if key else None
    store = await workflow_runs(request)
    if run_id is not None and (existing := await store.get(name, run_id)) is not None:
        return existing
    try:
        run = new_workflow_run(
            record, value, project=project, run_id=run_id, trigger={"type": "webhook", "by": principal(request)}
        )
    except WorkflowRejected as exc:
        raise ApiError(400, exc.message, param=exc.param, code=exc.code) from exc
    return await launch(request.app.state.broker.connection, store, run)


@router.get("/{name}/runs")
async def list_runs(
    request: Request,
    name: str,
    limit: int = Query(20),
    order: Literal["asc", "desc"] = Query("desc"),
    after: str | None = Query(None),
    before: str | None = Query(None),
    status: str | None = Query(None),
):
    await workflow_record(request, name)
    project = caller(request).project
    runs = [r for r in await (await workflow_runs(request)).list(name) if (r.project or "default") == project]
    if status:
        runs = [r for r in runs if r.status == status]
    runs.sort(key=lambda r: r.id)
    return paginate(
        runs, lambda r: r.id, lambda r: r.model_dump(mode="json"), limit=limit, order=order, after=after, before=before
    )


@router.get("/{name}/runs/{run_id}")
async def retrieve_run(request: Request, name: str, run_id: str):
    return await run_or_404(request, name, run_id)


@router.post("/{name}/runs/{run_id}/cancel")
async def cancel_run(request: Request, name: str, run_id: str):
    run = await run_or_404(request, name, run_id)
    if run.terminal or run.status == "cancelling":
        raise ApiError(
            400, f"Cannot cancel a workflow run with status '{run.status}'.", param="run_id", code="invalid_state"
        )

    def change(current: WorkflowRun) -> WorkflowRun | None:
        if current.terminal or current.status == "cancelling":
            return None
        return current.model_copy(update={"status": "cancelling"})

    updated = await (await workflow_runs(request)).update(name, run_id, change) or run
    nc = request.app.state.broker.connection
    if updated.status == "cancelling":
        await RunEvents(nc, name, run_id).emit("workflow.run.cancelling", updated)
        await nc.publish(subjects.workflow_control(run_id, "cancel"), b"")
    return updated


@router.post("/{name}/runs/{run_id}/steps/{step_id}/approval")
async def decide_step(request: Request, name: str, run_id: str, step_id: str, body: StepDecision):
    """Approve or reject a step that waits for a person (`approval` on the step)."""
    run = await run_or_404(request, name, run_id)
    step = run.step(step_id)
    if step is None:
        raise not_found("step", step_id, "step_id")
    if step.status != "requires_action" or step.approval is not None:
        raise ApiError(
            400,
            f"step {step_id!r} is not waiting for approval (status '{step.status}')",
            param="step_id",
            code="invalid_state",
        )
    decision = StepApproval(approved=body.approve, reason=body.reason, by=principal(request), at=int(time.time()))

    def change(current: WorkflowRun) -> WorkflowRun | None:
        found = current.step(step_id)
        if found is None or found.approval is not None or found.status != "requires_action":
            return None
        found.approval = decision
        return current

    updated = await (await workflow_runs(request)).update(name, run_id, change) or run
    recorded = updated.step(step_id)
    if recorded is None or recorded.approval != decision:
        raise ApiError(409, f"step {step_id!r} was decided meanwhile", param="step_id", code="conflict")
    await request.app.state.broker.connection.publish(subjects.workflow_control(run_id, "decided"), b"")
    return updated


@router.get("/{name}/runs/{run_id}/events")
async def run_events(request: Request, name: str, run_id: str, after: int | None = Query(None, ge=0)):
    """The run's events from its start, or after `Last-Event-ID` (or `?after=`), then live until it ends."""
    run = await run_or_404(request, name, run_id)
    after = resume_point(request.headers.get("last-event-id"), after)
    js = request.app.state.broker.connection.jetstream()
    stream = await RunStream.replay(js, name, run_id, after, run.status, WORKFLOW_END_EVENTS)
    return stream.response()
