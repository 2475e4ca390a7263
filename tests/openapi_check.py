"""Checking response bodies against OpenAI's published OpenAPI description (../shared/openai)."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from conftest import shared_path


@cache
def _components() -> dict[str, Any]:
    with shared_path("openai", "openapi.yaml").open() as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["components"]


def openapi_errors(instance: Any, schema_name: str) -> list[str]:
    """Messages of every way `instance` breaks `components.schemas.<schema_name>` (empty = conforms)."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _components()}
    return [f"{e.json_path}: {e.message}" for e in Draft202012Validator(schema).iter_errors(instance)]
