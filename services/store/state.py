"""Threads, messages, runs and steps: the OpenAI objects themselves, stored as the API returns them.

Keys (see `contracts.subjects`): threads `<thread>`, messages `<thread>.<msg>`, runs `<thread>.<run>`,
steps `<thread>.<run>.<step>`, and `active.<thread>` holding the thread's one active run. Ids sort by
creation, so a key-ordered scan is a creation-ordered list.

Writes to messages, runs and steps made by a run's carrier are fenced by its lease (`store.leases`):
a carrier that lost the run to another cannot write a second answer.

While a carrier holds a run (`carrying`), it is the only writer of that run's steps (outputs and
approvals are recorded only while no one carries it) and of its thread's messages (the API refuses
new messages while a thread has an active run), so it lists each from the store once and then keeps
the list itself: a listing through a consumer costs six JetStream round trips, and a run listed its
steps four times and its messages at every turn (bench/runs.py counts them).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from ossabus.contracts import subjects
from ossabus.contracts.openai_objects import Message, Run, RunStep, Thread
from ossabus.store import kv as kvs
from ossabus.store import turns
from ossabus.store.kv import Conflict
from ossabus.store.leases import fenced_write


class ActiveRunRecord(BaseModel):
    """Value of `active.<thread>`: the run that holds the thread."""

    run_id: str
    claimed_at: float = Field(default_factory=time.time)


# A claim whose run is not stored yet is a run being created (claim first, then write the run), not
# an abandoned one, for this long.
CLAIM_GRACE_S = 30.0


@dataclass
class _Carried:
    thread_id: str
    run_id: str
    steps: dict[str, RunStep] | None = None  # by id, once listed
    messages: dict[str, Message] | None = None  # the thread's, by id, once listed
    listed: int = 0  # listings that reached the store (one of each, while carried)

    def holds(self, thread_id: str, run_id: str) -> bool:
        return (self.thread_id, self.run_id) == (thread_id, run_id)


_CARRIED: contextvars.ContextVar[_Carried | None] = contextvars.ContextVar("carried", default=None)


@contextlib.contextmanager
def carrying(thread_id: str, run_id: str) -> Iterator[_Carried]:
    """The current task carries this run: its steps are listed from the store once, then kept."""
    carried = _Carried(thread_id, run_id)
    token = _CARRIED.set(carried)
    try:
        yield carried
    finally:
        _CARRIED.reset(token)


def _carried(thread_id: str, run_id: str) -> _Carried | None:
    carried = _CARRIED.get()
    return carried if carried is not None and carried.holds(thread_id, run_id) else None


def _carried_thread(thread_id: str) -> _Carried | None:
    carried = _CARRIED.get()
    return carried if carried is not None and carried.thread_id == thread_id else None


def _keep_message(thread_id: str, message: Message | None, message_id: str) -> None:
    carried = _carried_thread(thread_id)
    if carried is None or carried.messages is None:
        return
    if message is None:
        carried.messages.pop(message_id, None)
    else:
        carried.messages[message_id] = message.model_copy(deep=True)


class State:
    """Typed access to the state buckets; one instance per process, shared by its services."""

    def __init__(self, threads: KeyValue, messages: KeyValue, runs: KeyValue):
        self.threads_kv, self.messages_kv, self.runs_kv = threads, messages, runs

    @classmethod
    async def open(cls, js: JetStreamContext) -> State:
        return cls(
            await kvs.leader_reads(js, await js.key_value(subjects.THREADS_BUCKET)),
            await kvs.leader_reads(js, await js.key_value(subjects.MESSAGES_BUCKET)),
            await kvs.leader_reads(js, await js.key_value(subjects.RUNS_BUCKET)),
        )

    # threads -----------------------------------------------------------------------------------------
    async def create_thread(self, thread: Thread) -> Thread:
        await kvs.create(self.threads_kv, subjects.token(thread.id), thread)
        return thread

    async def get_thread(self, thread_id: str) -> Thread | None:
        found = await kvs.read(self.threads_kv, subjects.token(thread_id), Thread)
        return found[0] if found else None

    async def update_thread(self, thread_id: str, change) -> Thread | None:
        return await kvs.update(self.threads_kv, subjects.token(thread_id), Thread, change)

    async def delete_thread(self, thread_id: str) -> None:
        """The thread, then its messages, runs and steps (children first would leave an orphan-free
        prefix behind only if we crashed in between; the thread going first makes it unreachable)."""
        await kvs.delete(self.threads_kv, subjects.token(thread_id))
        for message in await self.list_messages(thread_id):
            await kvs.delete(self.messages_kv, subjects.message_key(thread_id, message.id))
        for run in await self.list_runs(thread_id):
            for step in await self.list_steps(thread_id, run.id):
                await kvs.delete(self.runs_kv, subjects.step_key(thread_id, run.id, step.id))
            await kvs.delete(self.runs_kv, subjects.run_key(thread_id, run.id))
        await turns.forget_turns(self.runs_kv, thread_id)
        await kvs.delete(self.threads_kv, subjects.active_run_key(thread_id))

    # messages ----------------------------------------------------------------------------------------
    async def put_message(self, message: Message) -> Message:
        await fenced_write(
            lambda: kvs.put(self.messages_kv, subjects.message_key(message.thread_id, message.id), message)
        )
        _keep_message(message.thread_id, message, message.id)
        return message

    async def get_message(self, thread_id: str, message_id: str) -> Message | None:
        found = await kvs.read(self.messages_kv, subjects.message_key(thread_id, message_id), Message)
        return found[0] if found else None

    async def update_message(self, thread_id: str, message_id: str, change) -> Message | None:
        key = subjects.message_key(thread_id, message_id)
        updated = await fenced_write(lambda: kvs.update(self.messages_kv, key, Message, change))
        _keep_message(thread_id, updated, message_id)
        return updated

    async def delete_message(self, thread_id: str, message_id: str) -> None:
        await fenced_write(lambda: kvs.delete(self.messages_kv, subjects.message_key(thread_id, message_id)))
        _keep_message(thread_id, None, message_id)

    async def list_messages(self, thread_id: str) -> list[Message]:
        """The thread's messages in creation order; copies, so callers may change them."""
        carried = _carried_thread(thread_id)
        if carried is None:
            return await kvs.scan(self.messages_kv, subjects.thread_messages(thread_id), Message)
        if carried.messages is None:
            listed = await kvs.scan(self.messages_kv, subjects.thread_messages(thread_id), Message)
            carried.messages, carried.listed = {m.id: m for m in listed}, carried.listed + 1
        return [carried.messages[key].model_copy(deep=True) for key in sorted(carried.messages)]

    # runs ----------------------------------------------------------------------------------------------
    async def put_run(self, run: Run) -> Run:
        await fenced_write(lambda: kvs.put(self.runs_kv, subjects.run_key(run.thread_id, run.id), run))
        return run

    async def create_run(self, run: Run) -> Run:
        """Store a new run, or return the one already stored under its id (made by a concurrent
        delivery of the same task: the first one wins, nothing is overwritten)."""
        try:
            await kvs.create(self.runs_kv, subjects.run_key(run.thread_id, run.id), run)
            return run
        except Conflict:
            existing = await self.get_run(run.thread_id, run.id)
            assert existing is not None, "a run's record is never deleted while its thread exists"
            return existing

    async def get_run(self, thread_id: str, run_id: str) -> Run | None:
        found = await kvs.read(self.runs_kv, subjects.run_key(thread_id, run_id), Run)
        return found[0] if found else None

    async def update_run(self, thread_id: str, run_id: str, change) -> Run | None:
        return await fenced_write(lambda: kvs.update(self.runs_kv, subjects.run_key(thread_id, run_id), Run, change))

    async def list_runs(self, thread_id: str) -> list[Run]:
        runs = await kvs.scan(self.runs_kv, subjects.thread_runs(thread_id), Run)
        return [r for r in runs if r.object == "thread.run"]

    # steps ---------------------------------------------------------------------------------------------
    async def put_step(self, step: RunStep) -> RunStep:
        await fenced_write(lambda: kvs.put(self.runs_kv, subjects.step_key(step.thread_id, step.run_id, step.id), step))
        carried = _carried(step.thread_id, step.run_id)
        if carried is not None and carried.steps is not None:
            carried.steps[step.id] = step.model_copy(deep=True)
        return step

    async def get_step(self, thread_id: str, run_id: str, step_id: str) -> RunStep | None:
        found = await kvs.read(self.runs_kv, subjects.step_key(thread_id, run_id, step_id), RunStep)
        return found[0] if found else None

    async def delete_step(self, thread_id: str, run_id: str, step_id: str) -> None:
        await fenced_write(lambda: kvs.delete(self.runs_kv, subjects.step_key(thread_id, run_id, step_id)))
        carried = _carried(thread_id, run_id)
        if carried is not None and carried.steps is not None:
            carried.steps.pop(step_id, None)

    async def list_steps(self, thread_id: str, run_id: str) -> list[RunStep]:
        """The run's steps in creation order (ids sort so); copies, so callers may change them."""
        carried = _carried(thread_id, run_id)
        if carried is None:
            return await kvs.scan(self.runs_kv, subjects.run_steps(thread_id, run_id), RunStep)
        if carried.steps is None:
            listed = await kvs.scan(self.runs_kv, subjects.run_steps(thread_id, run_id), RunStep)
            carried.steps, carried.listed = {step.id: step for step in listed}, carried.listed + 1
        return [carried.steps[key].model_copy(deep=True) for key in sorted(carried.steps)]

    # the one active run per thread ------------------------------------------------------------------------
    async def claim_thread(self, thread_id: str, run_id: str) -> str | None:
        """Make `run_id` the thread's active run; return the id of another run still active, if any."""
        key = subjects.active_run_key(thread_id)
        for _ in range(kvs.CAS_ATTEMPTS):
            current = await kvs.read(self.threads_kv, key, ActiveRunRecord)
            if current is None:
                try:
                    await kvs.create(self.threads_kv, key, ActiveRunRecord(run_id=run_id))
                    return None
                except Conflict:
                    continue
            holder, revision = current
            run = await self.get_run(thread_id, holder.run_id)
            being_created = run is None and time.time() - holder.claimed_at < CLAIM_GRACE_S
            if holder.run_id != run_id and (being_created or (run is not None and not run.terminal)):
                return holder.run_id
            try:  # the holder finished (or vanished) without releasing: take over
                await self.threads_kv.update(
                    key, ActiveRunRecord(run_id=run_id).model_dump_json().encode(), last=revision
                )
                return None
            except Exception:
                continue
        raise Conflict(key)

    async def active_run(self, thread_id: str) -> str | None:
        """The id of the thread's run that is not yet terminal, if any."""
        current = await kvs.read(self.threads_kv, subjects.active_run_key(thread_id), ActiveRunRecord)
        if current is None:
            return None
        run = await self.get_run(thread_id, current[0].run_id)
        return run.id if run is not None and not run.terminal else None

    async def release_thread(self, thread_id: str, run_id: str) -> None:
        key = subjects.active_run_key(thread_id)

        async def release() -> None:
            current = await kvs.read(self.threads_kv, key, ActiveRunRecord)
            if current and current[0].run_id == run_id:
                with contextlib.suppress(KeyWrongLastSequenceError):
                    await self.threads_kv.delete(key, last=current[1])

        await fenced_write(release)
