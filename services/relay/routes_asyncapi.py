"""`GET /asyncapi` (JSON, or YAML with `?format=yaml`), `/asyncapi.json`, `/asyncapi.yaml`: the bus contract."""

from __future__ import annotations

from functools import cache
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

router = APIRouter(tags=["bus"])


@cache
def _document() -> dict:
    from ossabus.contracts.asyncapi import build

    return build()


def _yaml() -> Response:
    import yaml

    return Response(yaml.safe_dump(_document(), sort_keys=True, allow_unicode=True), media_type="application/yaml")


@router.get("/asyncapi")
async def asyncapi(format: Literal["json", "yaml"] = "json"):
    return _yaml() if format == "yaml" else JSONResponse(_document())


@router.get("/asyncapi.json")
async def asyncapi_json():
    return JSONResponse(_document())


@router.get("/asyncapi.yaml")
async def asyncapi_yaml():
    return _yaml()
