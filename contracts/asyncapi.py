"""The AsyncAPI 3.0 document of the bus, generated from the services' FastStream brokers.

Subscribers are read from the services themselves (so the document cannot list a subject nobody
serves), including the few a service serves on a plain nats-py subscription (`direct_handlers`),
which are declared on a documentation broker under their handler's name and docstring. Their
handlers take raw messages (to answer bad input with a typed error instead of silence), so
FastStream cannot infer payloads from signatures: each channel's payload is filled in from the
contract models here. What ossabus publishes is declared on a documentation broker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from faststream.nats.annotations import NatsMessage
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ossabus import __version__
from ossabus.contracts import bus, retrieval, sandbox, subjects, telemetry, tools, workflow
from ossabus.contracts.openai_objects import Run

DOC_WORKER = "WORKER"  # stands for a sandbox worker's id in the document: its subject carries one
# subscribed subject -> (message it takes, reply it sends or None)
SUBSCRIBED: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {
    subjects.REGISTRY_LIST: (bus.ListManifestsRequest, bus.Reply[bus.ManifestList]),
    subjects.REGISTRY_GET: (bus.GetManifestRequest, bus.Reply[bus.ManifestRecord]),
    subjects.REGISTRY_PUT: (bus.PutManifestRequest, bus.Reply[bus.PutManifestResult]),
    subjects.REGISTRY_DELETE: (bus.DeleteManifestRequest, bus.Reply[bus.DeleteManifestResult]),
    subjects.REGISTRY_VALIDATE: (bus.ValidateManifestRequest, bus.Reply[bus.ValidateManifestResult]),
    subjects.REGISTRY_STATUS: (bus.AnyRequest, bus.Reply[bus.RegistryStatus]),
    subjects.TASKS_ALL: (bus.TaskMessage, None),
    subjects.WORKFLOWS_ALL: (workflow.WorkflowTask, None),
    subjects.WORKFLOW_ASK_ALL: (workflow.WorkflowTask, bus.Reply[workflow.WorkflowRun]),
    subjects.WORKFLOW_CONTROL_ALL: (bus.AnyRequest, None),
    subjects.EXTERNAL_EVENTS_ALL: (bus.AnyRequest, None),  # any JSON an event trigger matches
    subjects.ASK_ALL: (bus.TaskMessage, bus.Reply[bus.TaskResult]),
    subjects.CHAT_ALL: (bus.ChatRequest, bus.Reply[dict]),
    subjects.TOKEN_COUNT: (bus.TokenCountRequest, bus.Reply[bus.TokenCount]),
    subjects.EMBEDDINGS: (bus.EmbeddingRequest, bus.Reply[bus.Embeddings]),
    subjects.INGEST_ALL: (retrieval.IngestRequest, None),
    subjects.RETRIEVAL_SEARCH: (retrieval.SearchRequest, bus.Reply[retrieval.SearchResults]),
    subjects.RETRIEVAL_FORGET: (retrieval.ForgetRequest, bus.Reply[retrieval.Forgotten]),
    subjects.RETRIEVAL_CONTENT: (retrieval.ContentRequest, bus.Reply[retrieval.FileText]),
    subjects.RUN_CANCEL_ALL: (bus.AnyRequest, None),
    subjects.CHAT_CANCEL_ALL: (bus.AnyRequest, None),
    subjects.RUN_ANSWER: (bus.RunAnswer, bus.Reply[Run]),
    subjects.REGISTRY_CHANGES_ALL: (bus.ManifestChanged, None),
    subjects.DISPATCHER_CALL: (tools.DispatchRequest, bus.Reply[tools.DispatchResult]),
    subjects.DISPATCHER_TOOLS: (bus.AnyRequest, bus.Reply[tools.ToolList]),
    subjects.DISPATCHER_MCP_TOOLS: (tools.McpToolsRequest, bus.Reply[tools.McpToolList]),
    subjects.TOOL_ANNOUNCEMENTS_ALL: (tools.ToolAnnouncement, None),
    subjects.TELEMETRY_USAGE: (telemetry.UsageQuery, bus.Reply[telemetry.UsageReport]),
    subjects.TELEMETRY_METRICS: (bus.AnyRequest, bus.Reply[telemetry.MetricsText]),
    subjects.TELEMETRY_TOOLS: (telemetry.ToolReport, None),
    subjects.SANDBOX_EXECUTE: (sandbox.ExecuteRequest, bus.Reply[sandbox.ExecuteResult]),
    subjects.sandbox_worker(DOC_WORKER): (sandbox.ExecuteRequest, bus.Reply[sandbox.ExecuteResult]),
    subjects.sandbox_ping(DOC_WORKER): (bus.AnyRequest, bus.Reply[sandbox.Pong]),
}
# published subject (with AsyncAPI parameters) -> (message, description)
PUBLISHED: dict[str, tuple[type[BaseModel], str]] = {
    "ossa.events.{thread_id}.{run_id}.{event}": (
        bus.RunEvent,
        "Every step of a run, named after OpenAI's events (`thread.run.created`, "
        "`thread.message.delta`, ...), then `task.result` for task messages, or `error`.",
    ),
    "ossa.events.{workflow}.{workflow_run_id}.{event}": (
        bus.RunEvent,
        "Every change of a workflow run: `workflow.run.queued|in_progress|requires_action|cancelling|completed|"
        "failed|cancelled` (data: the run), `workflow.step.in_progress|requires_action|completed|failed|skipped|"
        "cancelled` (data: the step). A step's own run streams on its thread's subjects.",
    ),
    "ossa.workflows.{workflow}": (
        workflow.WorkflowRunRequest,
        "Workflow runs queued by the relay (other systems publish WorkflowTask here).",
    ),
    "ossa.registry.changed.{name}": (bus.ManifestChanged, "After every manifest write."),
    "ossa.tasks.{agent}": (bus.RunRequest, "Runs queued by the relay (other systems publish TaskMessage here)."),
    "ossa.usage.{agent}": (
        telemetry.UsageRecord,
        "Usage of each model call (OSSA_USAGE stream; Nats-Msg-Id is the record id), added up by telemetry.",
    ),
    "ossa.tools.{name}": (
        tools.ToolCallRequest,
        "Tool calls, request/reply: any worker serving the tool answers "
        "with a ToolCallReply (queue group `ossa-tool-<name>`).",
    ),
}

DESCRIPTION = (
    "The ossabus bus. Request/reply answers are `{ok, result}` or `{ok: false, error: {code, message, param}}`. "
    "Run events are stored in the OSSA_EVENTS stream: subscribe to `ossa.events.*.<run_id>.>` for one run or "
    "`ossa.events.<thread_id>.>` for one conversation."
)


def _schemas(models: list[type[BaseModel]]) -> tuple[dict[type[BaseModel], dict], dict[str, Any]]:
    keys = [(model, "serialization") for model in models]
    refs, top = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    return {model: refs[(model, "serialization")] for model in models}, top.get("$defs", {})


def _documented(handle: Any) -> Any:
    """A stand-in with the handler's name and docstring (what the document shows) for FastStream."""

    async def documented(msg: NatsMessage) -> None:  # a raw message, as the real handlers take
        return None

    documented.__name__, documented.__doc__ = handle.__name__, handle.__doc__
    return documented


def build() -> dict[str, Any]:
    from faststream.nats import NatsBroker
    from faststream.specification.asyncapi import AsyncAPI

    from ossabus.runtime.settings import Settings
    from ossabus.runtime.stack import SERVICES

    settings = Settings(nats_url="nats://127.0.0.1:4222")
    brokers, services = [], []
    for service_class in SERVICES.values():
        service = service_class(settings)
        if hasattr(service, "worker"):
            service.worker = DOC_WORKER  # a sandbox worker's id is random: the document names none
        service.register()
        services.append(service)
        brokers.append(service.broker)
    published = NatsBroker("nats://127.0.0.1:4222")
    for service in services:
        for direct in service.direct_handlers():
            published.subscriber(direct.subject, queue=direct.queue)(_documented(direct.handle))
    for subject, (model, description) in PUBLISHED.items():
        published.publisher(subject, schema=model, description=description)
    brokers.append(published)
    spec = AsyncAPI(*brokers, title="ossabus", version=__version__, description=DESCRIPTION).to_specification()
    document = spec.to_jsonable()

    models = sorted({m for pair in SUBSCRIBED.values() for m in pair if m is not None}, key=lambda m: m.__name__)
    refs, definitions = _schemas(models)
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(definitions)
    for channel in document["channels"].values():
        taken, reply = SUBSCRIBED.get(channel["address"], (None, None))
        if taken is None:
            continue
        for message_ref in channel.get("messages", {}).values():
            name = unquote(message_ref["$ref"].rsplit("/", 1)[1])  # refs are URL-encoded (`>` is %3E)
            message = components["messages"][name]
            message["payload"] = refs[taken]
            if reply is not None:
                message["x-ossabus-reply"] = refs[reply]
    components["schemas"].pop("EmptyPayload", None)
    return document


def render(fmt: str = "yaml") -> str:
    import json

    import yaml

    document = build()
    if fmt == "json":
        return json.dumps(document, indent=2, sort_keys=True) + "\n"
    return yaml.safe_dump(document, sort_keys=True, allow_unicode=True)
