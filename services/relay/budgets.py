"""The manifest's budgets, checked before a run or a completion starts (a 429 with the reason).

`constraints.cost.maxTokensPerDay` and `maxCostPerDay` are read from the agent's usage today (UTC),
as the telemetry service adds it up; `constraints.performance.maxConcurrentRequests` from the
concurrency slots the executors hold. Executors enforce the concurrency limit themselves too (a
run admitted in a race waits for a slot), so it holds across every replica.
"""

from __future__ import annotations

from fastapi import Request

from ossabus.contracts.agent import AgentDefinition
from ossabus.relay.errors import ApiError


async def check(request: Request, definition: AgentDefinition | None, assistant_id: str | None = None) -> None:
    if definition is None:
        return
    limits, name = definition.limits, definition.name
    if limits.max_tokens_per_day or limits.max_cost_per_day:
        used = await request.app.state.usage.day_total(name)
        if limits.max_tokens_per_day and used.total_tokens >= limits.max_tokens_per_day:
            spent = f"used {used.total_tokens} of its {limits.max_tokens_per_day} tokens"
            raise out_of_quota(name, spent, "maxTokensPerDay")
        if limits.max_cost_per_day and used.cost_usd >= limits.max_cost_per_day:
            spent = f"spent ${used.cost_usd:.4f} of its ${limits.max_cost_per_day:.2f}"
            raise out_of_quota(name, spent, "maxCostPerDay")
    if limits.max_concurrent_requests and assistant_id:
        held = await request.app.state.slots.held(assistant_id)
        if held >= limits.max_concurrent_requests:
            raise ApiError(
                429,
                f"The agent '{name}' is running {held} requests, its limit "
                "(constraints.performance.maxConcurrentRequests); try again shortly.",
                code="rate_limit_exceeded",
            )


def out_of_quota(agent: str, spent: str, limit: str) -> ApiError:
    return ApiError(
        429,
        f"The agent '{agent}' {spent} today (constraints.cost.{limit}); it takes new work again tomorrow (UTC).",
        code="insufficient_quota",
        extra={"type": "insufficient_quota"},
    )
