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

from nats.aio.client import Client

from ossabus.contracts import subjects
from ossabus.contracts.bus import ManifestRecord, RunEvent, TaskMessage, TaskResult
from ossabus.contracts.ids import derived_id, new_id
from ossabus.contracts.openai_objects import Run
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.bus import BusFailure
from ossabus.runtime.task_runs import TaskRejected, start_run, summarize
from ossabus.store.kv import TRANSIENT
from ossabus.store.state import State

__all__ = ["TaskRejected", "Tasks", "derived_id", "task_ids"]

RESULT_ATTEMPTS = 20  # about 10 s of publishing a task's result before leaving it to a redelivery


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


class Tasks:
    def __init__(self, nc: Client, state: State, agents: AgentDirectory):
        self.nc, self.state, self.agents = nc, state, agents

    async def start(
        self, agent: str, task: TaskMessage, thread_id: str, run_id: str, published_ms: int | None = None
    ) -> tuple[Run, ManifestRecord] | None:
        """The run for this task (created now, or found from an earlier delivery); None while its
        thread is busy with another run."""
        record = await self._agent(agent)
        run = await start_run(self.nc, self.state, record, task, thread_id, run_id, published_ms)
        return (run, record) if run is not None else None

    async def _agent(self, agent: str) -> ManifestRecord:
        try:
            record = await self.agents.record(name=agent)
        except BusFailure as exc:
            if exc.error.code == "not_found":
                raise TaskRejected("not_found", f"no agent named {agent!r}", "agent") from exc
            raise
        if record.kind == "Workflow":
            raise TaskRejected(
                "invalid_request", f"{agent!r} is a Workflow: publish its runs on {subjects.workflow(agent)}", "agent"
            )
        return record

    async def result(self, record: ManifestRecord, run: Run) -> TaskResult:
        """Summarise the run (its last assistant message, validated structured output) and announce it."""
        result = await summarize(self.state, record, run)
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
