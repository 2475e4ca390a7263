"""The official OSSA JSON Schemas shipped in the package, and which one a manifest is checked against."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from jsonschema import Draft7Validator

KNOWN_SCHEMAS = ("0.2.2", "0.3.3", "0.3.4", "0.4.6", "0.4.7", "0.5")
NEWEST = KNOWN_SCHEMAS[-1]
KINDS_BY_SCHEMA = {
    "0.2.2": ("Agent",),
    "0.3.3": ("Agent", "Task", "Workflow"),
    "0.3.4": ("Agent", "Task", "Workflow"),
    "0.4.6": ("Agent", "Task", "Workflow", "Flow"),
    "0.4.7": ("Agent", "Task", "Workflow", "Flow"),
    "0.5": ("Agent", "Task", "Workflow", "Flow"),
}
# `ossa/v0.4` and `ossa/v0.5` (a minor line, as v0.4+ manifests are written) or a full version
_API_VERSION = re.compile(r"^ossa/v(?P<major>0)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?(?P<pre>-[0-9A-Za-z.\-]+)?$")
SUPPORTED_TEXT = "ossa/v0.2.2, ossa/v0.3.x (x >= 3), ossa/v0.4, ossa/v0.4.x or ossa/v0.5, ossa/v0.5.x"


@dataclass(frozen=True)
class SchemaChoice:
    """The schema for an apiVersion, and whether the version is newer than any schema we ship."""

    version: str
    newer_than_known: bool = False


def choose_schema(api_version: object) -> SchemaChoice | None:
    """Map `ossa/vX.Y.Z[-pre]` to a shipped schema; None when ossabus does not support it.

    0.2.x (x>=2) -> 0.2.2; 0.3.0-0.3.3 -> 0.3.3; 0.3.4 and later 0.3.x -> 0.3.4; 0.4.0-0.4.6 -> 0.4.6
    (the full v0.4 schema); 0.4.7 and later 0.4.x, and the bare line `ossa/v0.4` (written today as
    the current 0.4) -> 0.4.7; 0.5 and 0.5.x -> 0.5. The 0.2 and 0.3 lines need a patch number.
    """
    if not isinstance(api_version, str):
        return None
    match = _API_VERSION.fullmatch(api_version)
    if not match:
        return None
    minor = int(match["minor"])
    if minor == 5:
        return SchemaChoice("0.5")
    if minor == 4:
        if match["patch"] is None or int(match["patch"]) >= 7:
            return SchemaChoice("0.4.7")
        return SchemaChoice("0.4.6")
    if match["patch"] is None:
        return None
    patch = int(match["patch"])
    if minor == 2 and patch >= 2:
        return SchemaChoice("0.2.2", newer_than_known=patch > 2)
    if minor == 3:
        if patch <= 3:
            return SchemaChoice("0.3.3")
        return SchemaChoice("0.3.4", newer_than_known=patch > 4)
    return None


@cache
def schema_document(version: str) -> dict:
    text = resources.files("ossabus.contracts.ossa_schemas").joinpath(f"ossa-{version}.schema.json").read_text()
    return json.loads(text)


@cache
def validator(version: str) -> Draft7Validator:
    """A Draft-7 validator for the shipped schema; formats are not asserted, as the schema intends."""
    return Draft7Validator(schema_document(version))
