"""Runs started by other work and awaited to their end: a workflow's Agent and Task steps, and the
tasks an agent delegates to another. Both are ordinary runs on the executors' work queue.

Their thread and run ids derive from what asked for them (a workflow run, step and attempt; a
parent run and tool call), so whoever resumes the asking work finds the run its predecessor started
(and waits for it, or takes its result) instead of starting a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout

from ossabus.contracts import subjects
from ossabus.contracts.bus import ManifestRecord, TaskMessage, TaskResult
from ossabus.contracts.ids import derived_id
from ossabus.contracts.openai_objects import Run
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.events import RunEvents
from ossabus.runtime.task_runs import TaskRejected, start_run, summarize
from ossabus.runtime.work_queue import queue_run
from ossabus.store.state import State

RECHECK_S = 2.0  # a run's end is also looked up this often, in case its event was missed (a reconnect)


class StepError(Exception):
    """One attempt of a step failed; `retryable` is False for mistakes a retry cannot fix."""

    def __init__(self, code: str, message: str, retryable: bool = True):
        super().__init__(message)
        self.code, self.message, self.retryable = code, message, retryable
        self.usage: dict | None = None  # what the failed attempt's run spent


class WaitedTooLong(Exception):
    """The run did not end within the time its caller gave it (it goes on until cancelled)."""


def attempt_ids(workflow_run_id: str, step_key: str, attempt: int) -> tuple[str, str]:
    seed = f"{workflow_run_id}:{step_key}:{attempt}"
    return derived_id("thread", seed), derived_id("run", seed)


def as_agent_input(value: Any) -> str:
    """What an agent is told: text as it is, anything else as JSON (agents take text)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "(no input)"
    return json.dumps(value, indent=2, ensure_ascii=False)


def step_output(result: TaskResult) -> Any:
    """A Task's checked object; an agent's answer as the JSON it holds, when it is JSON, else as text."""
    if result.output is not None:
        return result.output
    text = (result.output_text or "").strip()
    if text[:1] in ("{", "[") or text.startswith("```json"):
        body = text.removeprefix("```json").removesuffix("```").strip()
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(body)
    return result.output_text


class ChildRuns:
    def __init__(self, nc: Client, state: State, agents: AgentDirectory):
        self.nc, self.state, self.agents = nc, state, agents
        self.starting: dict[str, asyncio.Future] = {}  # run id -> its start, while it is being made

    async def record(self, ref: str) -> ManifestRecord:
        """The agent or task a step names; StepError when there is none."""
        try:
            record = await self.agents.record(name=ref)
        except BusFailure as exc:
            if exc.error.code == "not_found":
                raise StepError("not_found", f"no agent or task named {ref!r} is registered", retryable=False) from exc
            raise StepError("unavailable", exc.error.message) from exc
        if record.kind == "Workflow":
            raise StepError(
                "invalid_workflow", f"{ref!r} is a Workflow; a step runs an Agent or a Task", retryable=False
            )
        return record

    async def run(
        self,
        record: ManifestRecord,
        value: Any,
        thread_id: str,
        run_id: str,
        *,
        project: str,
        metadata: dict[str, str],
        principal: str = "workflow",
        wait_s: float | None = None,
    ) -> TaskResult:
        """Start (or find) the run and wait for its end (WaitedTooLong after `wait_s`); StepError when
        it cannot start. Starting is never cut half-way (a run made but not handed over would run with
        nobody waiting for it): a caller stopped meanwhile leaves it to finish, and `cancel` waits
        for it."""
        given = value if record.kind == "Task" and isinstance(value, dict | str) else as_agent_input(value)
        task = TaskMessage(input=given, metadata=metadata)
        subscription = await self.nc.subscribe(subjects.run_events_in_thread(thread_id, run_id))
        try:
            starting = self.starting.get(run_id)
            if starting is None:
                starting = asyncio.ensure_future(self._start(record, task, thread_id, run_id, project, principal))
                self.starting[run_id] = starting
                starting.add_done_callback(lambda _: self.starting.pop(run_id, None))
            await asyncio.shield(starting)
            limit = asyncio.timeout(wait_s)
            try:
                async with limit:
                    final = await self._ended(subscription, thread_id, run_id)
            except TimeoutError as exc:
                if limit.expired():
                    raise WaitedTooLong(run_id) from exc
                raise  # the bus did not answer (NATS restarting): not the caller's time limit
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        return await summarize(self.state, record, final)

    async def _start(
        self, record: ManifestRecord, task: TaskMessage, thread_id: str, run_id: str, project: str, principal: str
    ) -> Run:
        try:
            run = await start_run(self.nc, self.state, record, task, thread_id, run_id, project=project)
        except TaskRejected as exc:
            raise StepError(exc.code, exc.message, retryable=False) from exc
        if run is None:
            raise StepError("conflict", f"the step's thread {thread_id} is busy")
        if run.status == "queued":  # new, or its hand-over may not have happened: the message id dedupes
            await queue_run(
                self.nc.jetstream(), run, record, attempt=1, msg_id=f"{run.id}.1", principal=principal, project=project
            )
        return run

    async def _ended(self, subscription, thread_id: str, run_id: str) -> Run:
        while True:
            run = await self.state.get_run(thread_id, run_id)
            if run is not None and run.terminal:
                return run
            with contextlib.suppress(NatsTimeout):
                await subscription.next_msg(timeout=RECHECK_S)

    async def cancel(self, thread_id: str, run_id: str) -> None:
        """Stop a step's run: at once when nothing runs it, else by asking its executor."""
        starting = self.starting.get(run_id)
        if starting is not None:  # being made: cancel what it makes
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(starting), 30)

        def change(current: Run) -> Run | None:
            if current.terminal or current.status == "cancelling":
                return None
            if current.status == "requires_action":
                return current.model_copy(update={"status": "cancelled", "required_action": None})
            return current.model_copy(update={"status": "cancelling"})

        updated = await self.state.update_run(thread_id, run_id, change)
        if updated is None:
            return
        if updated.status == "cancelled":
            await RunEvents(self.nc, thread_id, run_id).emit("thread.run.cancelled", updated)
            await self.state.release_thread(thread_id, run_id)
        elif updated.status == "cancelling":
            await self.nc.publish(subjects.run_cancel(run_id), b"")
