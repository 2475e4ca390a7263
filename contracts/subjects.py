"""The subject map: every NATS subject, stream, consumer and bucket name ossabus uses.

No other module writes a subject string. Subjects are named after OpenAI/OSSA event types so that
wildcards select what a consumer needs: `ossa.events.*.<run_id>.>` is one run,
`ossa.events.<thread_id>.>` one conversation.
"""

from __future__ import annotations

import re

PREFIX = "ossa"

# --- run events: ossa.events.<thread_id>.<run_id>.<event> ------------------------------------
EVENTS_ALL = f"{PREFIX}.events.>"
EVENTS_STREAM = "OSSA_EVENTS"

# --- work: ossa.tasks.<agent> ------------------------------------------------------------------
TASKS_ALL = f"{PREFIX}.tasks.>"
TASKS_STREAM = "OSSA_TASKS"
EXECUTOR_CONSUMER = "ossa-executors"
EXECUTOR_QUEUE = "ossa-executors"

# --- workflows: ossa.workflows.<name> (durable work), events ossa.events.<name>.<workflow_run>.> -----------
WORKFLOWS_ALL = f"{PREFIX}.workflows.>"
WORKFLOWS_STREAM = "OSSA_WORKFLOWS"
WORKFLOW_CONSUMER = "ossa-workflows"
WORKFLOW_QUEUE = "ossa-workflows"
WORKFLOW_ASK_ALL = f"{PREFIX}.ask.workflow.*"
WORKFLOW_CONTROL_ALL = f"{PREFIX}.control.workflows.*.*"
WORKFLOW_RUNS_BUCKET = "ossa_workflow_runs"  # run.<workflow>.<run>, lease.<run>, schedule.<workflow>.<n>
# events from other systems that start workflows (`type: event` triggers listen under this prefix only)
EXTERNAL_EVENTS_ALL = f"{PREFIX}.ext.>"
EXTERNAL_EVENTS_STREAM = "OSSA_EXTERNAL_EVENTS"
TRIGGER_CONSUMER = "ossa-workflow-triggers"


def schedule_key(workflow: str, trigger: int) -> str:
    """Key in the workflow runs bucket holding when a workflow's schedule last fired."""
    return f"schedule.{token(workflow)}.{trigger}"


def workflow(name: str) -> str:
    """Work-queue subject on which a run of workflow `name` waits for a runner."""
    return f"{PREFIX}.workflows.{token(name)}"


def workflow_ask(name: str) -> str:
    """Request/reply: start a run of workflow `name` and reply with it when it has ended."""
    return f"{PREFIX}.ask.workflow.{token(name)}"


def workflow_control(run_id: str, action: str) -> str:
    """Broadcast to the runner carrying `run_id`: `cancel`, or `decided` (a step's approval was recorded)."""
    return f"{PREFIX}.control.workflows.{token(run_id)}.{token(action)}"


def workflow_events(name: str, run_id: str) -> str:
    """Filter for every event of one workflow run."""
    return f"{PREFIX}.events.{token(name)}.{token(run_id)}.>"


def workflow_run_key(name: str, run_id: str) -> str:
    return f"run.{token(name)}.{token(run_id)}"


def workflow_runs(name: str) -> str:
    return f"run.{token(name)}.*"


# --- task request/reply: ossa.ask.<agent> (outside ossa.tasks.>, whose stream would answer with a PubAck)
ASK_ALL = f"{PREFIX}.ask.*"  # agents; workflows are ossa.ask.workflow.<name>
ASK_QUEUE = "ossa-executors"


def ask(agent: str) -> str:
    """Request/reply subject: a task whose reply is its TaskResult."""
    return f"{PREFIX}.ask.{token(agent)}"


# --- tools: ossa.tools.<name>, request/reply in a queue group ----------------------------------
TOOLS_ALL = f"{PREFIX}.tools.>"
DISPATCHER_CALL = f"{PREFIX}.dispatcher.call"
DISPATCHER_TOOLS = f"{PREFIX}.dispatcher.tools"
DISPATCHER_MCP_TOOLS = f"{PREFIX}.dispatcher.mcp.tools"
DISPATCHER_QUEUE = "ossa-dispatchers"

# --- registry: request/reply, one subject per operation ------------------------------------------
REGISTRY_LIST = f"{PREFIX}.registry.manifests.list"
REGISTRY_GET = f"{PREFIX}.registry.manifests.get"
REGISTRY_PUT = f"{PREFIX}.registry.manifests.put"
REGISTRY_DELETE = f"{PREFIX}.registry.manifests.delete"
REGISTRY_VALIDATE = f"{PREFIX}.registry.manifests.validate"
REGISTRY_STATUS = f"{PREFIX}.registry.status"
REGISTRY_QUEUE = "ossa-registry"
REGISTRY_CHANGES_ALL = f"{PREFIX}.registry.changed.>"
REGISTRY_STREAM = "OSSA_REGISTRY"

# --- telemetry -----------------------------------------------------------------------------------
TELEMETRY_USAGE = f"{PREFIX}.telemetry.usage"  # request/reply: usage and cost per agent, key and day
TELEMETRY_METRICS = f"{PREFIX}.telemetry.metrics"  # request/reply: the Prometheus text exposition
TELEMETRY_TOOLS = f"{PREFIX}.telemetry.tools"  # the dispatcher's report of each tool call (core NATS)
TELEMETRY_QUEUE = "ossa-telemetry"
TELEMETRY_EVENTS_CONSUMER = "ossa-telemetry-events"
TELEMETRY_USAGE_CONSUMER = "ossa-telemetry-usage"
# What the telemetry service reads of the run events: lifecycle events and each step's start.
TELEMETRY_EVENT_FILTERS = [f"{PREFIX}.events.*.*.thread.run.*", f"{PREFIX}.events.*.*.thread.run.step.created"]
# Usage of every model call, published by the executors into the OSSA_USAGE stream.
USAGE_ALL = f"{PREFIX}.usage.>"
USAGE_STREAM = "OSSA_USAGE"


def usage(agent: str | None) -> str:
    return f"{PREFIX}.usage.{token(agent) if agent else PLAIN_LLM_AGENT}"


def usage_key(day: str, agent: str, project: str | None = None, principal: str | None = None) -> str:
    """KV key of a usage counter: per agent and day (what daily budgets count), per project within it,
    and per API key within the project."""
    key = f"day.{day}.agent.{token(agent)}"
    if project is None:
        return key
    key = f"{key}.project.{token(project)}"
    return f"{key}.key.{token(principal)}" if principal else key


# Runs of an agent (by assistant id) holding one of its `maxConcurrentRequests` slots (KV: ossa_runs).
def concurrency_key(assistant_id: str) -> str:
    return f"slots.{token(assistant_id)}"


# --- state: JetStream key-value buckets and the object store -------------------------------------
MANIFESTS_BUCKET = "ossa_manifests"
THREADS_BUCKET = "ossa_threads"
RUNS_BUCKET = "ossa_runs"
MESSAGES_BUCKET = "ossa_messages"
USAGE_BUCKET = "ossa_usage"
RESPONSES_BUCKET = "ossa_responses"
FILE_RECORDS_BUCKET = "ossa_file_records"
VECTOR_STORES_BUCKET = "ossa_vector_stores"  # vector stores `<vs>` and their files `<vs>.<file>`

# --- retrieval: indexing files of vector stores (durable work queue) and searching them ---------------
INGEST_STREAM = "OSSA_INGEST"
INGEST_ALL = f"{PREFIX}.ingest.>"
INGEST_CONSUMER = "ossa-retrieval"
RETRIEVAL_SEARCH = f"{PREFIX}.retrieval.search"  # request/reply: SearchRequest -> SearchResults
RETRIEVAL_FORGET = f"{PREFIX}.retrieval.forget"  # request/reply: drop a file's (or a store's) chunks
RETRIEVAL_CONTENT = f"{PREFIX}.retrieval.content"  # request/reply: ContentRequest -> FileText (parsed text)
RETRIEVAL_QUEUE = "ossa-retrieval"


def ingest(vector_store_id: str) -> str:
    """Work-queue subject on which a file of `vector_store_id` waits to be indexed."""
    return f"{PREFIX}.ingest.{token(vector_store_id)}"


FILES_OBJECT_STORE = "ossa_files"

# --- sandbox: code-interpreter sessions, served by workers (contracts/sandbox.py) ---------------------
SANDBOX_EXECUTE = f"{PREFIX}.sandbox.execute"  # request/reply, queue group: a session no worker holds yet
SANDBOX_QUEUE = "ossa-sandbox"
SANDBOX_SESSIONS_BUCKET = "ossa_sandbox_sessions"  # session -> the worker that holds its kernel


def sandbox_worker(worker: str) -> str:
    """Request/reply subject of one worker: the calls of the sessions it holds."""
    return f"{PREFIX}.sandbox.worker.{token(worker)}.execute"


def sandbox_ping(worker: str) -> str:
    """Request/reply: answered while the worker lives (an executor waiting on a call checks it)."""
    return f"{PREFIX}.sandbox.worker.{token(worker)}.ping"


# A subject token may not contain separators, wildcards or whitespace.
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


class InvalidSubjectToken(ValueError):
    """Raised when an id cannot be used as one token of a subject."""


def is_token(value: str) -> bool:
    return bool(_TOKEN.fullmatch(value or ""))


def token(value: str) -> str:
    """Return `value` if it is safe as a single subject token, else raise.

    Ids come from clients (thread ids, agent names); a `.` or `>` in one would silently widen a
    subscription or address another agent's work.
    """
    if not _TOKEN.fullmatch(value or ""):
        raise InvalidSubjectToken(f"{value!r} cannot be used in a NATS subject")
    return value


def run_event(thread_id: str, run_id: str, event: str) -> str:
    """Subject of one run event; `event` is the OpenAI event name, e.g. `thread.run.created`."""
    return f"{PREFIX}.events.{token(thread_id)}.{token(run_id)}.{event}"


def run_events(run_id: str) -> str:
    """Filter for every event of one run, whatever its thread."""
    return f"{PREFIX}.events.*.{token(run_id)}.>"


def run_events_in_thread(thread_id: str, run_id: str) -> str:
    """Filter for every event of one run when its thread is known."""
    return f"{PREFIX}.events.{token(thread_id)}.{token(run_id)}.>"


def thread_events(thread_id: str) -> str:
    """Filter for every event of every run of one thread."""
    return f"{PREFIX}.events.{token(thread_id)}.>"


TASK_RESULT_EVENT = "task.result"


def task(agent: str) -> str:
    """Work-queue subject on which a run of `agent` is requested."""
    return f"{PREFIX}.tasks.{token(agent)}"


def tool(name: str) -> str:
    """Request/reply subject served by whoever implements tool `name` (its function name)."""
    return f"{PREFIX}.tools.{token(name)}"


def tool_queue(name: str) -> str:
    """Queue group the workers of tool `name` share, so each call goes to one of them."""
    return f"ossa-tool-{token(name)}"


TOOL_ANNOUNCEMENTS_ALL = f"{PREFIX}.announce.tools.>"


TOOL_ROLL_CALL = f"{PREFIX}.announce.rollcall"  # workers answer by announcing their tools at once


def tool_announcement(name: str) -> str:
    return f"{PREFIX}.announce.tools.{token(name)}"


def registry_changed(name: str) -> str:
    """Subject of the change event published on every write of manifest `name`."""
    return f"{PREFIX}.registry.changed.{token(name)}"


def all_subjects() -> dict[str, str]:
    """Every fixed subject and filter, by constant name, for documentation and export."""
    return {k: v for k, v in globals().items() if k.isupper() and isinstance(v, str) and v.startswith(f"{PREFIX}.")}


# --- chat completions: core request/reply to executors (no durability: the caller is waiting) -------
CHAT_QUEUE = "ossa-chat"


def chat(agent: str) -> str:
    """Request subject for a chat completion of `agent` (`_llm` for a plain provider/model call)."""
    return f"{PREFIX}.chat.{token(agent)}"


CHAT_ALL = f"{PREFIX}.chat.>"
PLAIN_LLM_AGENT = "_llm"
EMBEDDINGS = f"{PREFIX}.executor.embeddings"  # request/reply: embeddings of texts through the provider
TOKEN_COUNT = f"{PREFIX}.executor.tokens"  # request/reply: input tokens of a model request, as it would be sent


def run_cancel(run_id: str) -> str:
    """Broadcast to the executor working on `run_id`: stop it now."""
    return f"{PREFIX}.control.runs.{token(run_id)}.cancel"


RUN_CANCEL_ALL = f"{PREFIX}.control.runs.*.cancel"


def chat_cancel(chat_id: str) -> str:
    """Broadcast to the executor streaming chat completion `chat_id`: its client left, stop the model."""
    return f"{PREFIX}.control.chat.{token(chat_id)}.cancel"


CHAT_CANCEL_ALL = f"{PREFIX}.control.chat.*.cancel"


def control_target(subject: str) -> tuple[str, str]:
    """(id, action) of a control subject, `ossa.control.<kind>.<id>.<action>`, as built above."""
    _, _, _, target, action = subject.split(".")
    return target, action


RUN_ANSWER = f"{PREFIX}.runs.answer"  # request/reply: tool outputs or approvals for a parked run


# --- keys in the state buckets -----------------------------------------------------------------------


def message_key(thread_id: str, message_id: str) -> str:
    return f"{token(thread_id)}.{token(message_id)}"


def thread_messages(thread_id: str) -> str:
    return f"{token(thread_id)}.*"


def run_key(thread_id: str, run_id: str) -> str:
    return f"{token(thread_id)}.{token(run_id)}"


def thread_runs(thread_id: str) -> str:
    return f"{token(thread_id)}.*"


def step_key(thread_id: str, run_id: str, step_id: str) -> str:
    return f"{token(thread_id)}.{token(run_id)}.{token(step_id)}"


def run_steps(thread_id: str, run_id: str) -> str:
    return f"{token(thread_id)}.{token(run_id)}.*"


def active_run_key(thread_id: str) -> str:
    """Key in the threads bucket holding the id of the thread's one active run."""
    return f"active.{token(thread_id)}"


def turn_key(thread_id: str, run_id: str, turn: int) -> str:
    """Key in the runs bucket holding the ids of a run's n-th model turn (its message and steps)."""
    return f"turn.{token(thread_id)}.{token(run_id)}.{turn}"


def thread_turns(thread_id: str) -> str:
    return f"turn.{token(thread_id)}.>"
