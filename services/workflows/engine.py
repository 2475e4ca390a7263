"""Carrying one workflow run: walking its steps in dependency order, each finished step stored first.

The walk is the same on every delivery of the run: a step whose state in the record is final is not
run again (its stored output is used, its failure handled as it was the first time), a step that
was running is picked up where it was (its attempt's run is found by id and awaited), and anything
else runs now. That is what makes a killed runner's successor finish the run with no step twice.

Failures: an attempt that fails is retried per the step's `retry` (for the listed error codes
only, when some are listed); then the step's `on_error` decides: `fail` (the default) stops the
workflow, `continue` records the failure and goes on, `goto` skips to the named step of the block
(the run still ends failed: the error was handled, not undone), `compensate` runs the step's
compensation first. A workflow whose `error_handling.on_failure` is `compensate` runs its
`compensation_steps` once a step has stopped it; `continue` makes every step failure non-fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout

from ossabus.contracts import expressions, subjects
from ossabus.contracts.workflow import STEP_DONE, WorkflowError, WorkflowRun, WorkflowStep
from ossabus.contracts.workflow_plan import Plan, Step, dependencies, max_iterations, max_step_runs
from ossabus.runtime.carriers import cancel_all
from ossabus.runtime.child_runs import ChildRuns, StepError, WaitedTooLong, attempt_ids, step_output
from ossabus.runtime.events import RunEvents
from ossabus.runtime.task_runs import schema_errors
from ossabus.store.workflow_runs import WorkflowRuns

log = logging.getLogger(__name__)
DECISION_RECHECK_S = 2.0


def max_output_bytes() -> int:
    """What one step's output may weigh in the run record (which is written whole at every step)."""
    return int(os.environ.get("OSSABUS_WORKFLOW_MAX_OUTPUT_BYTES", str(256 * 1024)))


class StepFailure(Exception):
    """A step failed for good and its policy stops the block (and, unless handled, the workflow)."""

    def __init__(self, error: WorkflowError):
        super().__init__(error.message)
        self.error = error


class Goto(Exception):
    def __init__(self, target: str):
        super().__init__(target)
        self.target = target


@dataclass
class Frame:
    """Where a block runs: the key prefix of its steps' states (a loop iteration's `each[2].`), its
    variables (`item`, `index`) and the outputs its steps can read."""

    prefix: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    parent: Frame | None = None

    def child(self, prefix: str, variables: dict[str, Any]) -> Frame:
        return Frame(prefix=prefix, variables=variables, parent=self)

    def steps(self) -> dict[str, dict[str, Any]]:
        outer = self.parent.steps() if self.parent else {}
        return {**outer, **self.seen}

    def all_variables(self) -> dict[str, Any]:
        outer = self.parent.all_variables() if self.parent else {}
        return {**outer, **self.variables}


def _now() -> int:
    return int(time.time())


class Carrier:
    def __init__(self, nc: Client, runs: WorkflowRuns, children: ChildRuns, plan: Plan, run: WorkflowRun):
        self.nc, self.runs, self.children, self.plan, self.run = nc, runs, children, plan, run
        self.events = RunEvents(nc, run.workflow, run.id)
        self.lock = asyncio.Lock()
        self.step_runs = 0
        self.in_flight: dict[str, tuple[str, str]] = {}  # step key -> (thread, run) of its attempt
        self.context_variables: dict[str, Any] = dict(plan.variables)
        self.handled_error: WorkflowError | None = None

    # --- the record ---------------------------------------------------------------------------------

    async def _save(self, change: Callable[[WorkflowRun], None]) -> WorkflowRun:
        async with self.lock:

            def apply(current: WorkflowRun) -> WorkflowRun:
                change(current)
                return current

            stored = await self.runs.update(self.run.workflow, self.run.id, apply)
            if stored is not None:
                self.run = stored
            return self.run

    async def _put_step(self, state: WorkflowStep, event: str | None = None, usage: dict | None = None) -> None:
        """Store the step's state (and the usage of its latest run, added to the step's and the run's
        in the same write: one write per change of a step, which is what a step costs)."""
        if usage:
            state.usage = _plus(state.usage or {}, usage)

        def change(current: WorkflowRun) -> None:
            if usage:
                current.usage = _plus(current.usage, usage)
            for i, existing in enumerate(current.steps):
                if existing.id == state.id:
                    current.steps[i] = state
                    return
            current.steps.append(state)

        await self._save(change)
        if event:
            await self.events.emit(
                f"workflow.step.{event}", {**state.model_dump(mode="json"), "workflow_run_id": self.run.id}
            )

    def _state(self, key: str, step: Step) -> WorkflowStep:
        found = self.run.step(key)
        return found.model_copy(deep=True) if found else WorkflowStep(id=key, name=step.name, kind=step.kind)

    # --- the walk ----------------------------------------------------------------------------------

    def scope(self, frame: Frame) -> dict[str, Any]:
        run = self.run
        error = self.handled_error.model_dump() if self.handled_error else None
        steps = frame.steps()
        return {
            **steps,  # a bare step id reads that step too (`review.status == "approved"`)
            "workflow": {"input": run.input, "run_id": run.id, "name": run.workflow, "error": error},
            "inputs": run.input,
            "input": run.input,
            "steps": steps,
            "context": {"variables": self.context_variables, "run_id": run.id},
            **frame.all_variables(),
        }

    def group_name(self) -> str | None:
        """`concurrency.group` with its expressions filled in (`content-review-${{ workflow.input.id }}`)."""
        if not self.plan.concurrency_group:
            return None
        try:
            return expressions.as_text(expressions.render(self.plan.concurrency_group, self.scope(Frame())))
        except expressions.ExpressionError:
            return self.plan.concurrency_group

    async def carry(self) -> WorkflowRun:
        """Run the workflow to its end (or raise: cancelled, lease lost, shutting down)."""
        if self.run.status == "queued":

            def started(r: WorkflowRun) -> None:
                r.status, r.started_at = "in_progress", _now()

            await self._save(started)
            await self.events.emit("workflow.run.in_progress", self.run)
        top = Frame()
        remaining = (self.run.deadline - time.time()) if self.run.deadline else None
        limit = asyncio.timeout(max(remaining, 0) if remaining is not None else None)
        try:
            async with limit:
                if remaining is not None and remaining <= 0:
                    await asyncio.sleep(1)  # already past its deadline (resumed late): the timeout says so
                last = await self.block(self.plan.steps, top)
        except StepFailure as failure:
            if self.plan.on_failure == "compensate":
                with contextlib.suppress(StepFailure):
                    await self.block(self.plan.compensation, top)
            return await self.end("failed", error=failure.error)
        except TimeoutError:
            if not limit.expired():
                raise  # a bus operation timed out (NATS restarting): the message is carried again later
            await self.stop_steps()
            seconds = int(self.plan.timeout_seconds or 0)
            return await self.end(
                "failed", error=WorkflowError(code="timeout", message=f"the workflow did not finish within {seconds} s")
            )
        if self.handled_error is not None:
            return await self.end("failed", error=self.handled_error)
        try:
            output = expressions.render(self.plan.output, self.scope(top)) if self.plan.output is not None else last
        except expressions.ExpressionError as exc:
            return await self.end("failed", error=WorkflowError(code="invalid_output", message=f"spec.output: {exc}"))
        if self.plan.outputs_schema and output is not None:
            problems = schema_errors(self.plan.outputs_schema, output)
            if problems:
                error = WorkflowError(
                    code="invalid_output",
                    message=f"the output does not match the workflow's outputs schema: {problems[0]}",
                )
                return await self.end("failed", error=error, output=output)
        return await self.end("completed", output=output)

    async def end(self, status: str, *, error: WorkflowError | None = None, output: Any = None) -> WorkflowRun:
        def change(r: WorkflowRun) -> None:
            r.status, r.last_error, r.output = status, error, output  # type: ignore[assignment]
            r.completed_at = _now()
            if status == "cancelled":
                r.cancelled_at = r.completed_at

        await self._save(change)
        await self.events.emit(f"workflow.run.{status}", self.run)
        return self.run

    async def cancelled(self) -> WorkflowRun:
        await self.stop_steps()
        return await self.end("cancelled")

    async def stop_steps(self) -> None:
        """Cancel the runs of the steps still going, and record those steps cancelled."""
        await self.cancel_children()
        for state in self.run.steps:
            if state.status in ("in_progress", "requires_action"):
                state = state.model_copy(update={"status": "cancelled", "completed_at": _now()})
                await self._put_step(state, "cancelled")

    async def cancel_children(self) -> None:
        for thread_id, run_id in list(self.in_flight.values()):
            with contextlib.suppress(Exception):
                await self.children.cancel(thread_id, run_id)

    async def block(self, steps: list[Step], frame: Frame) -> Any:
        """Run a block's steps in dependency order, at once where they allow; the output of its last
        listed step that produced one."""
        deps = dependencies(steps)
        by_id = {s.id: s for s in steps}
        pending = [s.id for s in steps]
        running: dict[asyncio.Task, str] = {}
        finished: set[str] = set()
        try:
            while pending or running:
                for step_id in [s for s in pending if all(d in finished for d in deps[s])]:
                    pending.remove(step_id)
                    running[asyncio.create_task(self.step(by_id[step_id], frame))] = step_id
                if not running:
                    raise RuntimeError(f"steps {pending} can never start")  # excluded by the plan's checks
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step_id = running.pop(task)
                    try:
                        task.result()
                    except Goto as jump:
                        # skip what has not started, except the target and what follows it
                        keep = _downstream(jump.target, deps)
                        for other in [s for s in pending if s not in keep]:
                            pending.remove(other)
                            await self._skip(by_id[other], frame, "skipped: an earlier step failed and jumped past it")
                            finished.add(other)
                        deps[jump.target] = []
                    finished.add(step_id)
        finally:
            await cancel_all(running)
        for step in reversed(steps):
            seen = frame.seen.get(step.id)
            if seen and seen["status"] == "completed":
                return seen["output"]
        return None

    async def _skip(self, step: Step, frame: Frame, reason: str | None = None) -> None:
        key = frame.prefix + step.id
        state = self._state(key, step)
        if state.status not in STEP_DONE:
            state.status, state.completed_at = "skipped", _now()
            if reason:
                state.last_error = WorkflowError(code="skipped", message=reason, step=key)
            await self._put_step(state, "skipped")
        frame.seen[step.id] = {"status": "skipped", "output": None}

    async def step(self, step: Step, frame: Frame) -> None:
        """Run one step (or take its stored outcome), then apply its failure policy."""
        key = frame.prefix + step.id
        state = self._state(key, step)
        if state.status not in STEP_DONE:
            state = await self._execute(step, frame, key, state)
        frame.seen[step.id] = {
            "status": state.status,
            "output": state.output,
            "error": state.last_error and state.last_error.model_dump(),
        }
        if step.output_to and state.status == "completed":
            self.context_variables[step.output_to] = state.output
        if state.status != "failed":
            return
        error = state.last_error or WorkflowError(code="failed", message=f"step {key} failed", step=key)
        if step.on_error == "continue" or self.plan.on_failure == "continue":
            return
        if step.on_error == "goto" and step.goto:
            self.handled_error = error
            raise Goto(step.goto)
        if step.on_error == "compensate" and step.compensation is not None:
            with contextlib.suppress(StepFailure):
                await self.step(step.compensation, frame)
        raise StepFailure(error)

    async def _execute(self, step: Step, frame: Frame, key: str, state: WorkflowStep) -> WorkflowStep:
        self.step_runs += 1
        if self.step_runs > max_step_runs():
            raise StepFailure(
                WorkflowError(
                    code="too_many_steps",
                    message=f"the run reached {max_step_runs()} steps (OSSABUS_WORKFLOW_MAX_STEPS)",
                    step=key,
                )
            )
        scope = self.scope(frame)
        try:
            if (
                step.condition is not None
                and state.status == "pending"
                and not expressions.condition(step.condition, scope)
            ):
                await self._skip(step, frame)
                return self._state(key, step)
            unmet = [d for d in step.depends_on if frame.seen.get(d, {}).get("status") == "skipped"]
            if unmet and step.condition is None and state.status == "pending":
                await self._skip(step, frame, f"skipped: it depends on {', '.join(unmet)}, which was skipped")
                return self._state(key, step)
        except expressions.ExpressionError as exc:
            return await self._fail(
                state, WorkflowError(code="invalid_expression", message=f"condition: {exc}", step=key)
            )
        if state.status == "pending" and (step.kind not in ("Agent", "Task") or step.approval is not None):
            state.status, state.started_at = "in_progress", _now()
            await self._put_step(state, "in_progress")
        usage = None
        try:
            if step.approval is not None:
                state = await self._approval(step, key, state)
                if state.status == "failed" or step.kind == "Approval":
                    return state
            if step.kind in ("Agent", "Task"):
                output, usage = await self._attempts(step, frame, key, state)
            elif step.kind == "Parallel":
                await self._together([self.step(child, frame) for child in step.children])
                output = {c.id: frame.seen.get(c.id, {}).get("output") for c in step.children}
            elif step.kind == "Conditional":
                output = await self._conditional(step, frame, key)
            elif step.kind == "Loop":
                output = await self._loop(step, frame, key)
            else:
                output = None
        except StepError as error:
            failed = WorkflowError(code=error.code, message=error.message, step=key)
            return await self._fail(self._state(key, step), failed, error.usage)
        except expressions.ExpressionError as exc:
            return await self._fail(
                self._state(key, step), WorkflowError(code="invalid_expression", message=str(exc), step=key)
            )
        except StepFailure as inner:
            if step.kind in ("Agent", "Task"):
                raise
            return await self._fail(self._state(key, step), inner.error)
        size = len(json.dumps(output, default=str))
        if size > max_output_bytes():
            limit = f"{max_output_bytes()} (OSSABUS_WORKFLOW_MAX_OUTPUT_BYTES)"
            message = f"the step's output is {size} bytes; a step keeps at most {limit}"
            too_large = WorkflowError(code="output_too_large", message=message, step=key)
            return await self._fail(self._state(key, step), too_large, usage)
        done = self._state(key, step)
        done.status, done.output, done.completed_at = "completed", output, _now()
        await self._put_step(done, "completed", usage)
        return done

    async def _fail(self, state: WorkflowStep, error: WorkflowError, usage: dict | None = None) -> WorkflowStep:
        state.status, state.last_error, state.completed_at = "failed", error, _now()
        await self._put_step(state, "failed", usage)
        return state

    async def _attempts(self, step: Step, frame: Frame, key: str, state: WorkflowStep) -> tuple[Any, dict | None]:
        """The output of the step's first successful attempt, and that attempt's usage (not yet stored);
        StepError (with its attempt's usage) when the attempts are spent."""
        assert step.ref is not None
        value = expressions.render(step.input, self.scope(frame))
        metadata = {"workflow": self.run.workflow, "workflow_run_id": self.run.id, "workflow_step": key[:512]}
        attempt = max(state.attempts, 1)
        spent: dict | None = None  # usage of the failed attempt before this one
        while True:
            thread_id, run_id = attempt_ids(self.run.id, key, attempt)
            if state.attempts < attempt or state.run_id != run_id:
                starting = state.status == "pending"
                if starting:
                    state.status, state.started_at = "in_progress", _now()
                state.attempts, state.thread_id, state.run_id = attempt, thread_id, run_id
                await self._put_step(state, "in_progress" if starting else None, spent)
            self.in_flight[key] = (thread_id, run_id)
            try:
                record = await self.children.record(step.ref)
                result = await self.children.run(
                    record,
                    value,
                    thread_id,
                    run_id,
                    project=self.run.project or "default",
                    metadata=metadata,
                    wait_s=step.timeout_seconds,
                )
                error = None
                if result.status != "completed" or result.last_error:
                    failure = result.last_error or {}
                    code = failure.get("code") or result.status
                    error = StepError(code, failure.get("message") or f"the step's run ended {result.status}")
            except WaitedTooLong:
                with contextlib.suppress(Exception):
                    await self.children.cancel(thread_id, run_id)
                error = StepError("timeout", f"the step did not finish within {step.timeout_seconds:g} s")
                result = None
            # (not popped when the carrier is cancelled: cancelling the workflow stops this run too)
            self.in_flight.pop(key, None)
            spent = result.usage if result is not None else None
            state = self._state(key, step)
            if error is None:
                assert result is not None
                return step_output(result), spent
            if not error.retryable or attempt >= step.retry.max_attempts or not step.retry.retries(error.code):
                error.usage = spent
                raise error
            log.info("workflow %s step %s attempt %d failed (%s); retrying", self.run.id, key, attempt, error.code)
            await asyncio.sleep(step.retry.delay_s(attempt))
            attempt += 1

    async def _conditional(self, step: Step, frame: Frame, key: str) -> Any:
        scope = self.scope(frame)
        chosen, branch = None, None
        for i, (condition, steps) in enumerate(step.branches):
            if expressions.condition(condition, scope):
                chosen, branch = steps, i
                break
        if chosen is None and step.otherwise:
            chosen, branch = step.otherwise, -1
        state = self._state(key, step)
        if state.branch != branch:
            state.branch = branch
            await self._put_step(state)
        return await self.block(chosen, frame) if chosen else None

    async def _loop(self, step: Step, frame: Frame, key: str) -> list[Any]:
        assert step.loop is not None
        items = expressions.render(
            step.loop.over if "${" in step.loop.over else f"${{{{ {step.loop.over} }}}}", self.scope(frame)
        )
        if isinstance(items, dict):
            items = [{"key": k, "value": v} for k, v in items.items()]
        if not isinstance(items, list):
            raise StepError(
                "invalid_expression", f"loop.over gives {expressions.kind_of(items)}, not a list", retryable=False
            )
        if len(items) > max_iterations():
            raise StepError(
                "loop_too_long",
                f"loop.over gives {len(items)} items; a loop makes at most {max_iterations()} iterations "
                "(OSSABUS_WORKFLOW_MAX_ITERATIONS)",
                retryable=False,
            )
        gate = asyncio.Semaphore(step.loop.parallelism)
        outputs: list[Any] = [None] * len(items)

        async def iteration(i: int, item: Any) -> None:
            async with gate:
                inner = frame.child(f"{key}[{i}].", {step.loop.item: item, step.loop.index: i})
                outputs[i] = await self.block(step.body, inner)

        await self._together([iteration(i, item) for i, item in enumerate(items)])
        return outputs

    async def _together(self, work: list) -> None:
        """Run at once; the first failure stops the others (a jump out of a group is its failure)."""
        tasks = [asyncio.create_task(w) for w in work]
        try:
            for next_done in asyncio.as_completed(tasks):
                try:
                    await next_done
                except Goto:
                    assert self.handled_error is not None
                    raise StepFailure(self.handled_error) from None
        finally:
            await cancel_all(tasks)

    async def _approval(self, step: Step, key: str, state: WorkflowStep) -> WorkflowStep:
        """Wait for a person's decision on this step (recorded through the API, announced on the
        step's control subject; the record is also read every few seconds)."""
        if state.approval is None and state.status != "requires_action":
            state.status = "requires_action"
            await self._put_step(state, "requires_action")
            await self._save(lambda r: _set_status(r, "requires_action"))
            await self.events.emit("workflow.run.requires_action", self.run)
        subscription = await self.nc.subscribe(subjects.workflow_control(self.run.id, "decided"))
        try:
            while True:
                current = await self.runs.get(self.run.workflow, self.run.id)
                found = current.step(key) if current else None
                if found is not None and found.approval is not None:
                    break
                with contextlib.suppress(NatsTimeout):
                    await subscription.next_msg(timeout=DECISION_RECHECK_S)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        decision = found.approval
        await self._save(lambda r: _set_status(r, "in_progress") if r.status == "requires_action" else None)
        state = self._state(key, step)
        state.approval = decision
        if not decision.approved:
            reason = f": {decision.reason}" if decision.reason else ""
            return await self._fail(
                state, WorkflowError(code="rejected", message=f"the step was rejected{reason}", step=key)
            )
        if step.kind == "Approval":
            state.status, state.output, state.completed_at = "completed", decision.model_dump(mode="json"), _now()
            await self._put_step(state, "completed")
        else:
            state.status = "in_progress"
            await self._put_step(state, "in_progress")
        return state


def _set_status(run: WorkflowRun, status: str) -> None:
    run.status = status  # type: ignore[assignment]


def _plus(total: dict[str, int], more: dict[str, Any]) -> dict[str, int]:
    summed = dict(total)
    for name, value in more.items():
        if isinstance(value, int):
            summed[name] = summed.get(name, 0) + value
    return summed


def _downstream(target: str, deps: dict[str, list[str]]) -> set[str]:
    """`target` and every step that (transitively) waits for it."""
    found = {target}
    changed = True
    while changed:
        changed = False
        for step, before in deps.items():
            if step not in found and any(d in found for d in before):
                found.add(step)
                changed = True
    return found
