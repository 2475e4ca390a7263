"""Starting a workflow run: its input checked, its record written, its pointer on the work queue.

Shared by the relay (HTTP), the workflow runner (NATS tasks, request/reply, schedules and events)
and the CLI, so every way in checks the same things and writes the same record.
"""

from __future__ import annotations

import time
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from ossabus.contracts import subjects
from ossabus.contracts.bus import ManifestRecord
from ossabus.contracts.ids import new_id
from ossabus.contracts.workflow import WorkflowRun, WorkflowRunRequest, WorkflowStep
from ossabus.contracts.workflow_plan import Plan, PlanError, every_step, plan_of
from ossabus.runtime.events import RunEvents
from ossabus.runtime.task_runs import schema_errors
from ossabus.runtime.tracing import headers_with_context
from ossabus.store.workflow_runs import WorkflowRuns

PUBLISH_TIMEOUT_S = 5


class WorkflowRejected(Exception):
    """The run cannot start: not a workflow, a workflow that cannot run, an input that does not fit."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def plan_for(record: ManifestRecord) -> Plan:
    if record.kind != "Workflow":
        raise WorkflowRejected("invalid_request", f"{record.name!r} is an {record.kind}, not a Workflow", "name")
    spec = record.manifest.get("spec") if isinstance(record.manifest.get("spec"), dict) else {}
    try:
        return plan_of(spec)
    except PlanError as exc:
        raise WorkflowRejected("invalid_workflow", f"{record.name}: {exc.message}") from exc


def with_defaults(schema: dict[str, Any] | None, value: Any) -> Any:
    """The input with its schema's top-level defaults filled in (`auto_publish: false`)."""
    if not schema or not isinstance(value, dict | None):
        return value
    filled = dict(value or {})
    for name, prop in (schema.get("properties") or {}).items():
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = prop["default"]
    return filled if (filled or value is not None) else value


def new_workflow_run(
    record: ManifestRecord,
    value: Any,
    *,
    project: str,
    run_id: str | None = None,
    metadata: dict[str, str] | None = None,
    trigger: dict[str, Any] | None = None,
) -> WorkflowRun:
    """The record of a new run; WorkflowRejected when the input does not match the workflow's schema."""
    plan = plan_for(record)
    value = with_defaults(plan.inputs_schema, value)
    if plan.inputs_schema:
        problems = schema_errors(plan.inputs_schema, value if value is not None else {})
        if problems:
            raise WorkflowRejected(
                "invalid_request", f"input does not match the workflow's inputs schema: {problems[0]}", "input"
            )
    if run_id is not None and not (run_id.startswith("wfrun_") and subjects.is_token(run_id)):
        raise WorkflowRejected(
            "invalid_request", "run_id starts with wfrun_ and holds only letters, digits, _ and -", "run_id"
        )
    now = int(time.time())
    return WorkflowRun(
        id=run_id or new_id("wfrun"),
        workflow=record.name,
        workflow_version=record.definition.version,
        created_at=now,
        input=value,
        steps=[WorkflowStep(id=s.id, name=s.name, kind=s.kind) for s in plan.steps],
        metadata=metadata or {},
        trigger=trigger or {"type": "manual"},
        deadline=now + plan.timeout_seconds if plan.timeout_seconds else None,
        project=project,
    )


async def launch(nc: Client, runs: WorkflowRuns, run: WorkflowRun, *, queue: bool = True) -> WorkflowRun:
    """Write the run's record (once: a repeat of the same id finds the first) and announce it, then
    hand it to the runners (`queue=False`: its work message is the one being handled). The stored run."""
    stored = await runs.create(run)
    if stored is run:
        await RunEvents(nc, run.workflow, run.id).emit("workflow.run.queued", run)
    if queue:
        await queue_workflow_run(nc.jetstream(), stored)
    return stored


async def queue_workflow_run(js: JetStreamContext, run: WorkflowRun, msg_id: str | None = None) -> None:
    """Hand the run to the workflow runners; `msg_id` (default: the run's id) makes a repeat a no-op."""
    pointer = WorkflowRunRequest(workflow_run_id=run.id, workflow=run.workflow)
    await js.publish(
        subjects.workflow(run.workflow),
        pointer.model_dump_json().encode(),
        timeout=PUBLISH_TIMEOUT_S,
        headers=headers_with_context({"Nats-Msg-Id": msg_id or run.id}),
    )


def step_names(plan: Plan) -> dict[str, str | None]:
    return {s.id: s.name for s in every_step(plan.steps)}
