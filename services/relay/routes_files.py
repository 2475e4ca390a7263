"""The Files API: upload (multipart), list, retrieve, delete, content. Every file belongs to the
project of the key that uploaded it; another project's file is not found."""

from __future__ import annotations

import os
from typing import Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from ossabus.contracts.ids import new_id
from ossabus.relay.auth import DEFAULT_PROJECT, caller
from ossabus.relay.context import checked_id, now
from ossabus.relay.errors import ApiError
from ossabus.relay.pagination import paginate
from ossabus.store.files import FileObject, Files

router = APIRouter(prefix="/v1/files", tags=["files"])
MAX_FILE_ENV = "OSSABUS_MAX_FILE_BYTES"
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024  # OpenAI's limit per file
HARD_LIMIT = 4 * 1024 * 1024 * 1024  # what the upload route reads at most, whatever the setting
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_EXPIRY_S = 30 * 24 * 3600


def max_file_bytes() -> int:
    return int(os.environ.get(MAX_FILE_ENV) or DEFAULT_MAX_FILE_BYTES)


def files(request: Request) -> Files:
    return request.app.state.files


def project(request: Request) -> str:
    return caller(request).project or DEFAULT_PROJECT


async def file_or_404(request: Request, file_id: str) -> FileObject:
    found = await files(request).get(checked_id(file_id, "file", "file_id"))
    if found is None or found.project != project(request) or found.expired:
        raise ApiError(404, f"No such File object: {file_id}", param="file_id", code="not_found")
    return found


@router.post("")
async def upload(
    request: Request,
    file: UploadFile = File(...),  # noqa: B008 - FastAPI's way of declaring a multipart part
    purpose: str = Form(...),
    expires_after_anchor: str | None = Form(None, alias="expires_after[anchor]"),
    expires_after_seconds: int | None = Form(None, alias="expires_after[seconds]"),
):
    if purpose not in PURPOSES:
        raise ApiError(400, f"purpose must be one of {', '.join(PURPOSES)}", param="purpose", code="invalid_value")
    size = file.size if file.size is not None else len(await file.read())
    limit = max_file_bytes()
    if size > limit:
        raise ApiError(
            413, f"The file is {size} bytes; the limit is {limit} bytes.", param="file", code="file_too_large"
        )
    created = now()
    expires_at = None
    if expires_after_seconds is not None or expires_after_anchor is not None:
        if expires_after_anchor != "created_at" or expires_after_seconds is None:
            raise ApiError(400, "expires_after needs anchor 'created_at' and seconds", param="expires_after")
        if not 3600 <= expires_after_seconds <= MAX_EXPIRY_S:
            raise ApiError(400, "expires_after.seconds is between 3600 and 2592000", param="expires_after[seconds]")
        expires_at = created + expires_after_seconds
    name = os.path.basename(file.filename or "") or "upload"
    record = FileObject(
        id=new_id("file"),
        bytes=size,
        created_at=created,
        expires_at=expires_at,
        filename=name[:512],
        purpose=purpose,
        project=project(request),
    )
    await file.seek(0)
    return await files(request).create(record, file.file)


@router.get("")
async def list_files(
    request: Request,
    purpose: str | None = None,
    limit: int = 10_000,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
):
    mine = [
        f
        for f in await files(request).list()
        if f.project == project(request) and not f.expired and (purpose is None or f.purpose == purpose)
    ]
    return paginate(
        mine, lambda f: f.id, lambda f: f.model_dump(), limit=limit, order=order, after=after, max_limit=10_000
    )


@router.get("/{file_id}")
async def retrieve(request: Request, file_id: str):
    return await file_or_404(request, file_id)


@router.delete("/{file_id}")
async def delete(request: Request, file_id: str):
    found = await file_or_404(request, file_id)
    await files(request).delete(found.id)
    return {"id": found.id, "object": "file", "deleted": True}


@router.get("/{file_id}/content")
async def content(request: Request, file_id: str):
    found = await file_or_404(request, file_id)
    data = await files(request).content(found.id)
    disposition = f"attachment; filename*=UTF-8''{_quoted(found.filename)}"
    return Response(data, media_type="application/octet-stream", headers={"content-disposition": disposition})


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
