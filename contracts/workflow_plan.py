"""What a Workflow manifest's steps mean: the step tree, each block's dependency graph, and the checks
that reject a workflow before it runs (cycles, unknown jump targets, unreadable expressions).

OSSA v0.3 (`agent_ref` / `task_ref`) and v0.4/v0.5 (`kind` + `ref`, Parallel / Conditional / Loop)
steps are read into one shape. Order within a block: a step runs after the steps in its `depends_on`;
without one, after the step listed before it (a list of steps is a pipeline, which is what every
shipped example means), or alongside the step it is `parallel_with`. A step also waits for every
step of its block whose output its expressions read. Steps in a Parallel group run at once; the
steps of a branch or of a loop's body are a block of their own.

A step with `approval` (an ossabus extension, since OSSA has no approval step) waits for a person's
decision through the API before it runs; a step with nothing but `approval` is a pure gate.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, Field

from ossabus.contracts import expressions

StepKind = Literal["Agent", "Task", "Parallel", "Conditional", "Loop", "Approval"]
ErrorAction = Literal["fail", "continue", "goto", "compensate"]
MAX_ATTEMPTS = 10
MAX_DELAY_MS = 60_000
STEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def max_iterations() -> int:
    """Iterations one Loop step may make: a list longer than this fails the step, instead of a
    workflow that runs (and spends) without end."""
    return int(os.environ.get("OSSABUS_WORKFLOW_MAX_ITERATIONS", "1000"))


def max_step_runs() -> int:
    """Steps one workflow run may execute in all (loops included)."""
    return int(os.environ.get("OSSABUS_WORKFLOW_MAX_STEPS", "10000"))


class Retry(BaseModel):
    max_attempts: int = 1
    backoff: Literal["fixed", "exponential", "linear"] = "exponential"
    initial_delay_ms: int = 1000
    max_delay_ms: int = MAX_DELAY_MS
    retryable_errors: list[str] = Field(default_factory=list)

    def delay_s(self, failed_attempts: int) -> float:
        base = self.initial_delay_ms
        if self.backoff == "exponential":
            base *= 2 ** (failed_attempts - 1)
        elif self.backoff == "linear":
            base *= failed_attempts
        return min(base, self.max_delay_ms) / 1000

    def retries(self, code: str | None) -> bool:
        if not self.retryable_errors:
            return True
        wanted = {e.lower() for e in self.retryable_errors}
        return (code or "").lower() in wanted or ("timeout" in wanted and "timeout" in (code or ""))


class Loop(BaseModel):
    over: str
    item: str = "item"
    index: str = "index"
    parallelism: int = 1


class Approval(BaseModel):
    message: str | None = None


class Step(BaseModel):
    id: str
    name: str | None = None
    kind: StepKind
    ref: str | None = None
    input: Any = None
    condition: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    parallel_with: str | None = None
    retry: Retry = Field(default_factory=Retry)
    timeout_seconds: float | None = None
    on_error: ErrorAction = "fail"
    goto: str | None = None
    compensation: Step | None = None
    output_to: str | None = None
    approval: Approval | None = None
    children: list[Step] = Field(default_factory=list, description="Parallel: the steps run at once.")
    branches: list[tuple[str, list[Step]]] = Field(default_factory=list)
    otherwise: list[Step] = Field(default_factory=list)
    loop: Loop | None = None
    body: list[Step] = Field(default_factory=list)


EVENT_PREFIX = "ossa.ext"  # event triggers listen here only: a manifest does not choose what it may hear
_SUBJECT_TOKEN = re.compile(r"^(?:[A-Za-z0-9_-]+|\*|>)$")


class Trigger(BaseModel):
    """`schedule` (cron: 5 fields, or 6 with seconds last), `event` (a subject under `ossa.ext.`),
    `webhook` (POST /v1/ossa/workflows/{name}/webhook, with the caller's API key) or `manual`."""

    type: Literal["manual", "schedule", "event", "webhook"]
    schedule: str | None = None
    subject: str | None = None
    filter: dict[str, Any] = Field(default_factory=dict)


class Plan(BaseModel):
    steps: list[Step]
    inputs_schema: dict[str, Any] | None = None
    outputs_schema: dict[str, Any] | None = None
    output: Any = Field(None, description="v0.3 `output`: expressions that make the workflow's output.")
    variables: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float | None = None
    on_failure: Literal["halt", "continue", "compensate"] = "halt"
    compensation: list[Step] = Field(default_factory=list)
    concurrency_group: str | None = None
    cancel_in_progress: bool = False
    triggers: list[Trigger] = Field(default_factory=list)


class PlanError(ValueError):
    """A workflow that cannot run. `wrong` is a mistake in the manifest (a cycle, a jump to nowhere,
    a retry out of bounds): the registry refuses it. Otherwise the manifest is valid OSSA in a form
    ossabus does not run (inline specs, an ADK layout without steps): it is kept, with a warning,
    and a run of it is refused."""

    def __init__(self, message: str, path: list[str | int], wrong: bool = True, code: str = "workflow.invalid"):
        super().__init__(message)
        self.message, self.path, self.wrong, self.code = message, path, wrong, code


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _kind(raw: dict) -> StepKind | None:
    kind = raw.get("kind")
    if isinstance(kind, str):
        return kind if kind in ("Agent", "Task", "Parallel", "Conditional", "Loop", "Approval") else None  # type: ignore[return-value]
    if "agent_ref" in raw:
        return "Agent"
    if "task_ref" in raw:
        return "Task"
    if "parallel" in raw:
        return "Parallel"
    if "branches" in raw:
        return "Conditional"
    if "loop" in raw:
        return "Loop"
    if "ref" in raw or isinstance(raw.get("agent"), str):
        return "Agent"
    if "approval" in raw:
        return "Approval"
    return None


def _retry(raw: Any, default: Retry, path: list[str | int]) -> Retry:
    raw = _dict(raw)
    if not raw:
        return default
    attempts = raw.get("max_attempts", 3)
    if not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        raise PlanError(f"retry.max_attempts must be an integer from 1 to {MAX_ATTEMPTS}", [*path, "max_attempts"])
    delay = raw.get("initial_delay_ms", 1000)
    if not isinstance(delay, int) or delay < 0:
        raise PlanError("retry.initial_delay_ms must be a non-negative integer", [*path, "initial_delay_ms"])
    backoff = raw.get("backoff_strategy") or raw.get("backoff") or "exponential"
    if backoff not in ("fixed", "exponential", "linear"):
        raise PlanError("retry backoff is fixed, exponential or linear", path)
    return Retry(
        max_attempts=attempts,
        backoff=backoff,
        initial_delay_ms=delay,
        max_delay_ms=min(int(raw.get("max_delay_ms") or MAX_DELAY_MS), MAX_DELAY_MS),
        retryable_errors=[str(e) for e in raw.get("retryable_errors") or []],
    )


def _steps(raw: Any, path: list[str | int], retry: Retry) -> list[Step]:
    if not isinstance(raw, list):
        raise PlanError("steps must be a list", path)
    return [_step(item, [*path, i], retry) for i, item in enumerate(raw)]


def _step(raw: Any, path: list[str | int], retry: Retry) -> Step:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise PlanError("a step needs an id", path, wrong=False)
    step_id = raw["id"]
    if not STEP_ID.fullmatch(step_id):
        raise PlanError(f"step id {step_id!r} may hold only letters, digits, _ and -", [*path, "id"])
    kind = _kind(raw)
    if kind is None:
        raise PlanError(
            f"step {step_id!r}: cannot tell what it runs (give kind, ref, parallel, branches or loop)", path
        )
    ref = raw.get("ref") or raw.get("agent_ref") or raw.get("task_ref") or raw.get("agent")
    if kind in ("Agent", "Task") and not isinstance(ref, str):
        if "inline" in raw:
            raise PlanError(
                f"step {step_id!r}: inline {kind} specs do not run here; "
                f"register the {kind} as a manifest and name it in ref",
                [*path, "inline"],
                wrong=False,
            )
        raise PlanError(f"step {step_id!r}: an {kind} step names its manifest in ref", path)
    depends = raw.get("depends_on") or []
    error = _dict(raw.get("on_error"))
    action = error.get("action", "fail")
    if raw.get("continue_on_error") is True:
        action = "continue"
    if action not in ("fail", "continue", "goto", "compensate"):
        raise PlanError(f"step {step_id!r}: on_error.action is fail, continue, goto or compensate", [*path, "on_error"])
    if action == "goto" and not isinstance(error.get("goto"), str):
        raise PlanError(f"step {step_id!r}: on_error goto names the step to go to", [*path, "on_error"])
    compensation = None
    if error.get("compensation") is not None:
        compensation = _step(error["compensation"], [*path, "on_error", "compensation"], Retry())
    if action == "compensate" and compensation is None:
        action = "fail"  # the workflow's own compensation steps run (error_handling.compensation_steps)
    output = raw.get("output")
    timeout = raw.get("timeout_seconds")
    step = Step(
        id=step_id,
        name=raw.get("name") if isinstance(raw.get("name"), str) else None,
        kind=kind,
        ref=manifest_name(ref) if isinstance(ref, str) else None,
        input=raw.get("input"),
        condition=raw.get("condition") if isinstance(raw.get("condition"), str) else None,
        depends_on=[depends] if isinstance(depends, str) else [str(d) for d in depends if d],
        parallel_with=raw.get("parallel_with") if isinstance(raw.get("parallel_with"), str) else None,
        retry=_retry(raw.get("retry"), retry, [*path, "retry"]),
        timeout_seconds=float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None,
        on_error=action,
        goto=error.get("goto") if action == "goto" else None,
        compensation=compensation,
        output_to=_dict(output).get("to") if isinstance(_dict(output).get("to"), str) else None,
        approval=Approval(message=_dict(raw.get("approval")).get("message")) if raw.get("approval") else None,
    )
    if kind == "Parallel":
        step.children = _steps(raw.get("parallel") or raw.get("steps") or [], [*path, "parallel"], retry)
        if not step.children:
            raise PlanError(f"step {step_id!r}: a Parallel step lists its steps in parallel", path)
    elif kind == "Conditional":
        for i, branch in enumerate(raw.get("branches") or []):
            branch = _dict(branch)
            if not isinstance(branch.get("condition"), str):
                raise PlanError(f"step {step_id!r}: every branch has a condition", [*path, "branches", i])
            step.branches.append(
                (branch["condition"], _steps(branch.get("steps") or [], [*path, "branches", i], retry))
            )
        step.otherwise = _steps(raw.get("else") or [], [*path, "else"], retry)
        if not step.branches:
            raise PlanError(f"step {step_id!r}: a Conditional step has branches", path)
    elif kind == "Loop":
        loop = _dict(raw.get("loop"))
        if not isinstance(loop.get("over"), str):
            raise PlanError(f"step {step_id!r}: loop.over is the expression of the list to go through", [*path, "loop"])
        parallelism = loop.get("parallelism", 1)
        if not isinstance(parallelism, int) or parallelism < 1:
            raise PlanError(f"step {step_id!r}: loop.parallelism is a positive integer", [*path, "loop"])
        step.loop = Loop(
            over=loop["over"],
            item=loop.get("as") or "item",
            index=loop.get("index") or "index",
            parallelism=parallelism,
        )
        step.body = _steps(raw.get("steps") or loop.get("steps") or [], [*path, "steps"], retry)
        if not step.body:
            raise PlanError(f"step {step_id!r}: a Loop step has steps to repeat", path)
    return step


def manifest_name(ref: str) -> str:
    """`./agents/content-reviewer.ossa.yaml` names the manifest `content-reviewer`; a plain name is itself."""
    if "/" not in ref and not ref.endswith((".yaml", ".yml", ".json")):
        return ref
    base = ref.rsplit("/", 1)[-1]
    for suffix in (".yaml", ".yml", ".json", ".ossa", ".agent", ".task"):
        base = base.removesuffix(suffix)
    for suffix in (".yaml", ".yml", ".json", ".ossa"):
        base = base.removesuffix(suffix)
    return base


def plan_of(spec: dict[str, Any]) -> Plan:
    """The plan of a Workflow's `spec`; PlanError for a workflow that cannot run as written."""
    handling = _dict(spec.get("error_handling"))
    policy = _dict(handling.get("retry_policy"))
    retry = _retry(policy, Retry(), ["spec", "error_handling", "retry_policy"]) if policy else Retry()
    steps = _steps(spec.get("steps") or [], ["spec", "steps"], retry)
    if not steps:
        raise PlanError("a workflow has at least one step in spec.steps", ["spec", "steps"], wrong=False)
    failure = handling.get("on_failure", "halt")
    on_failure = {"rollback": "compensate", "compensation": "compensate", "notify": "halt"}.get(failure, failure)
    if on_failure not in ("halt", "continue", "compensate"):
        on_failure = "halt"
    concurrency = _dict(spec.get("concurrency"))
    timeout = spec.get("timeout_seconds")
    plan = Plan(
        steps=steps,
        inputs_schema=spec.get("inputs") if isinstance(spec.get("inputs"), dict) else None,
        outputs_schema=spec.get("outputs") if isinstance(spec.get("outputs"), dict) else None,
        output=spec.get("output"),
        variables=_dict(_dict(spec.get("context")).get("variables")),
        timeout_seconds=float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None,
        on_failure=on_failure,
        compensation=_steps(
            handling.get("compensation_steps") or [], ["spec", "error_handling", "compensation_steps"], Retry()
        ),
        concurrency_group=concurrency.get("group") if isinstance(concurrency.get("group"), str) else None,
        cancel_in_progress=concurrency.get("cancel_in_progress") is True,
        triggers=_triggers(spec.get("triggers")),
    )
    _check(plan)
    return plan


def _triggers(raw: Any) -> list[Trigger]:
    found: list[Trigger] = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        item = _dict(item)
        path: list[str | int] = ["spec", "triggers", i]
        kind = item.get("type")
        if kind in ("cron", "schedule"):
            schedule = item.get("schedule") or item.get("cron")
            if not isinstance(schedule, str) or not croniter.is_valid(schedule):
                raise PlanError(f"trigger {i}: {schedule!r} is not a cron schedule", path)
            found.append(Trigger(type="schedule", schedule=schedule))
        elif kind == "event":
            names = item.get("events") if isinstance(item.get("events"), list) else [item.get("event")]
            subjects = (
                [item["subject"]]
                if isinstance(item.get("subject"), str)
                else [".".join(str(p) for p in (item.get("source"), name) if p) for name in names]
            )
            for subject in subjects:
                tokens = subject.split(".") if subject else []
                if not tokens or not all(_SUBJECT_TOKEN.fullmatch(t) for t in tokens) or ">" in tokens[:-1]:
                    raise PlanError(f"trigger {i}: {subject!r} is not a NATS subject", path)
                found.append(
                    Trigger(type="event", subject=f"{EVENT_PREFIX}.{subject}", filter=_dict(item.get("filter")))
                )
        elif kind in ("webhook", "manual"):
            found.append(Trigger(type=kind))
    return found


def every_step(steps: list[Step]) -> list[Step]:
    """Every step of a tree, depth first (children, branches, loop bodies, compensations)."""
    out: list[Step] = []
    for step in steps:
        out.append(step)
        nested = [*step.children, *(s for _, b in step.branches for s in b), *step.otherwise, *step.body]
        if step.compensation is not None:
            nested.append(step.compensation)
        out.extend(every_step(nested))
    return out


def read_steps(step: Step) -> set[str]:
    """Ids of the steps whose output this step's expressions read."""
    found: set[str] = set()
    values: list[Any] = [step.input, step.condition, step.loop.over if step.loop else None]
    values += [condition for condition, _ in step.branches]
    for value in values:
        for text in _strings(value):
            for body in expressions.expressions_in(text) or ([text] if value is step.condition else []):
                try:
                    node = expressions.parse(body)
                except expressions.ExpressionError:
                    continue
                found |= {path[1] for path in expressions.names(node) if path[0] == "steps" and len(path) > 1}
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def dependencies(block: list[Step]) -> dict[str, list[str]]:
    """Each step's predecessors within its block (see the module docstring)."""
    ids = [s.id for s in block]
    deps: dict[str, list[str]] = {}
    for i, step in enumerate(block):
        if step.depends_on:
            own = [d for d in step.depends_on if d in ids]
        elif step.parallel_with in ids:
            own = []  # filled below, once the partner's are known
        else:
            own = [ids[i - 1]] if i else []
        reads = [s for s in read_steps(step) if s in ids and s != step.id]
        deps[step.id] = list(dict.fromkeys([*own, *reads]))
    for step in block:
        if not step.depends_on and step.parallel_with in deps and step.parallel_with != step.id:
            partner = [d for d in deps[step.parallel_with] if d != step.id]
            deps[step.id] = list(dict.fromkeys([*partner, *deps[step.id]]))
    return deps


def _cycle(deps: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in deps.get(node, []):
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt) :], nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        trail.pop()
        state[node] = 2
        return None

    for node in deps:
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def _blocks(steps: list[Step]) -> list[list[Step]]:
    blocks = [steps]
    for step in steps:
        for nested in (step.children, *(b for _, b in step.branches), step.otherwise, step.body):
            if nested:
                blocks += _blocks(nested)
        if step.compensation is not None:
            blocks += _blocks([step.compensation])
    return blocks


def _check(plan: Plan) -> None:
    every = every_step(plan.steps) + every_step(plan.compensation)
    seen: set[str] = set()
    for step in every:
        if step.id in seen:
            raise PlanError(f"step id {step.id!r} is used twice", ["spec", "steps"], code="workflow.duplicate_step")
        seen.add(step.id)
    for block in _blocks(plan.steps):
        ids = {s.id for s in block}
        for step in block:
            for dep in step.depends_on:
                if dep not in ids:
                    where = (
                        "this workflow"
                        if dep not in seen
                        else "the same block (steps of a group depend on each other only)"
                    )
                    raise PlanError(
                        f"step {step.id!r} depends on {dep!r}, which is not a step of {where}",
                        ["spec", "steps"],
                        code="workflow.unknown_dependency",
                    )
            if step.goto is not None and step.goto not in ids:
                raise PlanError(
                    f"step {step.id!r}: on_error goto {step.goto!r} is not a step of its block", ["spec", "steps"]
                )
        cycle = _cycle(dependencies(block))
        if cycle:
            raise PlanError(f"the steps depend on each other in a circle: {' -> '.join(cycle)}", ["spec", "steps"])
