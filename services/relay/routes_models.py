"""`/v1/models`: every agent in the registry, plus the provider models agents use or are configured."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request

from ossabus.relay.context import manifests
from ossabus.relay.errors import ApiError

router = APIRouter(prefix="/v1", tags=["models"])
MODELS_ENV = "OSSABUS_MODELS"


async def all_models(request: Request) -> list[dict]:
    items = await manifests(request)
    models: dict[str, dict] = {}
    for item in items:
        if item.kind in ("Agent", "Task"):
            models[item.name] = {"id": item.name, "object": "model", "created": item.created_at, "owned_by": "ossabus"}
    provider_models = {m.strip() for m in os.environ.get(MODELS_ENV, "").split(",") if m.strip()}
    provider_models |= {
        i.definition.llm.litellm_model for i in items if i.definition and i.definition.llm.litellm_model
    }
    for model in sorted(provider_models):
        models.setdefault(model, {"id": model, "object": "model", "created": 0, "owned_by": model.split("/", 1)[0]})
    return list(models.values())


@router.get("/models")
async def list_models(request: Request):
    return {"object": "list", "data": await all_models(request)}


@router.get("/models/{model_id:path}")
async def get_model(request: Request, model_id: str):
    for model in await all_models(request):
        if model["id"] == model_id:
            return model
    raise ApiError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
