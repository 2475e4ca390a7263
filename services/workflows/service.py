"""The workflow runner: takes workflow runs from their work queue and carries each to its end.

Ack policy, on purpose: MANUAL, as for runs. A workflow run's message is acknowledged when the run
has ended; while it is carried, `in_progress` tells JetStream it is held, and the run's lease
(`lease.<run>` in `ossa_workflow_runs`) fences every write, so a runner that stalls past the ack wait
and comes back writes nothing into a run another runner took over. A runner killed mid-run leaves
the message unacknowledged: another runner gets it after the ack wait and resumes from the record.
Waiting is cheap (a workflow run mostly waits for its steps' runs), so a runner carries up to
`OSSABUS_MAX_WORKFLOWS` runs at once, apart from the executors' run slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from faststream.nats.annotations import NatsMessage
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from ossabus.contracts import subjects
from ossabus.contracts.bus import BusError, ManifestChanged, Reply
from ossabus.contracts.ids import derived_id
from ossabus.contracts.workflow import WorkflowError, WorkflowRun, WorkflowRunRequest, WorkflowTask
from ossabus.contracts.workflow_plan import Plan
from ossabus.runtime.admission import admit, keep_in_progress, work_queue
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.bus import BusClient, BusFailure, validation_failure
from ossabus.runtime.carriers import Carriers, Stop, cancel_all
from ossabus.runtime.child_runs import ChildRuns
from ossabus.runtime.events import RunEvents
from ossabus.runtime.resilient_fetch import keep_fetching
from ossabus.runtime.service import Service
from ossabus.runtime.workflow_start import WorkflowRejected, launch, new_workflow_run, plan_for
from ossabus.store import kv as kvs
from ossabus.store.leases import LeaseLost, Leases, fenced, keep_lease
from ossabus.store.state import State
from ossabus.store.workflow_runs import WorkflowRuns
from ossabus.workflows import groups
from ossabus.workflows.engine import Carrier
from ossabus.workflows.triggers import Triggers

log = logging.getLogger(__name__)
NAME = "workflows"
MAX_DELIVER = 10  # a workflow resumes where it was: a few more deliveries than a run's are cheap
ENDED_RECHECK_S = 2.0


def max_workflows() -> int:
    return int(os.environ.get("OSSABUS_MAX_WORKFLOWS", "256"))


class WorkflowService(Service):
    name = NAME

    def __init__(self, settings):
        super().__init__(settings)
        self.slots = asyncio.Semaphore(max_workflows())
        self.inflight: set[asyncio.Task] = set()
        self.carriers = Carriers()
        self.work_queue = None
        self.agents: AgentDirectory | None = None
        self.runs: WorkflowRuns | None = None
        self.children: ChildRuns | None = None
        self.leases: Leases | None = None
        self.triggers: Triggers | None = None
        self.schedules: asyncio.Task | None = None
        self.stopped = asyncio.Event()
        self.external_events = None

    def register(self) -> None:
        sub = self.broker.subscriber
        self.work_queue = work_queue(
            self.broker,
            subjects.WORKFLOWS_ALL,
            subjects.WORKFLOWS_STREAM,
            subjects.WORKFLOW_CONSUMER,
            self.settings.ack_wait_s,
            MAX_DELIVER,
            max_ack_pending=self.settings.max_ack_pending,
        )
        self.work_queue(self.on_work)
        sub(subjects.WORKFLOW_ASK_ALL, queue=subjects.WORKFLOW_QUEUE, max_workers=max_workflows())(self.on_ask)
        sub(subjects.WORKFLOW_CONTROL_ALL)(self.on_control)
        sub(subjects.WORKFLOW_CONTROL_ALL, queue=subjects.WORKFLOW_QUEUE)(self.on_cancel_record)
        sub(subjects.REGISTRY_CHANGES_ALL)(self.on_registry_change)
        self.external_events = work_queue(
            self.broker,
            subjects.EXTERNAL_EVENTS_ALL,
            subjects.EXTERNAL_EVENTS_STREAM,
            subjects.TRIGGER_CONSUMER,
            self.settings.ack_wait_s,
            MAX_DELIVER,
        )
        self.external_events(self.on_external_event)

    async def started(self) -> None:
        keep_fetching(self.work_queue, "the workflow queue")
        nc = self.broker.connection
        js = nc.jetstream()
        self.agents = AgentDirectory(BusClient(self.broker, self.settings.request_timeout_s))
        self.runs = await WorkflowRuns.open(js)
        self.children = ChildRuns(nc, await State.open(js), self.agents)
        self.leases = Leases(self.runs.kv, self.settings.ack_wait_s)
        keep_fetching(self.external_events, "the external events")
        self.triggers = Triggers(self.agents, self.runs, self._start_triggered)
        self.schedules = asyncio.create_task(self.triggers.run_schedules(self.stopped))

    async def stopping(self) -> None:
        """Runs in flight are left unacknowledged: another runner resumes them from their records."""
        self.stopped.set()
        if self.schedules is not None:
            await asyncio.gather(self.schedules, return_exceptions=True)
        await cancel_all(list(self.inflight))

    # --- the work queue ----------------------------------------------------------------------------------

    async def on_work(self, msg: NatsMessage) -> None:
        await admit(self.slots, msg.raw_message, self.settings.ack_wait_s, lambda: self._handle(msg), self.inflight)

    async def _handle(self, msg: NatsMessage) -> None:
        raw = msg.raw_message
        keepalive = asyncio.create_task(keep_in_progress(raw, self.settings.ack_wait_s / 3))
        try:
            if self.runs is None:
                await raw.nak(delay=1)
                return
            try:
                pointer = WorkflowRunRequest.model_validate_json(msg.body)
            except ValidationError:
                pointer = await self._from_task(msg)
                if pointer is None:
                    return
            await self._carry(msg, pointer)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not handle workflow message %s", raw.subject)
            with contextlib.suppress(Exception):
                await raw.nak(delay=self.settings.redelivery_base_s)
        finally:
            keepalive.cancel()

    async def _from_task(self, msg: NatsMessage) -> WorkflowRunRequest | None:
        """A `WorkflowTask` from another system: its run's record (made once: the id derives from the
        message id, else the stream sequence). A task that cannot start is answered with an `error`
        event on the run's subjects and dropped."""
        assert self.runs is not None
        raw = msg.raw_message
        name = raw.subject.split(".", 2)[2]
        seed = (raw.headers or {}).get("Nats-Msg-Id") or f"{subjects.WORKFLOWS_STREAM}:{raw.metadata.sequence.stream}"
        run_id = derived_id("wfrun", seed)
        try:
            task = WorkflowTask.model_validate_json(msg.body)
            run_id = task.run_id or run_id
            existing = await self.runs.get(name, run_id) if subjects.is_token(run_id) else None
            if existing is not None:
                return WorkflowRunRequest(workflow_run_id=existing.id, workflow=name)
            record = await self._workflow(name)
            run = new_workflow_run(
                record, task.input, project="default", run_id=run_id, metadata=task.metadata, trigger={"type": "nats"}
            )
        except ValidationError as exc:
            await self._reject(name, run_id, validation_failure(exc).error)
            await msg.reject()
            return None
        except WorkflowRejected as exc:
            await self._reject(name, run_id, BusError(code=exc.code, message=exc.message, param=exc.param))  # type: ignore[arg-type]
            await msg.reject()
            return None
        stored = await launch(self.broker.connection, self.runs, run, queue=False)
        return WorkflowRunRequest(workflow_run_id=stored.id, workflow=name)

    async def _reject(self, name: str, run_id: str, error: BusError) -> None:
        thread = name if subjects.is_token(name) else "_"
        run = run_id if subjects.is_token(run_id) else "_"
        await RunEvents(self.broker.connection, thread, run).emit("error", error.model_dump(mode="json"))

    async def _workflow(self, name: str):
        assert self.agents is not None
        try:
            return await self.agents.record(name=name)
        except BusFailure as exc:
            if exc.error.code == "not_found":
                raise WorkflowRejected("not_found", f"no workflow named {name!r}", "name") from exc
            raise

    async def _carry(self, msg: NatsMessage, pointer: WorkflowRunRequest) -> None:
        assert self.runs is not None
        assert self.leases is not None
        assert self.children is not None
        raw = msg.raw_message
        run = await self.runs.get(pointer.workflow, pointer.workflow_run_id)
        if run is None:
            log.warning("workflow run %s does not exist; dropping its message", pointer.workflow_run_id)
            await msg.reject()
            return
        events = RunEvents(self.broker.connection, run.workflow, run.id)
        if run.terminal:
            await events.emit(f"workflow.run.{run.status}", run)  # its message id makes a repeat a no-op
            await msg.ack()
            return
        fence = await self.leases.acquire(run.id)
        if fence is None:
            await raw.nak(delay=self.leases.expires_in() + 0.5)
            return
        task = asyncio.current_task()
        assert task is not None
        self.carriers.carry(run.id, task)
        renewal = asyncio.create_task(
            keep_lease(fence, self.settings.ack_wait_s / 3, lambda: self.carriers.stop(run.id, Stop.LEASE_LOST))
        )
        carrier: Carrier | None = None
        held: str | None = None
        try:
            with fenced(fence):
                run = await self.runs.get(run.workflow, run.id) or run  # as of our lease
                try:
                    plan = plan_for(await self._workflow(run.workflow))
                except WorkflowRejected as exc:
                    carrier = Carrier(self.broker.connection, self.runs, self.children, Plan(steps=[]), run)
                    await carrier.end("failed", error=WorkflowError(code=exc.code, message=exc.message))
                    await msg.ack()
                    return
                carrier = Carrier(self.broker.connection, self.runs, self.children, plan, run)
                group = carrier.group_name()
                if group and not run.terminal and run.status != "cancelling" and not self.carriers.stopped(run.id):
                    held = await groups.hold(self.broker.connection, self.runs, run, group, plan.cancel_in_progress)
                    carrier.run = await self.runs.get(run.workflow, run.id) or run
                if carrier.run.status == "cancelling" or self.carriers.stopped(run.id) is Stop.CANCEL:
                    await carrier.cancelled()
                else:
                    await carrier.carry()
            await msg.ack()
        except LeaseLost:
            log.warning("workflow run %s: another runner took it over; stopped here without writing", run.id)
        except asyncio.CancelledError:
            why = self.carriers.took(run.id)
            if why is Stop.LEASE_LOST:
                return
            if why is None or carrier is None:
                raise  # shutting down (or stopped before it began): not acked, another runner resumes it
            with fenced(fence):
                await carrier.cancelled()
            await msg.ack()
        except Exception:
            attempts = raw.metadata.num_delivered
            log.exception("workflow run %s failed on delivery %d/%d", run.id, attempts, MAX_DELIVER)
            if attempts >= MAX_DELIVER and carrier is not None:
                with fenced(fence), contextlib.suppress(Exception):
                    error = WorkflowError(
                        code="server_error",
                        message="the workflow run failed repeatedly inside ossabus; see the runner's log",
                    )
                    await carrier.end("failed", error=error)
                await msg.ack()
                return
            await raw.nak(delay=min(self.settings.redelivery_base_s * 2 ** (attempts - 1), 30))
        finally:
            renewal.cancel()
            if held is not None:
                with contextlib.suppress(Exception):
                    await groups.let_go(self.runs, held, run.id)
            with contextlib.suppress(Exception):
                await fence.release()
            self.carriers.done(run.id)

    # --- control -----------------------------------------------------------------------------------------

    async def on_control(self, msg: NatsMessage) -> None:
        """`cancel`: stop the run if this runner carries it."""
        run_id, action = subjects.control_target(msg.raw_message.subject)
        if action != "cancel":
            return
        self.carriers.stop(run_id, Stop.CANCEL)

    async def on_cancel_record(self, msg: NatsMessage) -> None:
        """`cancel` from a NATS client: record `cancelling` (once, in one runner of the queue group),
        so a run nobody carries yet is cancelled when a runner picks it up."""
        run_id, action = subjects.control_target(msg.raw_message.subject)
        if action != "cancel" or self.runs is None:
            return
        if not subjects.is_token(run_id):
            return
        for run in await kvs.scan(self.runs.kv, f"run.*.{run_id}", WorkflowRun):
            if not run.terminal:
                await self.runs.update(run.workflow, run.id, _to_cancelling)

    async def on_registry_change(self, msg: NatsMessage) -> None:
        if self.agents is not None:
            with contextlib.suppress(ValidationError):
                self.agents.forget(ManifestChanged.model_validate_json(msg.body))
        if self.triggers is not None:
            self.triggers.changed()

    # --- triggers ----------------------------------------------------------------------------------------

    async def on_external_event(self, msg: NatsMessage) -> None:
        """An event from another system (`ossa.ext.>`): the runs of the workflows it triggers."""
        raw = msg.raw_message
        if self.triggers is None:
            await raw.nak(delay=1)
            return
        try:
            await self.triggers.on_event(raw.subject, raw.metadata.sequence.stream, msg.body)
        except Exception:
            log.exception("could not start the workflows of event %s", raw.subject)
            await raw.nak(delay=self.settings.redelivery_base_s)
            return
        await msg.ack()

    async def _start_triggered(self, record, value, run_id: str, trigger: dict) -> None:
        """A run a schedule or an event starts (in project `default`); once per id, however often asked."""
        assert self.runs is not None
        if await self.runs.get(record.name, run_id) is not None:
            return
        try:
            run = new_workflow_run(record, value, project="default", run_id=run_id, trigger=trigger)
        except WorkflowRejected as exc:
            log.warning(
                "workflow %s: its %s trigger could not start a run: %s", record.name, trigger["type"], exc.message
            )
            await self._reject(record.name, run_id, BusError(code=exc.code, message=exc.message, param=exc.param))  # type: ignore[arg-type]
            return
        await launch(self.broker.connection, self.runs, run)

    # --- request/reply -----------------------------------------------------------------------------------

    async def on_ask(self, msg: NatsMessage) -> dict:
        """`ossa.ask.workflow.<name>`: start a run (durably) and reply with it once it has ended."""
        if self.runs is None:
            return Reply.failure(BusError(code="unavailable", message="the workflow runner is starting")).model_dump()
        name = msg.raw_message.subject.split(".")[3]
        try:
            task = WorkflowTask.model_validate_json(msg.body)
            run = new_workflow_run(
                await self._workflow(name),
                task.input,
                project="default",
                run_id=task.run_id,
                metadata=task.metadata,
                trigger={"type": "nats"},
            )
        except ValidationError as exc:
            return Reply.failure(validation_failure(exc).error).model_dump(mode="json")
        except WorkflowRejected as exc:
            error = BusError(code=exc.code, message=exc.message, param=exc.param)  # type: ignore[arg-type]
            return Reply.failure(error).model_dump(mode="json")
        nc = self.broker.connection
        ended = await nc.subscribe(subjects.workflow_events(name, run.id))
        try:
            await launch(nc, self.runs, run)
            while True:
                current = await self.runs.get(name, run.id)
                if current is not None and current.terminal:
                    return Reply.success(current).model_dump(mode="json")
                with contextlib.suppress(NatsTimeout):
                    await ended.next_msg(timeout=ENDED_RECHECK_S)
        finally:
            with contextlib.suppress(Exception):
                await ended.unsubscribe()


def _to_cancelling(run: WorkflowRun) -> WorkflowRun | None:
    if run.terminal or run.status == "cancelling":
        return None
    return run.model_copy(update={"status": "cancelling"})
