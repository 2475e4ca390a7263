"""A client for Python systems that use ossabus over NATS: publish tasks, follow runs, get results.

    client = await OssabusClient.connect("nats://127.0.0.1:4222")
    task = await client.submit("math-tutor", "Solve 3x + 11 = 14")
    async for event in task.events():          # thread.run.created ... task.result
        print(event.event)
    result = await task.result()               # TaskResult: status, output_text, output, usage
    answer = await client.ask("math-tutor", "And 2x = 8?")   # request/reply, no durability
    run = await client.start_workflow("homework-check", {"problems": ["2x = 8"]})
    async for event in run.events():            # workflow.run.queued ... workflow.run.completed
        print(event.event)

Events are read from the OSSA_EVENTS stream, so subscribing after publishing loses nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import DeliverPolicy

from ossabus.contracts import subjects
from ossabus.contracts.bus import (
    BusError,
    InputMessage,
    Reply,
    RunAnswer,
    RunEvent,
    TaskMessage,
    TaskResult,
    ToolApprovalAnswer,
    ToolOutputAnswer,
)
from ossabus.contracts.ids import new_id
from ossabus.contracts.workflow import TERMINAL, WorkflowRun, WorkflowTask
from ossabus.runtime.bus_auth import default_url


class TaskError(Exception):
    """ossabus refused the task or could not answer: `code`, `message`, `param` say why."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.param = code, message, param


async def _follow(client: OssabusClient, subject: str, last: tuple[str, ...], timeout: float | None):
    """Every event under `subject` from its start, up to one of `last` (or TaskError on `error`)."""
    sub = await client.js.subscribe(
        subject, stream=subjects.EVENTS_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=timeout or client.timeout)
            event = RunEvent.model_validate_json(msg.data)
            yield event
            if event.event in last:
                return
            if event.event == "error":
                data = event.data or {}
                raise TaskError(data.get("code", "error"), data.get("message", ""), data.get("param"))
    finally:
        await sub.unsubscribe()


class Task:
    """One submitted task: its ids, its events, its result."""

    def __init__(self, client: OssabusClient, agent: str, thread_id: str, run_id: str):
        self.client, self.agent, self.thread_id, self.run_id = client, agent, thread_id, run_id
        self._result: TaskResult | None = None

    async def events(self, timeout: float | None = None) -> AsyncIterator[RunEvent]:
        """Every event of the run from its start, ending with `task.result` (or raising TaskError)."""
        subject = subjects.run_events_in_thread(self.thread_id, self.run_id)
        async for event in _follow(self.client, subject, (subjects.TASK_RESULT_EVENT,), timeout):
            if event.event == subjects.TASK_RESULT_EVENT:
                self._result = TaskResult.model_validate(event.data)
            yield event

    async def result(self, timeout: float | None = None) -> TaskResult:
        """Wait for the run's result."""
        if self._result is None:
            async for _ in self.events(timeout):
                pass
        assert self._result is not None
        return self._result


WORKFLOW_ENDINGS = tuple(f"workflow.run.{status}" for status in TERMINAL)


class WorkflowRunHandle:
    """One started workflow run: its id, its events, the run once it has ended."""

    def __init__(self, client: OssabusClient, workflow: str, run_id: str):
        self.client, self.workflow, self.run_id = client, workflow, run_id
        self._run: WorkflowRun | None = None

    async def events(self, timeout: float | None = None) -> AsyncIterator[RunEvent]:
        """Every event of the run from its start, ending with `workflow.run.<ended>` (or TaskError)."""
        subject = subjects.workflow_events(self.workflow, self.run_id)
        async for event in _follow(self.client, subject, WORKFLOW_ENDINGS, timeout):
            if event.event in WORKFLOW_ENDINGS:
                self._run = WorkflowRun.model_validate(event.data)
            yield event

    async def result(self, timeout: float | None = None) -> WorkflowRun:
        """Wait for the run's end: the run with its steps, output and last_error."""
        if self._run is None:
            async for _ in self.events(timeout):
                pass
        assert self._run is not None
        return self._run


class OssabusClient:
    def __init__(self, nc: Client, timeout: float = 300.0):
        self.nc, self.js, self.timeout = nc, nc.jetstream(), timeout
        self._owns_connection = False

    @classmethod
    async def connect(cls, url: str | None = None, timeout: float = 300.0, **options: Any) -> OssabusClient:
        """Connect as a task publisher. Without `url`: `NATS_URL`, else the `client` credentials of the
        local `ossabus up` (its bus is locked), else nats://127.0.0.1:4222. `options` go to nats.connect
        (`user_credentials`, `tls`, ...)."""
        client = cls(await nats.connect(url or default_url("client"), **options), timeout)
        client._owns_connection = True
        return client

    async def close(self) -> None:
        if self._owns_connection:
            await self.nc.close()

    async def __aenter__(self) -> OssabusClient:
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.close()

    @staticmethod
    def _task(value: str | list[dict[str, Any]] | dict[str, Any], **fields: Any) -> TaskMessage:
        if isinstance(value, list):
            value = [InputMessage.model_validate(m) for m in value]
        return TaskMessage(input=value, **{k: v for k, v in fields.items() if v is not None})

    async def submit(
        self,
        agent: str,
        input: str | list[dict[str, Any]] | dict[str, Any],
        *,
        thread_id: str | None = None,
        run_id: str | None = None,
        metadata: dict[str, str] | None = None,
        additional_instructions: str | None = None,
        msg_id: str | None = None,
    ) -> Task:
        """Publish a task on the durable work queue. `msg_id` makes it idempotent (default: the run id)."""
        thread_id, run_id = thread_id or new_id("thread"), run_id or new_id("run")
        message = self._task(
            input,
            thread_id=thread_id,
            run_id=run_id,
            metadata=metadata,
            additional_instructions=additional_instructions,
        )
        await self.js.publish(
            subjects.task(agent),
            message.model_dump_json(exclude_none=True).encode(),
            headers={"Nats-Msg-Id": msg_id or run_id},
            timeout=10,
        )
        return Task(self, agent, thread_id, run_id)

    async def start_workflow(
        self, workflow: str, input: Any = None, *, run_id: str | None = None, metadata: dict[str, str] | None = None
    ) -> WorkflowRunHandle:
        """Start a workflow run on its durable work queue (`ossa.workflows.<name>`); the run id is the
        message id, so publishing it again starts nothing new."""
        run_id = run_id or new_id("wfrun")
        message = WorkflowTask(input=input, run_id=run_id, metadata=metadata or {})
        await self.js.publish(
            subjects.workflow(workflow), message.model_dump_json().encode(), headers={"Nats-Msg-Id": run_id}, timeout=10
        )
        return WorkflowRunHandle(self, workflow, run_id)

    async def answer(
        self,
        thread_id: str,
        run_id: str,
        *,
        tool_outputs: dict[str, str] | None = None,
        approvals: dict[str, bool | tuple[bool, str]] | None = None,
    ) -> dict[str, Any]:
        """Answer a parked run (`thread.run.requires_action`): outputs by call id, or approvals by call
        id (True, False, or (False, "why")). Returns the run, queued again."""
        answer = RunAnswer(
            thread_id=thread_id,
            run_id=run_id,
            tool_outputs=[ToolOutputAnswer(tool_call_id=k, output=v) for k, v in tool_outputs.items()]
            if tool_outputs is not None
            else None,
            approvals=[
                ToolApprovalAnswer(
                    tool_call_id=k,
                    approve=v if isinstance(v, bool) else v[0],
                    reason=None if isinstance(v, bool) else v[1],
                )
                for k, v in approvals.items()
            ]
            if approvals is not None
            else None,
        )
        reply = await self.nc.request(subjects.RUN_ANSWER, answer.model_dump_json().encode(), timeout=30)
        envelope = Reply[dict].model_validate_json(reply.data)
        if not envelope.ok or envelope.result is None:
            error = envelope.error or BusError(code="internal_error", message="empty reply")
            raise TaskError(error.code, error.message, error.param)
        return envelope.result

    async def ask(
        self,
        agent: str,
        input: str | list[dict[str, Any]] | dict[str, Any],
        *,
        thread_id: str | None = None,
        metadata: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> TaskResult:
        """Run a task and wait for its result in one request/reply (`ossa.ask.<agent>`)."""
        message = self._task(input, thread_id=thread_id, metadata=metadata)
        try:
            reply = await self.nc.request(
                subjects.ask(agent),
                message.model_dump_json(exclude_none=True).encode(),
                timeout=timeout or self.timeout,
            )
        except nats.errors.NoRespondersError as exc:
            raise TaskError("unavailable", "no executor is running") from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise TaskError("timeout", "no result in time") from exc
        envelope = Reply[TaskResult].model_validate_json(reply.data)
        if not envelope.ok or envelope.result is None:
            error = envelope.error or BusError(code="internal_error", message="empty reply")
            raise TaskError(error.code, error.message, error.param)
        return envelope.result
