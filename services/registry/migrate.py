"""Upgrading a v0.2.2 / v0.3.x manifest to the shape OSSA is written in today (v0.4 / v0.5).

Teams with old manifests have no other tool for this. The upgrade rewrites what changed name or
place: the system prompt becomes `spec.instructions`, `spec.llm` becomes `spec.model` with its
sampling settings under `parameters` (camelCase, as v0.4+ writes them), and the `apiVersion`. Everything
else is kept where it was (the v0.4.7 / v0.5 schemas leave `spec` open, and the keys v0.3 used
still mean the same), and every change or doubt is reported, so the author can review the result.
"""

from __future__ import annotations

import copy
import datetime
import re
from dataclasses import dataclass, field
from typing import Any

from ossabus.contracts.agent import AgentDefinition

TARGETS = ("ossa/v0.5", "ossa/v0.4")
# v0.3 `spec.llm` keys that v0.4+ writes under `spec.model.parameters`, and their v0.4+ names
PARAMETERS = {
    "temperature": "temperature",
    "top_p": "topP",
    "topP": "topP",
    "max_tokens": "maxTokens",
    "maxTokens": "maxTokens",
    "stop": "stop",
    "seed": "seed",
    "frequency_penalty": "frequencyPenalty",
    "presence_penalty": "presencePenalty",
}
# `spec.llm` keys that stay on the model block as they are
MODEL_KEYS = ("provider", "model", "base_url", "baseUrl", "api_key_env", "apiKeyEnv", "fallback_models", "retry")


@dataclass
class Migration:
    manifest: dict[str, Any]
    changes: list[str] = field(default_factory=list)  # what was rewritten
    doubts: list[str] = field(default_factory=list)  # what could not be carried over, or needs a look


def migrate(data: dict[str, Any], definition: AgentDefinition, target: str = "ossa/v0.5") -> Migration:
    if target not in TARGETS:
        raise ValueError(f"can upgrade to {' or '.join(TARGETS)}, not {target}")
    manifest = copy.deepcopy(data)
    result = Migration(manifest)
    before = manifest.get("apiVersion")
    manifest["apiVersion"] = target
    result.changes.append(f"apiVersion {before} -> {target}")
    _plain_values(manifest, result, [])
    _semver(manifest, result)
    if manifest.get("kind") != "Agent":
        result.doubts.append(f"kind {manifest.get('kind')}: spec kept as written; review it against the {target} docs")
        return result
    spec = manifest.setdefault("spec", {})
    if not isinstance(spec, dict):
        result.doubts.append("spec is not a mapping; nothing else was changed")
        return result
    _instructions(spec, definition, result)
    _model(spec, result)
    return result


def _plain_values(value: Any, result: Migration, path: list[str]) -> Any:
    """Dates YAML read from unquoted values (`2026-01-10`) back to the strings v0.4+ schemas expect."""
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _plain_values(item, result, [*path, str(key)])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _plain_values(item, result, [*path, str(i)])
    elif isinstance(value, datetime.date):
        result.changes.append(f"{'.'.join(path)}: the date {value.isoformat()} written as a string")
        return value.isoformat()
    return value


def _semver(manifest: dict[str, Any], result: Migration) -> None:
    """v0.4+ want `metadata.version` as plain semver: `v1.2.0` -> `1.2.0`."""
    metadata = manifest.get("metadata")
    version = metadata.get("version") if isinstance(metadata, dict) else None
    if isinstance(version, str) and re.fullmatch(r"v\d+\.\d+\.\d+.*", version):
        metadata["version"] = version[1:]
        result.changes.append(f"metadata.version {version} -> {version[1:]} (semver without 'v')")


def _instructions(spec: dict[str, Any], definition: AgentDefinition, result: Migration) -> None:
    if "instructions" in spec or not definition.system_prompt:
        return
    prompts = spec.get("prompts")
    if isinstance(prompts, dict) and "system" in prompts:
        spec["instructions"] = definition.system_prompt
        del prompts["system"]
        if not prompts:
            del spec["prompts"]
        result.changes.append("spec.prompts.system -> spec.instructions")
    elif isinstance(spec.get("role"), str) and spec["role"].strip() == definition.system_prompt:
        spec["instructions"] = spec.pop("role").strip()
        result.changes.append("spec.role -> spec.instructions")


def _model(spec: dict[str, Any], result: Migration) -> None:
    llm = spec.get("llm")
    if not isinstance(llm, dict) or "model" in spec:
        return
    model: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    for key, value in llm.items():
        if key in MODEL_KEYS:
            model[key] = value
        elif key in PARAMETERS:
            parameters[PARAMETERS[key]] = value
        elif key == "parameters" and isinstance(value, dict):
            parameters.update({PARAMETERS.get(k, k): v for k, v in value.items()})
        else:
            model[key] = value
            result.doubts.append(f"spec.llm.{key} kept on spec.model as written; check that v0.5 still reads it")
    if parameters:
        model["parameters"] = parameters
    spec["model"] = model
    del spec["llm"]
    result.changes.append("spec.llm -> spec.model (sampling settings under parameters, camelCase)")
