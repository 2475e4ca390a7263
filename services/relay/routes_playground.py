"""`GET /`: the playground, one self-contained page (no build step) that chats with any agent
through `/api/chat` and keeps the conversation across reloads."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["playground"])


@cache
def page() -> str:
    return resources.files("ossabus.relay.vercel").joinpath("playground.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground() -> HTMLResponse:
    return HTMLResponse(page(), headers={"cache-control": "no-cache"})
