"""Task messages from other systems: turning one into a run, and the run into a result.

A task's run and thread ids are derived from what makes the message unique (the ids it gives,
else its `Nats-Msg-Id`, else its sequence in the work-queue stream), so a duplicate or a
redelivered message finds the run it already started instead of starting another.

A thread runs one run at a time: a task for a busy thread waits (its message is redelivered a
second later). Executors consume concurrently, so two tasks queued together for one thread run in
either order; publish the next after the previous result when order matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from nats.aio.client import Client

from ossabus.contracts import subjects
from ossabus.contracts.bus import ManifestRecord, RunEvent, TaskMessage, TaskResult
from ossabus.contracts.ids import derived_id, fixed_id, new_id
from ossabus.contracts.openai_objects import Run, Thread
from ossabus.executor.agents import AgentDirectory
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.events import RunEvents
from ossabus.store.kv import TRANSIENT, Conflict
from ossabus.store.messages import text_message
from ossabus.store.runs import new_run
from ossabus.store.state import State

RESULT_ATTEMPTS = 20  # about 10 s of publishing a task's result before leaving it to a redelivery


class TaskRejected(Exception):
    """The task cannot run: unknown agent, invalid input. `code` maps to a BusError code."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def task_ids(task: TaskMessage, seed: str | None) -> tuple[str, str]:
    """(thread_id, run_id): as given, else derived from `seed`, else new."""
    for value, name in ((task.thread_id, "thread_id"), (task.run_id, "run_id")):
        if value is not None:
            try:
                subjects.token(value)
            except subjects.InvalidSubjectToken as exc:
                raise TaskRejected(
                    "invalid_request", f"{name} {value!r} may hold only letters, digits, _ and -", name
                ) from exc
    thread_id = task.thread_id or (derived_id("thread", seed) if seed else new_id("thread"))
    run_id = task.run_id or (derived_id("run", seed) if seed else new_id("run"))
    return thread_id, run_id


def schema_errors(schema: dict[str, Any], value: Any) -> list[str]:
    validator = validator_for(schema, default=Draft202012Validator)(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(value)]


class Tasks:
    def __init__(self, nc: Client, state: State, agents: AgentDirectory):
        self.nc, self.state, self.agents = nc, state, agents

    async def start(
        self, agent: str, task: TaskMessage, thread_id: str, run_id: str, published_ms: int | None = None
    ) -> tuple[Run, ManifestRecord] | None:
        """The run for this task (created now, or found from an earlier delivery); None while its
        thread is busy with another run."""
        record = await self._agent(agent)
        existing = await self.state.get_run(thread_id, run_id)
        if existing is not None:
            return existing, record
        messages, params = self._prepare(record, task)
        if await self.state.get_thread(thread_id) is None:
            with contextlib.suppress(Conflict):  # another task for this new thread created it a moment ago
                await self.state.create_thread(Thread(id=thread_id, created_at=_now(), metadata=task.metadata))
        if await self.state.claim_thread(thread_id, run_id) is not None:
            return None
        # A second delivery of the task may get here too (its first one stalled past the ack wait):
        # ids fixed by the run make its messages replace the first one's, and the run is created once.
        at_ms = published_ms or int(time.time() * 1000)
        for n, (role, text) in enumerate(messages):
            fixed = fixed_id("msg", at_ms + n, f"{run_id}:{n}")
            await self.state.put_message(text_message(thread_id, role, text, message_id=fixed))
        run = new_run(thread_id, record, params, run_id=run_id)
        stored = await self.state.create_run(run)
        if stored is not run:
            return stored, record  # the other delivery made it first (and may have carried it on)
        events = RunEvents(self.nc, thread_id, run_id)
        await events.emit("thread.run.created", run)
        await events.emit("thread.run.queued", run)
        return run, record

    async def _agent(self, agent: str) -> ManifestRecord:
        try:
            record = await self.agents.record(name=agent)
        except BusFailure as exc:
            if exc.error.code == "not_found":
                raise TaskRejected("not_found", f"no agent named {agent!r}", "agent") from exc
            raise
        if record.kind == "Workflow":
            raise TaskRejected(
                "invalid_request", f"{agent!r} is a Workflow; workflows do not run as tasks yet", "agent"
            )
        return record

    def _prepare(self, record: ManifestRecord, task: TaskMessage) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        """The thread messages and run parameters a task becomes; TaskRejected for input that does not fit."""
        params: dict[str, Any] = {"metadata": task.metadata}
        extra = [task.additional_instructions] if task.additional_instructions else []
        definition = record.definition
        if record.kind == "Task":
            settings = definition.task
            value = task.input
            if isinstance(value, str):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            if settings and settings.input_schema:
                problems = schema_errors(settings.input_schema, value)
                if problems:
                    raise TaskRejected(
                        "invalid_request", f"input does not match the task's input schema: {problems[0]}", "input"
                    )
            if settings and settings.output_schema:
                name = re.sub(r"[^a-zA-Z0-9_-]", "_", record.name)[:64]
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": settings.output_schema},
                }
            messages = [("user", value if isinstance(value, str) else json.dumps(value))]
        elif isinstance(task.input, dict):
            raise TaskRejected(
                "invalid_request", "agents take text or a message list; only Task manifests take an object", "input"
            )
        elif isinstance(task.input, str):
            if not task.input.strip():
                raise TaskRejected("invalid_request", "input is empty", "input")
            messages = [("user", task.input)]
        else:
            if not task.input:
                raise TaskRejected("invalid_request", "input is an empty message list", "input")
            messages = []
            for m in task.input:
                text = (
                    m.content
                    if isinstance(m.content, str)
                    else "".join(str(p.get("text", "")) for p in m.content if isinstance(p, dict))
                )
                if m.role in ("system", "developer"):
                    extra.append(text)
                else:
                    messages.append((m.role, text))
            if not messages:
                raise TaskRejected("invalid_request", "the message list has no user or assistant message", "input")
        if extra:
            params["additional_instructions"] = "\n\n".join(extra)
        return messages, params

    async def result(self, record: ManifestRecord, run: Run) -> TaskResult:
        """Summarise the run (its last assistant message, validated structured output) and announce it."""
        messages = [m for m in await self.state.list_messages(run.thread_id) if m.run_id == run.id]
        text = messages[-1].text if messages else None
        result = TaskResult(
            agent=record.name,
            thread_id=run.thread_id,
            run_id=run.id,
            status=run.status,
            output_text=text,
            usage=run.usage.model_dump() if run.usage else None,
            last_error=run.last_error.model_dump() if run.last_error else None,
            incomplete_details=run.incomplete_details.model_dump() if run.incomplete_details else None,
            required_action=run.required_action.model_dump(mode="json") if run.required_action else None,
        )
        settings = record.definition.task
        if record.kind == "Task" and run.status == "completed" and text is not None:
            try:
                result.output = json.loads(text)
            except json.JSONDecodeError:
                result.last_error = {"code": "invalid_output", "message": "the model's answer is not JSON"}
            if result.output is not None and settings and settings.output_schema:
                problems = schema_errors(settings.output_schema, result.output)
                if problems:
                    result.last_error = {
                        "code": "invalid_output",
                        "message": f"output does not match the task's output schema: {problems[0]}",
                    }
        event = RunEvent(
            event=subjects.TASK_RESULT_EVENT,
            thread_id=run.thread_id,
            run_id=run.id,
            data=result.model_dump(mode="json"),
        )
        # an ended run's result is announced once (a redelivery that announces it again is dropped);
        # a parked run's (requires_action) each time it parks
        headers = {"Nats-Msg-Id": f"{run.id}.{subjects.TASK_RESULT_EVENT}"} if run.terminal else None
        subject = subjects.run_event(run.thread_id, run.id, subjects.TASK_RESULT_EVENT)
        data = event.model_dump_json().encode()
        for attempt in range(RESULT_ATTEMPTS):  # NATS may still be settling after an outage
            try:
                await self.nc.jetstream().publish(subject, data, timeout=5, headers=headers)
                break
            except TRANSIENT:
                if attempt == RESULT_ATTEMPTS - 1:
                    raise  # not acknowledged: the task's redelivery announces it
                await asyncio.sleep(0.5)
        return result

    async def reject(self, thread_id: str, run_id: str, error: TaskRejected, task_subject: str) -> None:
        """Say why a task will not run, on the run's own subject, so its publisher hears it."""
        event = RunEvent(
            event="error",
            thread_id=thread_id,
            run_id=run_id,
            data={"code": error.code, "message": error.message, "param": error.param, "task_subject": task_subject},
        )
        await self.nc.jetstream().publish(
            subjects.run_event(thread_id, run_id, "error"), event.model_dump_json().encode(), timeout=5
        )


def _now() -> int:
    return int(time.time())
