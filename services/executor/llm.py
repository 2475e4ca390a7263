"""Calling the model through litellm: parameters, streaming, retries, and errors without secrets.

Only failures before the first token are retried: after that the client has seen output, and a
retry would send it a second, different answer.

Every call is bounded: a provider that accepts the connection and then sends nothing used to hold
a chat completion for minutes with nothing logged. `OSSABUS_LLM_IDLE_TIMEOUT_S` (default 60) is the
longest wait for the next byte (the answer's headers, then each chunk) and
`OSSABUS_LLM_CONNECT_TIMEOUT_S` (default 10) the longest wait for a connection; an expired wait is
a transient failure, retried per the agent's policy.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

from ossabus.contracts.agent import AgentDefinition, RetryPolicy
from ossabus.contracts.bus import PROVIDER_SPECIFIC_PARAMS
from ossabus.executor import openai_wire, wire_providers
from ossabus.executor.llm_types import Chunk, Completion, LLMError, LLMRequest, ToolCallDelta
from ossabus.executor.redaction import redact
from ossabus.runtime import secrets
from ossabus.runtime.egress import EgressRefused, check_declared_access, resolve_checked

log = logging.getLogger(__name__)
DEFAULT_MODEL_ENV = "OSSABUS_DEFAULT_MODEL"
IDLE_TIMEOUT_ENV, DEFAULT_IDLE_TIMEOUT_S = "OSSABUS_LLM_IDLE_TIMEOUT_S", 60.0
CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT_S = "OSSABUS_LLM_CONNECT_TIMEOUT_S", 10.0


_LITELLM_IMPORT = threading.Lock()


@functools.cache
def _litellm():
    """litellm, imported and configured once, on first use: the import costs ~3 s, which no command but
    a running executor should pay. One thread imports it while any other waits: two threads inside
    litellm's import at once can see it half-initialised ("module 'litellm' has no attribute ...")."""
    with _LITELLM_IMPORT:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.drop_params = True  # providers that lack a parameter (seed, parallel_tool_calls) still answer
        return litellm


def _seconds(variable: str, default: float) -> float:
    try:
        value = float(os.environ.get(variable) or default)
    except ValueError:
        log.warning("%s is not a number of seconds; using %g", variable, default)
        return default
    return value if value > 0 else default


def idle_timeout_s() -> float:
    return _seconds(IDLE_TIMEOUT_ENV, DEFAULT_IDLE_TIMEOUT_S)


def connect_timeout_s() -> float:
    return _seconds(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT_S)


def no_answer() -> LLMError:
    return LLMError(
        "server_error",
        f"the model provider did not answer within {idle_timeout_s():g} s ({IDLE_TIMEOUT_ENV})",
        True,
        timed_out=True,
    )


# litellm turns a 200 whose body is not a completion into a well-formed empty one (finish_reason
# "stop", usage computed), so "no text and no tool call at all" is the sign to go by.
NOT_A_COMPLETION = "the model provider's answer was not a chat completion (no text and no tool calls)"


def whole_call_s(params: dict[str, Any]) -> float | None:
    """The manifest's `maxLatencySeconds` (carried as `timeout`): the bound of the whole call."""
    total = params.get("timeout")
    return float(total) if total else None


def litellm_params(params: dict[str, Any]) -> dict[str, Any]:
    """The call's parameters for litellm, its HTTP timeouts (connect, and each read) in place of the
    bound of the whole call (`whole_call_s`, applied around the call)."""
    import httpx

    return {**params, "timeout": httpx.Timeout(idle_timeout_s(), connect=connect_timeout_s())}


_INTERNALS = re.compile(r"Traceback|File \"|\bline \d+|/[\w.\-]+/[\w.\-/]+\.py|site-packages|\{.*\}", re.S)
_LITELLM_PREFIX = re.compile(r"^(litellm\.)?[A-Za-z]+(Error|Exception):\s*(litellm\.[A-Za-z]+(Error|Exception):\s*)?")


def client_detail(text: str) -> str:
    """What of a provider's error text a client may see: its first line, if it says something
    plain. Tracebacks, file paths and dumped bodies stay in the server's log."""
    line = _LITELLM_PREFIX.sub("", text.strip().splitlines()[0] if text.strip() else "").strip()
    if not line or _INTERNALS.search(line) or len(line) > 300:
        return "see the server log"
    return redact(line)


def classify(exc: Exception) -> LLMError:
    """litellm raises OpenAI-style exceptions; map them to run error codes and transience.

    The full text goes to the log (redacted); the error keeps only `client_detail` of it."""
    if isinstance(exc, LLMError):
        return exc
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    full = redact(str(getattr(exc, "message", None) or exc))
    log.warning("model provider error: %s (HTTP %s): %s", name, status, full)
    detail = client_detail(str(getattr(exc, "message", None) or exc))
    lowered = full.lower()
    missing_key = "missing credentials" in lowered or ("api key" in lowered and "missing" in lowered)
    if missing_key or status in (401, 403) or name in ("AuthenticationError", "PermissionDeniedError"):
        # Never transient (litellm reports OpenAI's missing key as a 500, which would be retried).
        message = (
            "the model provider has no API key: set its variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) "
            "where the executor runs, or name one with the manifest's api_key_env"
            if missing_key
            else "the model provider refused the credentials (check its API key)"
        )
        return LLMError("server_error", message, False, status)
    if status == 429 or name == "RateLimitError":
        return LLMError("rate_limit_exceeded", f"the model provider is rate limiting: {detail}", True, 429)
    if name in ("Timeout", "APITimeoutError") or isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return no_answer()
    if name == "APIConnectionError" or isinstance(exc, openai_wire.ProviderConnectionError):
        return LLMError("server_error", f"could not connect to the model provider: {detail}", True, status)
    if name in ("ServiceUnavailableError", "InternalServerError"):
        return LLMError("server_error", f"the model provider failed: {detail}", True, status)
    if isinstance(status, int) and status >= 500:
        return LLMError("server_error", f"the model provider failed: {detail}", True, status)
    if isinstance(status, int) and 400 <= status < 500:
        return LLMError("invalid_prompt", f"the model provider rejected the request: {detail}", False, status)
    return LLMError("server_error", f"the model call failed: {detail}", False, status)


def backoff_delay(policy: RetryPolicy, attempt: int) -> float:
    if policy.backoff == "none":
        delay = policy.initial_delay_ms
    elif policy.backoff == "linear":
        delay = policy.initial_delay_ms * attempt
    else:
        delay = policy.initial_delay_ms * 2 ** (attempt - 1)
    return min(delay, policy.max_delay_ms) / 1000


def resolve_model(definition: AgentDefinition | None, override: str | None) -> str:
    """litellm model string: the run's override, else the agent's, else OSSABUS_DEFAULT_MODEL."""
    from ossabus.registry.convert_openai import split_model
    from ossabus.registry.providers import litellm_model, litellm_provider

    if override:
        provider, model = split_model(override)
        return litellm_model(litellm_provider(provider) or provider, model)
    if definition is not None and definition.llm.litellm_model:
        return definition.llm.litellm_model
    default = os.environ.get(DEFAULT_MODEL_ENV)
    if default:
        return default
    raise LLMError("invalid_prompt", f"agent has no model and {DEFAULT_MODEL_ENV} is not set", False)


# A manifest that chose its own base URL and names no key of its own gets this one, so that litellm
# never fills in the operator's provider key (OPENAI_API_KEY, ...) for a host the author picked.
NO_KEY = "no-key"


def connection_params(definition: AgentDefinition | None) -> dict[str, Any]:
    """Base URL, key and headers from the manifest; litellm reads the standard variables otherwise.

    Keys and header values are secrets resolved now, from the variables the operator allows
    (`ossabus.runtime.secrets`). The base URL is checked against the egress policy by `guard`
    before every call.
    """
    if definition is None:
        return {}
    llm = definition.llm
    params: dict[str, Any] = {}
    try:
        if llm.api_key_env:
            params["api_key"] = secrets.variable(
                llm.api_key_env, "the agent's api_key_env", provider_endpoint=not llm.base_url
            )
        if llm.headers:
            params["extra_headers"] = {k: secrets.resolve(v, f"the agent's header {k}") for k, v in llm.headers.items()}
    except secrets.SecretError as exc:
        raise LLMError("server_error", exc.message, False) from exc
    if llm.base_url:
        try:
            check_declared_access(definition.security.network_access, llm.base_url, "the agent's base_url")
        except EgressRefused as refused:
            raise LLMError("server_error", refused.message, False) from refused
        params["api_base"] = llm.base_url
        params.setdefault("api_key", NO_KEY)
    return params


# Fields litellm (at the pinned version) lists for the OpenAI format but does not put in the body.
LITELLM_DROPS = {"verbosity", "prompt_cache_key", "prompt_cache_retention", "safety_identifier"}


_supported = wire_providers.litellm_fields


def supported_extras(model: str, extras: dict[str, Any]) -> dict[str, Any]:
    """The provider parameters a Responses request passes through that this model takes (the
    OpenAI wire format takes them all; `wire_params` then puts them where they reach the server).
    A run does not fail for one its provider lacks: it is left out."""
    passable = {*PROVIDER_SPECIFIC_PARAMS, "user"}
    given = {k: v for k, v in extras.items() if k in passable and v is not None}
    provider, name = wire_providers.split(model)
    if not given or provider == "openai":
        return given
    supported = _supported(provider, name) or set()
    return {k: v for k, v in given.items() if k in supported}


def refused_param(model: str, params: dict[str, Any]) -> str | None:
    """The first provider-specific field this model's provider cannot honour (litellm's table), or
    None. The OpenAI wire format takes all of them: the server it points at decides."""
    provider, name = wire_providers.split(model)
    given = [k for k in PROVIDER_SPECIFIC_PARAMS if params.get(k) is not None]
    if provider == "openai" or not given:
        return None
    supported = _supported(provider, name)
    if supported is None:
        return None
    return next((k for k in given if k not in supported), None)


def wire_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """For the OpenAI wire format, provider-specific fields litellm does not know for this model go
    in the body as given (`extra_body`): the server behind the URL decides what it honours."""
    provider, name = wire_providers.split(model)
    given = [k for k in (*PROVIDER_SPECIFIC_PARAMS, "user") if params.get(k) is not None]
    if provider != "openai" or not given:
        return params
    known = _supported(provider, name) or set()
    unknown = {k: params[k] for k in given if k not in known or k in LITELLM_DROPS}
    if not unknown:
        return params
    out = {k: v for k, v in params.items() if k not in unknown}
    out["extra_body"] = {**(params.get("extra_body") or {}), **unknown}
    return out


async def guard(params: dict[str, Any]) -> None:
    """Refuse a manifest's base URL that the operator's egress policy does not allow."""
    base = params.get("api_base")
    if base:
        try:
            await resolve_checked(str(base), what="the agent's base_url")
        except EgressRefused as refused:
            raise LLMError("server_error", refused.message, False) from refused


def direct(request: LLMRequest) -> bool:
    """Whether this call goes over the OpenAI wire format itself (`openai_wire`) or through litellm."""
    return wire_providers.speaks_openai(request.model, request.client)


async def stream(request: LLMRequest, retry: RetryPolicy) -> AsyncIterator[Chunk]:
    """Stream one completion; retry transient failures that happen before the first chunk."""
    await guard(request.params)
    total = whole_call_s(request.params)
    wire = direct(request)
    attempt = 0
    while True:
        attempt += 1
        started, usage_seen, text = False, False, []
        try:
            async with asyncio.timeout(total):
                chunks = (
                    openai_wire.stream(request, idle_timeout_s(), connect_timeout_s())
                    if wire
                    else _litellm_stream(request)
                )
                async for chunk in chunks:
                    started = started or bool(chunk.text or chunk.tool_calls)
                    usage_seen = usage_seen or chunk.usage is not None
                    if wire and chunk.text:
                        text.append(chunk.text)
                    yield chunk
            if not started:  # never an empty "answer": a broken provider, or one worth asking again
                raise LLMError("server_error", NOT_A_COMPLETION, True)
            if wire and not usage_seen:  # a server that ignores `include_usage`: counted as litellm would
                yield Chunk(usage=estimated_usage(request, "".join(text)))
            return
        except Exception as exc:
            error = classify(exc)
            if started or not error.transient or attempt >= retry.max_attempts:
                raise error from exc
            delay = backoff_delay(retry, attempt)
            log.info("model call failed (%s); retry %d/%d in %.2fs", error.code, attempt, retry.max_attempts - 1, delay)
            await asyncio.sleep(delay)


async def _litellm_stream(request: LLMRequest) -> AsyncIterator[Chunk]:
    litellm = _litellm()
    params = litellm_params(request.params)
    idle = idle_timeout_s()
    response = await asyncio.wait_for(
        litellm.acompletion(
            model=request.model,
            messages=request.messages,
            tools=request.tools or None,
            stream=True,
            stream_options={"include_usage": True},
            num_retries=0,
            **params,
        ),
        idle + connect_timeout_s(),
    )
    chunks = aiter(response)
    while True:
        try:  # the HTTP read timeout bounds each byte; this bounds each chunk whatever the transport
            raw = await asyncio.wait_for(anext(chunks), idle)
        except StopAsyncIteration:
            return
        yield _chunk(raw)


async def complete(request: LLMRequest, retry: RetryPolicy) -> Completion:
    """One non-streamed completion, retried on transient failures."""
    await guard(request.params)
    bound = whole_call_s(request.params) or idle_timeout_s() + connect_timeout_s()
    wire = direct(request)
    attempt = 0
    while True:
        attempt += 1
        try:
            async with asyncio.timeout(bound):
                if wire:
                    answer = await openai_wire.complete(request, idle_timeout_s(), connect_timeout_s())
                else:
                    answer = await _litellm_complete(request)
            if not answer.answered:
                raise LLMError("server_error", NOT_A_COMPLETION, True)
            if answer.usage is None:
                answer.usage = estimated_usage(request, answer.text or "")
            return answer
        except Exception as exc:
            error = classify(exc)
            if not error.transient or attempt >= retry.max_attempts:
                raise error from exc
            await asyncio.sleep(backoff_delay(retry, attempt))


async def _litellm_complete(request: LLMRequest) -> Completion:
    params = litellm_params(request.params)
    response = await _litellm().acompletion(
        model=request.model, messages=request.messages, tools=request.tools or None, num_retries=0, **params
    )
    choices = getattr(response, "choices", None) or []
    choice = choices[0] if choices else None
    message = getattr(choice, "message", None)
    usage = getattr(response, "usage", None)
    return Completion(
        text=getattr(message, "content", None) or None,
        tool_calls=[
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in getattr(message, "tool_calls", None) or []
        ],
        finish_reason=getattr(choice, "finish_reason", None),
        # litellm fills in zeros when the provider reported no usage: that is "unknown", counted then
        usage=_usage(usage) if usage and any(_usage(usage).values()) else None,
        model=getattr(response, "model", None),
        logprobs=openai_logprobs(getattr(choice, "logprobs", None)),
        reasoning=getattr(message, "reasoning_content", None) or None,
    )


def estimated_usage(request: LLMRequest, answer: str) -> dict[str, int]:
    """Usage for a provider that reported none, by litellm's token counting for this model."""
    prompt = count_tokens(request.model, request.messages)
    try:
        completion = int(_litellm().token_counter(model=request.model, text=answer)) if answer else 0
    except Exception:
        completion = len(answer) // 4
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def openai_logprobs(value: Any) -> dict[str, Any] | None:
    """A choice's logprobs in OpenAI's shape (`content` and `refusal`, both present, null or not)."""
    if not value:
        return None
    data = value if isinstance(value, dict) else value.model_dump()
    return {"content": data.get("content"), "refusal": data.get("refusal")}


def _usage(usage: Any) -> dict[str, int]:
    """A litellm usage object as the counts ossabus keeps."""
    return {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        "total_tokens": int(getattr(usage, "total_tokens", 0) or 0),
    }


def _chunk(raw: Any) -> Chunk:
    out = Chunk(model=getattr(raw, "model", None))
    usage = getattr(raw, "usage", None)
    if usage:
        out.usage = _usage(usage)
    choices = getattr(raw, "choices", None) or []
    if not choices:
        return out
    choice = choices[0]
    delta = getattr(choice, "delta", None)
    out.finish_reason = getattr(choice, "finish_reason", None)
    out.logprobs = openai_logprobs(getattr(choice, "logprobs", None))
    if delta is not None:
        out.text = getattr(delta, "content", None) or None
        out.reasoning = getattr(delta, "reasoning_content", None) or None
        for call in getattr(delta, "tool_calls", None) or []:
            fn = getattr(call, "function", None)
            out.tool_calls.append(
                ToolCallDelta(
                    index=int(getattr(call, "index", 0) or 0),
                    id=getattr(call, "id", None),
                    name=getattr(fn, "name", None) if fn else None,
                    arguments=(getattr(fn, "arguments", None) or "") if fn else "",
                )
            )
    return out


def count_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    """Prompt tokens as litellm counts them for this model (its tokenizer, or its default)."""
    try:
        return int(_litellm().token_counter(model=model, messages=messages))
    except Exception:
        return sum(len(json.dumps(m)) // 4 for m in messages)
