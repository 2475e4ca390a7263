"""`concurrency.group`: runs of one group go one at a time, across every runner.

The group's holder is `group.<workflow>.<hash of the group's name>` in `ossa_workflow_runs`, taken
with compare-and-set. A run that finds its group held waits, queued (its message kept in progress),
until the holder ends; with `cancel_in_progress: true` it cancels the holder instead of waiting for
it. A holder that ended without letting go (its runner was killed) is replaced when it is found ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from nats.aio.client import Client
from nats.js.errors import KeyWrongLastSequenceError
from pydantic import BaseModel

from ossabus.contracts import subjects
from ossabus.contracts.workflow import WorkflowRun
from ossabus.store import kv as kvs
from ossabus.store.workflow_runs import WorkflowRuns

WAIT_S = 1.0


class Holder(BaseModel):
    workflow: str
    run_id: str


def group_key(workflow: str, group: str) -> str:
    return f"group.{subjects.token(workflow)}.{hashlib.sha256(group.encode()).hexdigest()[:24]}"


async def hold(nc: Client, runs: WorkflowRuns, run: WorkflowRun, group: str, cancel_in_progress: bool) -> str | None:
    """Wait until `run` holds `group`: the key to let go of; None when the run was cancelled meanwhile."""
    key = group_key(run.workflow, group)
    mine = Holder(workflow=run.workflow, run_id=run.id).model_dump_json().encode()
    asked_to_cancel: str | None = None
    while True:
        current = await kvs.read(runs.kv, key, Holder)
        try:
            if current is None:
                await runs.kv.create(key, mine)
                return key
            holder, revision = current
            if holder.run_id == run.id:
                return key
            held = await runs.get(holder.workflow, holder.run_id)
            if held is None or held.terminal:
                await runs.kv.update(key, mine, last=revision)
                return key
        except KeyWrongLastSequenceError:
            continue
        if cancel_in_progress and asked_to_cancel != holder.run_id:
            asked_to_cancel = holder.run_id
            await nc.publish(subjects.workflow_control(holder.run_id, "cancel"), b"")
        await asyncio.sleep(WAIT_S)
        own = await runs.get(run.workflow, run.id)
        if own is None or own.terminal or own.status == "cancelling":
            return None


async def let_go(runs: WorkflowRuns, key: str, run_id: str) -> None:
    current = await kvs.read(runs.kv, key, Holder)
    if current is not None and current[0].run_id == run_id:
        with contextlib.suppress(KeyWrongLastSequenceError):
            await runs.kv.delete(key, last=current[1])
