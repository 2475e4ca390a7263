"""Writing the bus contracts as JSON Schema files, for publishers and consumers in any language."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from ossabus.contracts import bus, subjects, tools
from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.diagnostics import Diagnostic, ValidationReport
from ossabus.contracts.openai_objects import Assistant, ErrorResponse
from ossabus.contracts.ossa import OssaManifest

# model -> the subjects it travels on (request models: the request; replies are Reply envelopes)
EXPORTED: dict[str, tuple[type[BaseModel], list[str]]] = {
    "TaskMessage": (bus.TaskMessage, [subjects.TASKS_ALL, subjects.ASK_ALL]),
    "RunRequest": (bus.RunRequest, [subjects.TASKS_ALL]),
    "TaskResult": (bus.TaskResult, [subjects.EVENTS_ALL, subjects.ASK_ALL]),
    "RunEvent": (bus.RunEvent, [subjects.EVENTS_ALL]),
    "ManifestChanged": (bus.ManifestChanged, [subjects.REGISTRY_CHANGES_ALL]),
    "ListManifestsRequest": (bus.ListManifestsRequest, [subjects.REGISTRY_LIST]),
    "ListManifestsReply": (bus.Reply[bus.ManifestList], [subjects.REGISTRY_LIST]),
    "GetManifestRequest": (bus.GetManifestRequest, [subjects.REGISTRY_GET]),
    "GetManifestReply": (bus.Reply[bus.ManifestRecord], [subjects.REGISTRY_GET]),
    "PutManifestRequest": (bus.PutManifestRequest, [subjects.REGISTRY_PUT]),
    "PutManifestReply": (bus.Reply[bus.PutManifestResult], [subjects.REGISTRY_PUT]),
    "DeleteManifestRequest": (bus.DeleteManifestRequest, [subjects.REGISTRY_DELETE]),
    "DeleteManifestReply": (bus.Reply[bus.DeleteManifestResult], [subjects.REGISTRY_DELETE]),
    "ValidateManifestRequest": (bus.ValidateManifestRequest, [subjects.REGISTRY_VALIDATE]),
    "ValidateManifestReply": (bus.Reply[bus.ValidateManifestResult], [subjects.REGISTRY_VALIDATE]),
    "RegistryStatusReply": (bus.Reply[bus.RegistryStatus], [subjects.REGISTRY_STATUS]),
    "ToolCallRequest": (tools.ToolCallRequest, [subjects.TOOLS_ALL]),
    "ToolCallReply": (tools.ToolCallReply, [subjects.TOOLS_ALL]),
    "ToolAnnouncement": (tools.ToolAnnouncement, [subjects.TOOL_ANNOUNCEMENTS_ALL]),
    "DispatchRequest": (tools.DispatchRequest, [subjects.DISPATCHER_CALL]),
    "DispatchResult": (tools.DispatchResult, [subjects.DISPATCHER_CALL]),
    "BusError": (bus.BusError, []),
    "AgentDefinition": (AgentDefinition, []),
    "OssaManifest": (OssaManifest, []),
    "Diagnostic": (Diagnostic, []),
    "ValidationReport": (ValidationReport, []),
    "Assistant": (Assistant, []),
    "ErrorResponse": (ErrorResponse, []),
}


def export_schemas(directory: Path) -> list[Path]:
    """Write one `<Name>.schema.json` per model plus `index.json` (models, subjects); return the files."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index: dict[str, object] = {"models": {}, "subjects": subjects.all_subjects()}
    for name, (model, on_subjects) in EXPORTED.items():
        schema = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = name
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
        index["models"][name] = {"file": path.name, "subjects": on_subjects}  # type: ignore[index]
    index_path = directory / "index.json"
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    written.append(index_path)
    return written
