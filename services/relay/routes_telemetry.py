"""`GET /metrics` (Prometheus text, from the telemetry service) and `GET /v1/ossa/usage` (usage and
cost per agent, API key and day)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from ossabus.contracts import subjects
from ossabus.contracts.bus import AnyRequest
from ossabus.contracts.telemetry import MetricsText, UsageQuery, UsageReport
from ossabus.relay.auth import caller
from ossabus.relay.context import bus
from ossabus.relay.errors import ApiError

router = APIRouter(tags=["telemetry"])
DAY = r"^\d{4}-\d{2}-\d{2}$"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request):
    text = await bus(request).call(subjects.TELEMETRY_METRICS, AnyRequest(), MetricsText)
    return PlainTextResponse(text.text, media_type=PROMETHEUS_TEXT)


@router.get("/v1/ossa/usage")
async def usage(
    request: Request,
    agent: str | None = Query(None, max_length=253),
    key: str | None = Query(None, max_length=64, description="An API key's fingerprint (key_...)."),
    from_day: str | None = Query(None, alias="from", pattern=DAY),
    to_day: str | None = Query(None, alias="to", pattern=DAY),
):
    if from_day and to_day and from_day > to_day:
        raise ApiError(400, "`from` is after `to`.", param="from", code="invalid_value")
    for value, param in ((agent, "agent"), (key, "key")):
        if value is not None and not subjects.is_token(value):
            raise ApiError(400, f"`{param}` is not a valid name.", param=param, code="invalid_value")
    # A key sees its own project's usage only, whatever it asks for.
    query = UsageQuery(agent=agent, project=caller(request).project, principal=key, from_day=from_day, to_day=to_day)
    return await bus(request).call(subjects.TELEMETRY_USAGE, query, UsageReport)
