"""Validation findings, shared by the CLI, the registry's bus replies and the HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Severity = Literal["error", "warning"]
# "schema": the official OSSA JSON Schema of the declared apiVersion said so.
# "ossabus": ossabus's own envelope and semantic checks said so.
Source = Literal["schema", "ossabus"]


class Diagnostic(BaseModel):
    """One finding about one place in one manifest."""

    severity: Severity
    source: Source
    code: str = Field(description="Stable machine-readable kind, e.g. `schema.required`, `tool.duplicate_name`.")
    message: str
    path: str = Field("$", description="JSON path of the offending value, e.g. `$.spec.tools[0].type`.")
    file: str | None = None
    line: int | None = Field(None, description="1-based line in the YAML source, when known.")
    document: int | None = Field(None, description="0-based index of the document in a multi-document file.")

    def render(self) -> str:
        """One line, the way compilers print: `file:line: severity: path: message [code]`."""
        where = self.file or "<input>"
        if self.document:
            where += f"[doc {self.document}]"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.severity}: {self.path}: {self.message} [{self.code}]"


class ValidationReport(BaseModel):
    """What validating one manifest document found."""

    name: str | None = None
    kind: str | None = None
    api_version: str | None = None
    schema_version: str | None = Field(None, description="Official schema the document was checked against.")
    strict: bool = False
    diagnostics: list[Diagnostic] = Field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors
