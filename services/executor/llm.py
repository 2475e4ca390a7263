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
from dataclasses import dataclass, field
from typing import Any

from ossabus.contracts.agent import AgentDefinition, RetryPolicy
from ossabus.contracts.bus import PROVIDER_SPECIFIC_PARAMS
from ossabus.runtime import secrets
from ossabus.runtime.egress import EgressRefused, check_declared_access, resolve_checked

log = logging.getLogger(__name__)
DEFAULT_MODEL_ENV = "OSSABUS_DEFAULT_MODEL"
IDLE_TIMEOUT_ENV, DEFAULT_IDLE_TIMEOUT_S = "OSSABUS_LLM_IDLE_TIMEOUT_S", 60.0
CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT_S = "OSSABUS_LLM_CONNECT_TIMEOUT_S", 10.0
_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9._\-]+|api[_-]?key[=:]\s*\S+)", re.I)


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


@dataclass
class LLMRequest:
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    audit: Any = None  # the agent's `security.audit`: it can keep prompts and answers off its spans


@dataclass
class ToolCallDelta:
    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass
class Chunk:
    text: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    model: str | None = None
    logprobs: dict[str, Any] | None = None  # the choice's logprobs, when the request asked for them
    reasoning: str | None = None  # `reasoning_content`, from providers that stream what the model thinks


class LLMError(Exception):
    """A model call that failed; `code` is what OpenAI would put in `last_error.code`; `timed_out`
    when the provider did not answer at all (a 504 at the edge rather than a 502)."""

    def __init__(self, code: str, message: str, transient: bool, status: int | None = None, *, timed_out: bool = False):
        super().__init__(message)
        self.code, self.message, self.transient, self.status = code, message, transient, status
        self.timed_out = timed_out


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


def bounded(params: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """The call's parameters with HTTP timeouts set (connect, and each read), and the manifest's
    `maxLatencySeconds` taken out as the bound of the whole call."""
    import httpx

    out = dict(params)
    total = out.pop("timeout", None)
    idle = idle_timeout_s()
    out["timeout"] = httpx.Timeout(idle, connect=connect_timeout_s())
    return out, float(total) if total else None


def redact(text: str) -> str:
    """Error texts from providers can echo keys or auth headers; never pass them on."""
    text = _SECRET.sub("[redacted]", text)
    for name, value in os.environ.items():
        if value and len(value) >= 8 and ("KEY" in name or "TOKEN" in name or "SECRET" in name):
            text = text.replace(value, "[redacted]")
    return text[:500]


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
    if name == "APIConnectionError":
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


def _provider_and_name(model: str) -> tuple[str, str]:
    """(`openai` for a bare model name, else the litellm provider; the model's own name)."""
    provider, _, name = model.partition("/") if "/" in model else ("openai", "", model)
    return provider, name


def _supported(provider: str, name: str) -> set[str] | None:
    """The OpenAI parameters litellm's table says this model takes; None when it does not know it."""
    try:
        return set(_litellm().get_supported_openai_params(model=name, custom_llm_provider=provider) or ())
    except Exception:
        return None


def supported_extras(model: str, extras: dict[str, Any]) -> dict[str, Any]:
    """The provider parameters a Responses request passes through that this model takes (the
    OpenAI wire format takes them all; `wire_params` then puts them where they reach the server).
    A run does not fail for one its provider lacks: it is left out."""
    passable = {*PROVIDER_SPECIFIC_PARAMS, "user"}
    given = {k: v for k, v in extras.items() if k in passable and v is not None}
    provider, name = _provider_and_name(model)
    if not given or provider == "openai":
        return given
    supported = _supported(provider, name) or set()
    return {k: v for k, v in given.items() if k in supported}


def refused_param(model: str, params: dict[str, Any]) -> str | None:
    """The first provider-specific field this model's provider cannot honour (litellm's table), or
    None. The OpenAI wire format takes all of them: the server it points at decides."""
    provider, name = _provider_and_name(model)
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
    provider, name = _provider_and_name(model)
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


async def stream(request: LLMRequest, retry: RetryPolicy) -> AsyncIterator[Chunk]:
    """Stream one completion; retry transient failures that happen before the first chunk."""
    litellm = _litellm()
    await guard(request.params)
    params, total = bounded(request.params)
    idle = idle_timeout_s()
    attempt = 0
    while True:
        attempt += 1
        started = False
        try:
            async with asyncio.timeout(total):
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
                        break
                    chunk = _chunk(raw)
                    started = started or bool(chunk.text or chunk.tool_calls)
                    yield chunk
            if not started:  # never an empty "answer": a broken provider, or one worth asking again
                raise LLMError("server_error", NOT_A_COMPLETION, True)
            return
        except Exception as exc:
            error = classify(exc)
            if started or not error.transient or attempt >= retry.max_attempts:
                raise error from exc
            delay = backoff_delay(retry, attempt)
            log.info("model call failed (%s); retry %d/%d in %.2fs", error.code, attempt, retry.max_attempts - 1, delay)
            await asyncio.sleep(delay)


def openai_logprobs(value: Any) -> dict[str, Any] | None:
    """A choice's logprobs in OpenAI's shape (`content` and `refusal`, both present, null or not)."""
    if not value:
        return None
    data = value if isinstance(value, dict) else value.model_dump()
    return {"content": data.get("content"), "refusal": data.get("refusal")}


def _chunk(raw: Any) -> Chunk:
    out = Chunk(model=getattr(raw, "model", None))
    usage = getattr(raw, "usage", None)
    if usage:
        out.usage = {
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            "total_tokens": int(getattr(usage, "total_tokens", 0) or 0),
        }
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
