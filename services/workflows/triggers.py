"""What starts workflow runs besides a caller: schedules and events from other systems.

Every runner watches every schedule, and a fire happens once however many runners there are: the
run a schedule starts has an id derived from the workflow, the trigger and the fire time, so the
runners that see the same fire start the same run (its record is created once; its work message has
the run's id as `Nats-Msg-Id`); `schedule.<workflow>.<n>` remembers the last fire time, so a fire is
not repeated after it and one missed while no runner lived is made up once, not once per minute
missed. Events from other systems arrive on `ossa.ext.>` (the OSSA_EXTERNAL_EVENTS stream, one
consumer the runners share); each event starts one run of every workflow whose trigger matches it
(its id derived from the event's stream sequence, so a redelivered event finds the runs it started).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from croniter import croniter
from nats.js.errors import KeyWrongLastSequenceError
from pydantic import BaseModel

from ossabus.contracts import expressions, subjects
from ossabus.contracts.bus import ListManifestsRequest, ManifestList, ManifestRecord
from ossabus.contracts.ids import derived_id
from ossabus.contracts.workflow_plan import Trigger
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.workflow_start import WorkflowRejected, plan_for
from ossabus.store import kv as kvs
from ossabus.store.workflow_runs import WorkflowRuns

log = logging.getLogger(__name__)
TICK_S = 1.0
REFRESH_S = 10.0  # the workflow list is read again this often (and at once after a registry change)

Start = Callable[[ManifestRecord, Any, str, dict[str, Any]], Awaitable[None]]


class ScheduleMark(BaseModel):
    schedule: str
    last: float


def matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: `*` one token, `>` the rest."""
    wanted, given = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(given) > i
        if i >= len(given) or (token != "*" and token != given[i]):
            return False
    return len(wanted) == len(given)


def passes(trigger: Trigger, payload: Any) -> bool:
    """An event trigger's `filter`: every key equal in the event (`expression`: true for `event`)."""
    for key, wanted in trigger.filter.items():
        if key == "expression" and isinstance(wanted, str):
            try:
                if not expressions.condition(wanted, {"event": payload}):
                    return False
            except expressions.ExpressionError:
                return False
        elif not isinstance(payload, dict) or payload.get(key) != wanted:
            return False
    return True


class Triggers:
    def __init__(self, agents: AgentDirectory, runs: WorkflowRuns, start: Start):
        self.agents, self.runs, self.start = agents, runs, start
        self.workflows: dict[str, tuple[ManifestRecord, list[Trigger]]] = {}
        self.refreshed_at = 0.0

    def changed(self) -> None:
        self.refreshed_at = 0.0

    async def refresh(self, max_age_s: float = REFRESH_S) -> None:
        if time.monotonic() - self.refreshed_at < max_age_s:
            return
        listing = await self.agents.bus.call(
            subjects.REGISTRY_LIST, ListManifestsRequest(kind="Workflow"), ManifestList
        )
        found: dict[str, tuple[ManifestRecord, list[Trigger]]] = {}
        for item in listing.data:
            try:
                record = await self.agents.record(name=item.name, min_version=item.version)
                plan = plan_for(record)
            except WorkflowRejected:
                continue
            except Exception:
                log.warning("could not read workflow %s for its triggers", item.name, exc_info=True)
                continue
            wanted = [t for t in plan.triggers if t.type in ("schedule", "event")]
            if wanted:
                found[record.name] = (record, wanted)
        self.workflows = found
        self.refreshed_at = time.monotonic()

    # --- schedules ----------------------------------------------------------------------------------

    async def run_schedules(self, stopped: asyncio.Event) -> None:
        while not stopped.is_set():
            with contextlib.suppress(Exception):
                await self.refresh()
            for name, (record, triggers) in list(self.workflows.items()):
                for n, trigger in enumerate(triggers):
                    if trigger.type == "schedule" and trigger.schedule:
                        try:
                            await self._fire_if_due(record, n, trigger.schedule)
                        except Exception:
                            log.warning("schedule %d of workflow %s could not fire", n, name, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), TICK_S)

    async def _fire_if_due(self, record: ManifestRecord, n: int, schedule: str) -> None:
        key = subjects.schedule_key(record.name, n)
        now = time.time()
        current = await kvs.read(self.runs.kv, key, ScheduleMark)
        if current is None or current[0].schedule != schedule:  # new, or changed: counted from now
            mark = ScheduleMark(schedule=schedule, last=now).model_dump_json().encode()
            with contextlib.suppress(KeyWrongLastSequenceError):
                if current is None:
                    await self.runs.kv.create(key, mark)
                else:
                    await self.runs.kv.update(key, mark, last=current[1])
            return
        mark, revision = current
        due = croniter(schedule, mark.last).get_next(float)
        if due > now:
            return
        while (following := croniter(schedule, due).get_next(float)) <= now:
            due = following  # fires missed while no runner lived are made up once
        run_id = derived_id("wfrun", f"schedule:{record.name}:{n}:{due}")
        await self.start(record, None, run_id, {"type": "schedule", "schedule": schedule, "at": int(due)})
        with contextlib.suppress(KeyWrongLastSequenceError):  # another runner moved it on: the same fire
            await self.runs.kv.update(
                key, ScheduleMark(schedule=schedule, last=due).model_dump_json().encode(), last=revision
            )

    # --- events -------------------------------------------------------------------------------------

    async def on_event(self, subject: str, sequence: int, data: bytes) -> None:
        """Start the runs an event asks for (once each, by id: see the module docstring)."""
        try:
            payload: Any = json.loads(data) if data else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = data.decode(errors="replace")
        await self.refresh()
        if not self._wanting(subject):  # maybe a workflow registered a moment ago
            await self.refresh(max_age_s=0.2)
        for name, n, record, trigger in self._wanting(subject):
            if passes(trigger, payload):
                run_id = derived_id("wfrun", f"event:{name}:{n}:{sequence}")
                await self.start(record, payload, run_id, {"type": "event", "subject": subject, "sequence": sequence})

    def _wanting(self, subject: str) -> list[tuple[str, int, ManifestRecord, Trigger]]:
        return [
            (name, n, record, trigger)
            for name, (record, triggers) in self.workflows.items()
            for n, trigger in enumerate(triggers)
            if trigger.type == "event" and trigger.subject and matches(trigger.subject, subject)
        ]
