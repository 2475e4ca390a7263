"""`code_interpreter` in runs: the model sees a function `python({"code"})` (the name gpt-oss and
OpenAI's models were trained on); the executor runs the code in the thread's sandbox session.

The session is the thread's: its kernel keeps variables and files between calls of every run of the
thread. Which worker holds it is in `ossa_sandbox_sessions`; a call goes there, and when that worker
is gone (no responders) to the queue group, which starts a new kernel and says so — the model is
told its earlier variables are lost. Files placed in the session: the assistant's and the thread's
`tool_resources.code_interpreter.file_ids`, the thread's message attachments meant for
code_interpreter, and a Responses request's `container.file_ids`.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import jiter

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition, ToolDefinition
from ossabus.contracts.bus import AnyRequest
from ossabus.contracts.openai_objects import Message, Run, RunStep, Thread, ToolCall, ToolCallsDetails
from ossabus.contracts.sandbox import ExecuteRequest, ExecuteResult, Pong, SandboxFile, SandboxLimits, SessionPlace
from ossabus.contracts.tools import tool_error
from ossabus.runtime.bus import BusClient, BusFailure
from ossabus.store import kv as kvs

NAME = "python"
FILE_WAIT_S = 60.0  # beyond the call's own bound: files in and out, a kernel's start
WATCH_S = 2.0  # how often a worker running a call is checked

TOOL = ToolDefinition(
    name=NAME,
    function_name=NAME,
    kind="code_interpreter",
    description=(
        "Run Python code in a stateful Jupyter kernel: variables, imports and files stay between calls "
        "in this conversation. Files given to you, and the files you write, are in /mnt/data. Print what "
        "you want to see; matplotlib figures you show come back as images. numpy, pandas and matplotlib "
        "are installed. There is no internet access."
    ),
    parameters={
        "type": "object",
        "properties": {"code": {"type": "string", "description": "The Python code to run."}},
        "required": ["code"],
    },
)


def offered(run: Run) -> bool:
    return any(t.type == "code_interpreter" for t in run.tools)


def _container(run: Run) -> dict[str, Any]:
    """The Responses request's `container` (`{type: auto, file_ids, memory_limit}`), else {}."""
    tool = next((t for t in run.tools if t.type == "code_interpreter"), None)
    container = getattr(tool, "container", None)
    return container if isinstance(container, dict) else {}


CONTAINER_MEMORY = {"1g": 1 << 30, "4g": 4 << 30, "16g": 16 << 30, "64g": 64 << 30}


def limits_of(run: Run, definition: AgentDefinition) -> SandboxLimits | None:
    """What the agent's manifest asks for, narrowed by a Responses container's `memory_limit`; the
    worker still caps both at its operator's maximum."""
    asked = definition.sandbox.model_copy() if definition.sandbox else None
    memory = CONTAINER_MEMORY.get(_container(run).get("memory_limit") or "")
    if memory is not None:
        asked = asked or SandboxLimits()
        asked.memory_bytes = min(asked.memory_bytes or memory, memory)
    return asked


def code_of(call: ToolCall) -> str:
    """The code the model sent; a model that sent plain code instead of JSON is taken at its word."""
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError:
        return call.function.arguments or ""
    if isinstance(arguments, dict):
        code = arguments.get("code", arguments.get("input", ""))
        return code if isinstance(code, str) else ""
    return arguments if isinstance(arguments, str) else ""


def _resource_files(resources: dict[str, Any] | None) -> list[str]:
    ids = ((resources or {}).get("code_interpreter") or {}).get("file_ids") or []
    return [i for i in ids if isinstance(i, str)]


def files_of(run: Run, definition: AgentDefinition, thread: Thread | None, messages: list[Message]) -> list[str]:
    """Every File the session should hold for this run, in a stable order without repeats."""
    ids = _resource_files(definition.tool_resources) + _resource_files(thread.tool_resources if thread else None)
    for message in messages:
        for attachment in message.attachments or []:
            tools = [t.get("type") for t in attachment.get("tools") or [] if isinstance(t, dict)]
            if "code_interpreter" in tools and isinstance(attachment.get("file_id"), str):
                ids.append(attachment["file_id"])
    ids += [i for i in _container(run).get("file_ids") or [] if isinstance(i, str)]
    return list(dict.fromkeys(ids))


async def execute(
    bus: BusClient,
    places,
    call: ToolCall,
    *,
    session: str,
    project: str,
    file_ids: list[str],
    limits: SandboxLimits | None,
) -> ExecuteResult | str:
    """Run the call's code in the session; an ExecuteResult, or a tool error (JSON) for the model."""
    request = ExecuteRequest(
        session=session,
        project=project,
        code=code_of(call),
        files=[SandboxFile(file_id=i) for i in file_ids],
        limits=limits,
    )
    call_s = (limits.call_seconds if limits and limits.call_seconds else 60.0) + FILE_WAIT_S
    found = await kvs.read(places, subjects.token(session), SessionPlace) if places is not None else None
    gone = None  # a worker the session's record names that no longer answers
    try:
        if found is not None and found[0].project == project:
            request.had_session = True
            try:
                return await _watched(bus, places, subjects.sandbox_worker(found[0].worker), request, call_s)
            except BusFailure as failure:
                if not failure.no_responders:
                    return tool_error(failure.error.code, failure.error.message)
                gone = found[0].worker  # a new kernel elsewhere, and the model is told
        try:
            return await _watched(bus, places, subjects.SANDBOX_EXECUTE, request, call_s, ignore=gone)
        except BusFailure as failure:
            if failure.no_responders:
                return tool_error("sandbox_unavailable", "no code-interpreter worker is running")
            return tool_error(failure.error.code, failure.error.message)
    except WorkerDied:
        return tool_error(
            "sandbox_worker_died",
            "the code-interpreter worker stopped while this code ran: it did not finish, and the session "
            "is gone (variables and files of earlier calls too); the next call starts a new one",
        )


class WorkerDied(Exception):
    """The worker running a call stopped answering its pings: its reply will never come."""


async def _watched(
    bus: BusClient, places, subject: str, request: ExecuteRequest, wait_s: float, ignore: str | None = None
) -> ExecuteResult:
    """The call, while the worker running it is checked every WATCH_S: a call on a worker that died
    ends within seconds instead of at its time bound. The worker is the one the session's record
    names (a worker records a session before running its first code); `ignore` is a dead worker an
    old record may still name until the new one records itself."""
    call = asyncio.ensure_future(bus.call(subject, request, ExecuteResult, wait_s=wait_s))
    try:
        while True:
            done, _ = await asyncio.wait({call}, timeout=WATCH_S)
            if done:
                return call.result()
            if places is None:
                continue
            found = await kvs.read(places, subjects.token(request.session), SessionPlace)
            if found is None or found[0].worker == ignore:
                continue
            try:
                await bus.call(subjects.sandbox_ping(found[0].worker), AnyRequest(), Pong, wait_s=WATCH_S)
            except BusFailure as failure:
                if failure.no_responders:
                    raise WorkerDied from None
    finally:
        call.cancel()


def model_output(result: ExecuteResult) -> str:
    """What the model reads back: the printed output, the error, the files written, and notes."""
    parts = []
    if result.recreated:
        parts.append(
            "[note: the previous session ended (idle too long, or its worker stopped); this code ran in a new session, "
            "so variables and files from earlier calls are gone and must be made again]"
        )
    if result.logs:
        parts.append(result.logs.rstrip("\n"))
    if result.error:
        parts.append(f"Error: {result.error}")
    shown = [f for f in result.files if f.image and not f.path]
    if shown:
        parts.append(f"[{len(shown)} image(s) displayed to the user]")
    for written in (f for f in result.files if f.path):
        parts.append(f"[file written: {written.path} ({written.bytes} bytes)]")
    parts += [f"[note: {note}]" for note in result.notes]
    return "\n".join(parts) if parts else "[no output]"


def step_outputs(result: ExecuteResult) -> list[dict[str, Any]]:
    """The call's `outputs` as Assistants steps show them: `logs`, then each figure as `image`."""
    outputs: list[dict[str, Any]] = []
    text = result.logs
    if result.error:
        text = f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{result.error}"
    if text:
        outputs.append({"type": "logs", "logs": text})
    outputs += [{"type": "image", "image": {"file_id": f.file_id}} for f in result.files if f.image]
    return outputs


def partial_code(arguments: str) -> str:
    """The code so far in a call's arguments still being streamed (`{"code": "import pa`), decoded as
    far as it is complete (jiter's partial mode: a string cut mid-escape stops before it)."""
    try:
        parsed = jiter.from_json(arguments.encode(), partial_mode="trailing-strings")
    except ValueError:  # not JSON (a model that streams bare code): shown whole when the call ends
        return ""
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) else ""


def files_since_last_message(steps: list[RunStep], message_step_id: str) -> list[dict[str, Any]]:
    """The Files the run's code wrote since its previous message: they belong to this message."""
    made: list[dict[str, Any]] = []
    for step in steps:
        if step.id == message_step_id:
            break
        if isinstance(step.step_details, ToolCallsDetails):
            for call in step.step_details.tool_calls:
                if call.type == "code_interpreter":
                    made += (call.code_interpreter or {}).get("files") or []
        else:
            made = []  # an earlier message showed those
    return made


def file_paths(text: str, made: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`file_path` annotations where the answer names a written file (`sandbox:/mnt/data/x.csv`, the
    link form OpenAI's models write, or the bare path)."""
    annotations = []
    for written in made:
        path = written.get("path")
        if not path:
            continue
        for match in re.finditer(rf"(?:sandbox:)?{re.escape(path)}", text):
            annotations.append(
                {
                    "type": "file_path",
                    "text": match.group(0),
                    "start_index": match.start(),
                    "end_index": match.end(),
                    "file_path": {"file_id": written["file_id"]},
                }
            )
    return sorted(annotations, key=lambda a: a["start_index"])
