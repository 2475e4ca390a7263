"""Checking response bodies against OpenAI's published OpenAPI description (vendored in tests/data/shared/openai)."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from conftest import shared_path


def _honour_nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` (which the file uses) means "or null"; JSON Schema has no such
    keyword, so rewrite each such schema as `anyOf: [schema, {type: null}]`."""
    if isinstance(node, list):
        return [_honour_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _honour_nullable(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@cache
def _components() -> dict[str, Any]:
    with shared_path("openai", "openapi.yaml").open() as f:
        document = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return _honour_nullable(document["components"])


def openapi_errors(instance: Any, schema_name: str) -> list[str]:
    """Messages of every way `instance` breaks `components.schemas.<schema_name>` (empty = conforms)."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _components()}
    return [f"{e.json_path}: {e.message}" for e in Draft202012Validator(schema).iter_errors(instance)]
