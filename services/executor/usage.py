"""The usage of each model call, published for the telemetry service to add up.

Records go into the OSSA_USAGE stream without waiting for JetStream's acknowledgement (a core
publish on a stream subject is stored all the same): a model call should not wait a round trip for
its bookkeeping. Each record's id is its `Nats-Msg-Id`, so a record sent twice counts once.
"""

from __future__ import annotations

import functools
import logging
import time

from nats.aio.client import Client

from ossabus.contracts import subjects
from ossabus.contracts.telemetry import UsageRecord
from ossabus.executor import llm

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1024)
def _prices(model: str) -> tuple[float, float] | None:
    """USD per prompt and per completion token from litellm's price map (shipped with it, read
    locally), or None for a model it does not price (local and fake models cost nothing)."""
    try:
        prompt, completion = llm._litellm().cost_per_token(
            model=model, prompt_tokens=1_000_000, completion_tokens=1_000_000
        )
    except Exception:
        return None
    return prompt / 1_000_000, completion / 1_000_000


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    prices = _prices(model)
    return prices[0] * prompt_tokens + prices[1] * completion_tokens if prices else 0.0


async def report(
    nc: Client,
    *,
    record_id: str,
    agent: str | None,
    model: str,
    kind: str,
    principal: str,
    project: str,
    usage: dict[str, int] | None,
    run_id: str | None = None,
    thread_id: str | None = None,
) -> None:
    prompt = int((usage or {}).get("prompt_tokens", 0))
    completion = int((usage or {}).get("completion_tokens", 0))
    record = UsageRecord(
        id=record_id,
        agent=agent,
        model=model,
        principal=principal,
        project=project,
        kind=kind,  # type: ignore[arg-type]
        run_id=run_id,
        thread_id=thread_id,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost_usd(model, prompt, completion),
        at=time.time(),
    )
    try:
        await nc.publish(subjects.usage(agent), record.model_dump_json().encode(), headers={"Nats-Msg-Id": record_id})
    except Exception:  # bookkeeping must not fail the call it accounts for
        log.exception("could not report usage of %s", record_id)
