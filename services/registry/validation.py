"""Validating one manifest document: envelope, official schema, semantic checks, normalisation.

Two modes. **strict**: every error the official schema reports is an error. **lenient** (the
default for loading): official-schema findings are warnings, because many real manifests carry
unknown keys or a `v1.0.0` version that do not stop an agent from running; what does stop it
(no name, an unknown kind, a broken tool schema, duplicate tool names) is an error in both modes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from jsonschema import ValidationError
from jsonschema.exceptions import best_match

from ossabus.contracts import expressions
from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.diagnostics import Diagnostic, Severity, Source, ValidationReport
from ossabus.contracts.workflow_plan import PlanError, every_step, manifest_name, plan_of
from ossabus.registry.documents import Document
from ossabus.registry.schemas import KINDS_BY_SCHEMA, SUPPORTED_TEXT, choose_schema, validator

NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 63


def json_path(parts: Iterable[str | int]) -> str:
    """`$.spec.tools[0].type` from ["spec", "tools", 0, "type"] (quoted when a key is not an identifier)."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


@dataclass
class Findings:
    """Collects diagnostics for one document, locating each one in the source."""

    doc: Document
    items: list[Diagnostic] = field(default_factory=list)

    def add(self, severity: Severity, code: str, message: str, path: list[str | int], source: Source = "ossabus"):
        self.items.append(
            Diagnostic(
                severity=severity,
                source=source,
                code=code,
                message=message,
                path=json_path(path),
                file=self.doc.file,
                line=self.doc.line_of(path),
                document=self.doc.index,
            )
        )

    def error(self, code: str, message: str, path: list[str | int]) -> None:
        self.add("error", code, message, path)

    def warning(self, code: str, message: str, path: list[str | int]) -> None:
        self.add("warning", code, message, path)


# A callable answering "does a manifest of this name exist?", for Workflow step references.
NameResolver = Callable[[str], bool]


@dataclass
class ValidationOutcome:
    report: ValidationReport
    definition: AgentDefinition | None


def validate_document(doc: Document, *, strict: bool = False, resolve: NameResolver | None = None) -> ValidationOutcome:
    """Check one document and, when it has no errors, return its normalised definition."""
    from ossabus.registry.normalize import normalize  # normalisation and validation share Findings

    findings = Findings(doc, list(doc.problems))
    data = doc.data
    report = ValidationReport(strict=strict)
    if not isinstance(data, dict):
        findings.error("manifest.not_a_mapping", f"a manifest is a mapping, not {type(data).__name__}", [])
        report.diagnostics = findings.items
        return ValidationOutcome(report, None)

    api_version, kind = data.get("apiVersion"), data.get("kind")
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    report.api_version = api_version if isinstance(api_version, str) else None
    report.kind = kind if isinstance(kind, str) else None
    report.name = name if isinstance(name, str) else None

    choice = choose_schema(api_version)
    envelope_ok = _check_envelope(findings, data, choice)
    if choice is not None:
        report.schema_version = choice.version
        _check_schema(findings, data, choice.version, strict)
    if not envelope_ok or findings_have_errors(findings):
        report.diagnostics = findings.items
        return ValidationOutcome(report, None)

    definition = normalize(data, findings)
    if definition is not None and definition.workflow is not None:
        _check_workflow_plan(findings, data.get("spec") if isinstance(data.get("spec"), dict) else {}, resolve)
    report.diagnostics = findings.items
    return ValidationOutcome(report, definition if report.valid else None)


def findings_have_errors(findings: Findings) -> bool:
    return any(d.severity == "error" for d in findings.items)


def _check_envelope(f: Findings, data: dict, choice) -> bool:
    """What ossabus itself needs to store and address a manifest; errors in both modes."""
    ok = True
    api_version = data.get("apiVersion")
    if api_version is None:
        f.error("manifest.api_version_missing", "apiVersion is required (e.g. ossa/v0.3.4)", ["apiVersion"])
        ok = False
    elif choice is None:
        f.error(
            "manifest.api_version_unsupported",
            f"apiVersion {api_version!r} is not supported; use {SUPPORTED_TEXT}",
            ["apiVersion"],
        )
        ok = False
    elif choice.newer_than_known:
        f.warning(
            "manifest.api_version_newer",
            f"apiVersion {api_version} is newer than the newest schema of its line; checked against "
            f"ossa/v{choice.version}",
            ["apiVersion"],
        )
    kind = data.get("kind")
    allowed = KINDS_BY_SCHEMA[choice.version] if choice else ("Agent", "Task", "Workflow", "Flow")
    if kind is None:
        f.error("manifest.kind_missing", f"kind is required: one of {', '.join(allowed)}", ["kind"])
        ok = False
    elif kind not in allowed:
        f.error("manifest.kind_unsupported", f"kind {kind!r} is not one of {', '.join(allowed)}", ["kind"])
        ok = False
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        f.error("manifest.metadata_missing", "metadata is required and must be a mapping", ["metadata"])
        return False
    name = metadata.get("name")
    if name is None or name == "":
        f.error("manifest.name_missing", "metadata.name is required", ["metadata", "name"])
        ok = False
    elif not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > NAME_MAX:
        f.error(
            "manifest.name_invalid",
            f"metadata.name {name!r} is not a DNS-1123 label: lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {NAME_MAX} characters",
            ["metadata", "name"],
        )
        ok = False
    spec = data.get("spec")
    if spec is not None and not isinstance(spec, dict):
        f.error("manifest.spec_invalid", "spec must be a mapping", ["spec"])
        ok = False
    return ok


def _check_schema(f: Findings, data: dict, version: str, strict: bool) -> None:
    severity: Severity = "error" if strict else "warning"
    for err in validator(version).iter_errors(data):
        f.add(
            severity,
            f"schema.{err.validator}",
            _schema_message(err),
            list(err.absolute_path),
            source="schema",
        )


def _schema_message(err: ValidationError) -> str:
    message = _shorten(err.message)
    if err.context:  # anyOf / oneOf: say which branch came closest and why it failed
        closest = best_match(err.context)
        if closest is not None:
            where = json_path(list(closest.absolute_path))
            message += f" (closest match failed at {where}: {_shorten(closest.message)})"
    return message


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_workflow_plan(f: Findings, spec: dict, resolve: NameResolver | None) -> None:
    """Whether the workflow can run as written (contracts/workflow_plan.py): cycles, jump targets,
    expressions that cannot be read are errors; a step naming a manifest not registered (yet) is a
    warning, since a workflow may be registered before its agents (a run then fails that step)."""
    expressions.check(
        spec.get("steps"), lambda message, path: f.error("expression.invalid", message, path), ["spec", "steps"]
    )
    if f.items and any(d.code == "expression.invalid" for d in f.items):
        return
    try:
        plan = plan_of(spec)
    except PlanError as exc:
        _warn_unknown_refs(f, [manifest_name(r) for r in _top_level_refs(spec)], resolve)
        if not exc.wrong:
            f.warning("workflow.not_runnable", f"ossabus cannot run this workflow: {exc.message}", exc.path)
        else:
            f.error(exc.code, exc.message, exc.path)
        return
    from ossabus.registry.tools import check_json_schema  # (tools reads Findings from here)

    for key, schema in (("inputs", plan.inputs_schema), ("outputs", plan.outputs_schema)):
        if schema is not None:  # every run's input (or output) is checked against it
            check_json_schema(f, schema, ["spec", key], f"the workflow's {key} schema")
    _warn_unknown_refs(f, [s.ref for s in every_step(plan.steps) + every_step(plan.compensation) if s.ref], resolve)


def _top_level_refs(spec: dict) -> list[str]:
    steps = spec.get("steps") if isinstance(spec.get("steps"), list) else []
    refs = [
        s.get("ref") or s.get("agent_ref") or s.get("task_ref") or s.get("agent") for s in steps if isinstance(s, dict)
    ]
    return [r for r in refs if isinstance(r, str)]


def _warn_unknown_refs(f: Findings, refs: list[str], resolve: NameResolver | None) -> None:
    for ref in dict.fromkeys(refs):
        if resolve is not None and not resolve(ref):
            f.warning("workflow.unknown_ref", f"a step runs {ref!r}, which is not registered (yet)", ["spec", "steps"])
