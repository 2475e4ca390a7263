"""Workflow run records in `ossa_workflow_runs` (`run.<workflow>.<run>`), with their leases beside them.

Every change is a compare-and-set of the whole record, made under the carrier's fence when a runner
writes (store/leases.py): the record is the truth a resumed runner starts from, so a carrier that
lost the run must not write one more step into it.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from ossabus.contracts import subjects
from ossabus.contracts.workflow import WorkflowRun
from ossabus.store import kv as kvs
from ossabus.store.leases import fenced_write


class WorkflowRuns:
    def __init__(self, kv: KeyValue):
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> WorkflowRuns:
        return cls(await js.key_value(subjects.WORKFLOW_RUNS_BUCKET))

    async def create(self, run: WorkflowRun) -> WorkflowRun:
        """Store a new run; the stored one when a run of this id exists (a duplicate request)."""
        key = subjects.workflow_run_key(run.workflow, run.id)
        try:
            await fenced_write(lambda: kvs.create(self.kv, key, run))
        except kvs.Conflict:
            existing = await self.get(run.workflow, run.id)
            if existing is None:
                raise
            return existing
        return run

    async def get(self, workflow: str, run_id: str) -> WorkflowRun | None:
        found = await kvs.read(self.kv, subjects.workflow_run_key(workflow, run_id), WorkflowRun)
        return found[0] if found else None

    async def update(
        self, workflow: str, run_id: str, change: Callable[[WorkflowRun], WorkflowRun | None]
    ) -> WorkflowRun | None:
        key = subjects.workflow_run_key(workflow, run_id)
        return await fenced_write(lambda: kvs.update(self.kv, key, WorkflowRun, change))

    async def list(self, workflow: str) -> list[WorkflowRun]:
        return await kvs.scan(self.kv, subjects.workflow_runs(workflow), WorkflowRun)
