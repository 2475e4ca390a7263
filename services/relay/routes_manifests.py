"""`/v1/ossa/manifests` and `/v1/ossa/validate`: the registry over HTTP."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from ossabus.contracts import subjects
from ossabus.contracts.bus import (
    DeleteManifestRequest,
    DeleteManifestResult,
    GetManifestRequest,
    ListManifestsRequest,
    ManifestList,
    ManifestRecord,
    ManifestSummary,
    PutManifestRequest,
    PutManifestResult,
    ValidateManifestRequest,
    ValidateManifestResult,
)
from ossabus.relay.auth import require_admin
from ossabus.relay.body import manifest_text
from ossabus.relay.errors import ApiError
from ossabus.relay.pagination import paginate
from ossabus.runtime.bus import BusClient

router = APIRouter(prefix="/v1/ossa", tags=["ossa"])
OBJECT = "ossa.manifest"


def bus(request: Request) -> BusClient:
    return request.app.state.bus


def summary_json(summary: ManifestSummary) -> dict[str, Any]:
    return {"id": summary.name, "object": OBJECT, **summary.model_dump(mode="json")}


def record_json(record: ManifestRecord) -> dict[str, Any]:
    body = {"id": record.name, "object": OBJECT, **record.model_dump(mode="json", exclude={"raw"})}
    return body


def _name(name: str) -> str:
    try:
        return subjects.token(name)
    except subjects.InvalidSubjectToken as exc:
        raise ApiError(404, f"no manifest named {name!r}", param="name", code="not_found") from exc


@router.get("/manifests")
async def list_manifests(
    request: Request,
    kind: Literal["Agent", "Task", "Workflow", "Flow"] | None = None,
    limit: int = 20,
    order: Literal["asc", "desc"] = "asc",
    after: str | None = None,
    before: str | None = None,
):
    result = await bus(request).call(subjects.REGISTRY_LIST, ListManifestsRequest(kind=kind), ManifestList)
    items = sorted(result.data, key=lambda m: m.name)
    return paginate(items, lambda m: m.name, summary_json, limit=limit, order=order, after=after, before=before)


@router.post("/manifests", status_code=201)
async def create_manifest(request: Request, strict: bool = False):
    require_admin(request, "write agent manifests")
    text, fmt = await manifest_text(request)
    put = PutManifestRequest(content=text, format=fmt, mode="create", strict=strict, source="api")
    result = await bus(request).call(subjects.REGISTRY_PUT, put, PutManifestResult)
    request.app.state.catalog.invalidate()  # read-your-writes before the change event
    return JSONResponse(record_json(result.record), status_code=201)


@router.get("/manifests/{name}")
async def get_manifest(
    request: Request,
    name: str,
    format: Literal["json", "yaml"] = "json",
    version: int | None = Query(None, ge=1),
):
    record = await bus(request).call(
        subjects.REGISTRY_GET, GetManifestRequest(name=_name(name), version=version), ManifestRecord
    )
    if format == "yaml":
        text = record.raw if record.format == "yaml" else yaml.safe_dump(record.manifest, sort_keys=False)
        return Response(text, media_type="application/yaml")
    return record_json(record)


@router.put("/manifests/{name}")
async def replace_manifest(request: Request, name: str, strict: bool = False):
    require_admin(request, "write agent manifests")
    text, fmt = await manifest_text(request)
    put = PutManifestRequest(content=text, format=fmt, name=_name(name), mode="upsert", strict=strict, source="api")
    result = await bus(request).call(subjects.REGISTRY_PUT, put, PutManifestResult)
    request.app.state.catalog.invalidate()  # read-your-writes before the change event
    return JSONResponse(record_json(result.record), status_code=201 if result.created else 200)


@router.delete("/manifests/{name}")
async def delete_manifest(request: Request, name: str):
    require_admin(request, "write agent manifests")
    await bus(request).call(subjects.REGISTRY_DELETE, DeleteManifestRequest(name=_name(name)), DeleteManifestResult)
    request.app.state.catalog.invalidate()  # read-your-writes before the change event
    return {"id": name, "object": f"{OBJECT}.deleted", "deleted": True}


@router.post("/validate")
async def validate(request: Request, strict: bool = False):
    text, fmt = await manifest_text(request)
    check = ValidateManifestRequest(content=text, format=fmt, strict=strict)
    result = await bus(request).call(subjects.REGISTRY_VALIDATE, check, ValidateManifestResult)
    diagnostics = [d for r in result.reports for d in r.diagnostics]
    return {
        "object": "ossa.validation",
        "valid": result.valid,
        "strict": strict,
        "errors": [d.model_dump(mode="json") for d in diagnostics if d.severity == "error"],
        "warnings": [d.model_dump(mode="json") for d in diagnostics if d.severity == "warning"],
        "manifests": [
            {
                "name": r.name,
                "kind": r.kind,
                "api_version": r.api_version,
                "schema_version": r.schema_version,
                "valid": r.valid,
            }
            for r in result.reports
        ],
    }
