"""Turning a task (an input for an agent or a Task manifest) into a run, and the run into its result.

Shared by the executor (task messages from other systems) and the workflow runner (Agent and Task
steps): both start the same ordinary run, on the same thread ids derived from what makes the work
unique, so a second delivery finds the run the first one started.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from nats.aio.client import Client

from ossabus.contracts.bus import ManifestRecord, TaskMessage, TaskResult
from ossabus.contracts.ids import fixed_id
from ossabus.contracts.openai_objects import Run, Thread
from ossabus.runtime.events import RunEvents
from ossabus.store.kv import Conflict
from ossabus.store.messages import text_message
from ossabus.store.runs import new_run
from ossabus.store.state import State


class TaskRejected(Exception):
    """The task cannot run: unknown agent, invalid input. `code` maps to a BusError code."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def schema_errors(schema: dict[str, Any], value: Any) -> list[str]:
    validator = validator_for(schema, default=Draft202012Validator)(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(value)]


async def start_run(
    nc: Client,
    state: State,
    record: ManifestRecord,
    task: TaskMessage,
    thread_id: str,
    run_id: str,
    published_ms: int | None = None,
    project: str | None = None,
) -> Run | None:
    """The run for this task (created now, or found from an earlier delivery); None while its
    thread is busy with another run. A new thread belongs to `project` (else `default`)."""
    existing = await state.get_run(thread_id, run_id)
    if existing is not None:
        return existing
    messages, params = prepare(record, task)
    if await state.get_thread(thread_id) is None:
        with contextlib.suppress(Conflict):  # another task for this new thread created it a moment ago
            await state.create_thread(Thread(id=thread_id, created_at=_now(), metadata=task.metadata, project=project))
    if await state.claim_thread(thread_id, run_id) is not None:
        return None
    # A second delivery of the task may get here too (its first one stalled past the ack wait):
    # ids fixed by the run make its messages replace the first one's, and the run is created once.
    at_ms = published_ms or int(time.time() * 1000)
    for n, (role, text) in enumerate(messages):
        fixed = fixed_id("msg", at_ms + n, f"{run_id}:{n}")
        await state.put_message(text_message(thread_id, role, text, message_id=fixed))
    run = new_run(thread_id, record, params, run_id=run_id)
    stored = await state.create_run(run)
    if stored is not run:
        return stored  # the other delivery made it first (and may have carried it on)
    events = RunEvents(nc, thread_id, run_id)
    await events.emit("thread.run.created", run)
    await events.emit("thread.run.queued", run)
    return run


def prepare(record: ManifestRecord, task: TaskMessage) -> tuple[list[tuple[str, str]], dict[str, Any]]:
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


async def summarize(state: State, record: ManifestRecord, run: Run) -> TaskResult:
    """The run's result: its last assistant message, and a Task's output checked against its schema."""
    messages = [m for m in await state.list_messages(run.thread_id) if m.run_id == run.id]
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
    return result


def _now() -> int:
    return int(time.time())
