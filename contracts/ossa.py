"""The OSSA manifest envelope: what every manifest has, whatever its version and kind.

Deliberately loose inside `spec` and `extensions` (the official JSON Schemas judge those, and they
differ by version); strict where ossabus relies on a value to store and address the manifest.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ManifestKind = Literal["Agent", "Task", "Workflow", "Flow"]


class OssaMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    version: str | None = None
    namespace: str | None = None
    description: str | None = None
    labels: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)


class OssaManifest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    api_version: str = Field(alias="apiVersion", pattern=r"^ossa/v0\.(2|3)\.\d+(-[0-9A-Za-z.\-]+)?$")
    kind: ManifestKind
    metadata: OssaMetadata
    spec: dict[str, Any] = Field(default_factory=dict)
    extensions: dict[str, Any] | None = None

    def to_document(self) -> dict[str, Any]:
        """The manifest as YAML/JSON would hold it: OSSA key names, nothing empty."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=False, mode="json")
