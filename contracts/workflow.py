"""Workflow runs: the API object (`ossa.workflow.run`), its steps, and the messages that start them.

A workflow run is durable work on the bus: `WorkflowRunRequest` (or another system's `WorkflowTask`)
on `ossa.workflows.<name>`, carried by one workflow runner at a time; the run record in
`ossa_workflow_runs` holds every step's state and output, so a runner that dies is replaced by
another that resumes at the step it was on and never runs a finished step again.

Events are `RunEvent`s on `ossa.events.<workflow>.<workflow_run_id>.<event>` (the workflow in the
thread's place): `workflow.run.queued|in_progress|requires_action|completed|failed|cancelled` carry
the run, `workflow.step.in_progress|requires_action|completed|failed|skipped|cancelled` the step.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, model_serializer

from ossabus.contracts.openai_objects import hide_unless_stored

WorkflowStatus = Literal["queued", "in_progress", "requires_action", "cancelling", "cancelled", "completed", "failed"]
StepStatus = Literal[
    "pending", "in_progress", "requires_action", "completed", "failed", "skipped", "cancelled", "compensated"
]
TERMINAL: tuple[str, ...] = ("completed", "failed", "cancelled")
STEP_DONE: tuple[str, ...] = ("completed", "failed", "skipped", "cancelled", "compensated")


class WorkflowError(BaseModel):
    code: str
    message: str
    step: str | None = Field(None, description="The step whose failure ended the run.")


class StepApproval(BaseModel):
    approved: bool
    reason: str | None = None
    by: str | None = Field(None, description="The API key's fingerprint, or `nats`.")
    at: int


class WorkflowStep(BaseModel):
    """One step's state. Steps inside a loop are listed per iteration: `each[2].send`."""

    id: str
    name: str | None = None
    kind: str
    status: StepStatus = "pending"
    output: Any = None
    run_id: str | None = Field(None, description="The run of an Agent or Task step (its last attempt).")
    thread_id: str | None = None
    attempts: int = 0
    started_at: int | None = None
    completed_at: int | None = None
    last_error: WorkflowError | None = None
    branch: int | None = Field(None, description="Conditional: the branch taken (-1: else, null: none).")
    approval: StepApproval | None = None
    usage: dict[str, int] | None = None


class WorkflowRun(BaseModel):
    """`POST /v1/ossa/workflows/{name}/runs` answers this; it belongs to the project of the key that made it."""

    id: str
    object: Literal["ossa.workflow.run"] = "ossa.workflow.run"
    workflow: str
    workflow_version: str | None = None
    created_at: int = Field(default_factory=lambda: int(time.time()))
    started_at: int | None = None
    completed_at: int | None = None
    cancelled_at: int | None = None
    status: WorkflowStatus = "queued"
    input: Any = None
    output: Any = None
    steps: list[WorkflowStep] = Field(default_factory=list)
    last_error: WorkflowError | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    trigger: dict[str, Any] = Field(default_factory=lambda: {"type": "manual"})
    usage: dict[str, int] = Field(default_factory=dict)
    deadline: float | None = Field(None, description="Epoch seconds after which the run fails (timeout_seconds).")
    project: str | None = None

    @model_serializer(mode="wrap")
    def _without_project(self, handler, info: SerializationInfo) -> dict[str, Any]:
        return hide_unless_stored(handler(self), info, "project")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def step(self, step_id: str) -> WorkflowStep | None:
        return next((s for s in self.steps if s.id == step_id), None)


class WorkflowRunRequest(BaseModel):
    """The pointer the relay (or a trigger) puts on `ossa.workflows.<name>` after writing the run record."""

    workflow_run_id: str
    workflow: str


class WorkflowTask(BaseModel):
    """What another system publishes on `ossa.workflows.<name>` (durable) or sends to
    `ossa.ask.workflow.<name>` (request/reply: the reply is the finished `WorkflowRun`).

    With a `Nats-Msg-Id` header (or `run_id`) the same message never starts two runs: the run's id
    derives from it. Events of the run are on `ossa.events.<name>.<run_id>.>`.
    """

    model_config = ConfigDict(extra="forbid")

    input: Any = Field(None, description="The workflow's input, checked against its `inputs` schema.")
    run_id: str | None = Field(None, description="Choose the id (`wfrun_...`) to subscribe to its events first.")
    metadata: dict[str, str] = Field(default_factory=dict)


class StepDecision(BaseModel):
    """Approve or reject a step that waits for a person (`approval` on the step)."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    reason: str | None = None
