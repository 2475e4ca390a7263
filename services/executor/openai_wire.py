"""Chat completions over the OpenAI wire format, without litellm: one pooled HTTP client per provider.

Why by hand: litellm builds pydantic objects for every chunk of every stream and a logging object
for every call; for servers that already speak OpenAI's format none of that is needed. Here a
chunk is one `orjson.loads` and a few dict reads, and a request reuses a kept-alive connection
(HTTP/2 for https origins, where one connection carries many concurrent streams).

Bounds and errors are the ones litellm's path has (see `llm`): `OSSABUS_LLM_CONNECT_TIMEOUT_S` for
the connection, `OSSABUS_LLM_IDLE_TIMEOUT_S` for every read (the headers, then each piece of the
stream), HTTP statuses mapped by `llm.classify`, and redirects are never followed (a redirect
could lead past the egress check to an address the operator did not allow).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from ossabus.executor import wire_providers
from ossabus.executor.llm_types import Chunk, Completion, LLMRequest, ToolCallDelta
from ossabus.executor.redaction import redact

log = logging.getLogger(__name__)
MAX_ERROR_BODY = 64 * 1024
KEEPALIVE_CONNECTIONS = 256


class ProviderStatusError(Exception):
    """A provider's non-2xx answer; `classify` reads `status_code` and `message` as from litellm."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code, self.message = status_code, message


class ProviderConnectionError(Exception):
    """The connection failed or broke (refused, reset, TLS); named as litellm names it for `classify`."""


ProviderConnectionError.__name__ = "APIConnectionError"


@functools.cache
def user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ossabus/{version('ossabus')}"
    except PackageNotFoundError:
        return "ossabus"


class Pool:
    """One `httpx.AsyncClient` per origin and event loop: connections are kept alive between calls
    and never shared with another provider (whose key they must not see)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[int, str], httpx.AsyncClient] = {}

    def client(self, url: str) -> httpx.AsyncClient:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        key = (id(asyncio.get_running_loop()), origin)
        found = self._clients.get(key)
        if found is None or found.is_closed:
            found = httpx.AsyncClient(
                http2=parts.scheme == "https",
                follow_redirects=False,
                headers={"User-Agent": user_agent()},
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE_CONNECTIONS),
            )
            self._clients[key] = found
        return found

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


POOL = Pool()


def _timeout(idle: float, connect: float) -> httpx.Timeout:
    return httpx.Timeout(idle, connect=connect, pool=connect)


def _call(request: LLMRequest, stream: bool) -> wire_providers.WireCall:
    try:
        call = wire_providers.prepare(request.model, request.messages, request.tools, request.params)
    except wire_providers.NoKey as missing:
        raise ProviderStatusError(401, str(missing)) from None
    if stream:
        call.body["stream"] = True
        call.body["stream_options"] = {**(call.body.get("stream_options") or {}), "include_usage": True}
    return call


async def _refusal(response: httpx.Response) -> ProviderStatusError:
    """The provider's error, with the message its OpenAI-shaped body gives (or its first bytes)."""
    raw = b""
    async for piece in response.aiter_bytes():
        raw += piece
        if len(raw) > MAX_ERROR_BODY:
            break
    message = raw[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
    try:
        data = orjson.loads(raw)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
        elif isinstance(error, str):
            message = error
    except orjson.JSONDecodeError:
        pass
    return ProviderStatusError(response.status_code, message or f"HTTP {response.status_code}")


def _transport(exc: httpx.HTTPError) -> Exception:
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(str(exc))
    return ProviderConnectionError(str(exc) or type(exc).__name__)


@contextlib.asynccontextmanager
async def _answer(request: LLMRequest, stream: bool, idle: float, connect: float) -> AsyncIterator[httpx.Response]:
    """The provider's answer once its status says it is one (a refusal raises, body read)."""
    call = _call(request, stream)
    client = POOL.client(call.url)
    async with client.stream(
        "POST", call.url, content=orjson.dumps(call.body), headers=call.headers, timeout=_timeout(idle, connect)
    ) as response:
        if response.status_code >= 300:
            raise await _refusal(response)
        yield response


async def complete(request: LLMRequest, idle: float, connect: float) -> Completion:
    """One non-streamed completion."""
    try:
        async with _answer(request, False, idle, connect) as response:
            raw = await response.aread()
    except httpx.HTTPError as exc:
        raise _transport(exc) from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    answer = completion_of(data)
    if not answer.answered:  # the client hears only that; what came is for the operator
        log.warning(
            "model provider error: HTTP %s but no chat completion: %s",
            response.status_code,
            redact(raw[:300].decode("utf-8", "replace")),
        )
    return answer


def completion_of(data: Any) -> Completion:
    """A completion body read without a schema: what is missing is absent, never an exception."""
    choices = data.get("choices") if isinstance(data, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        calls.append(
            {
                "id": call.get("id") or "",
                "type": "function",
                "function": {"name": function.get("name") or "", "arguments": function.get("arguments") or ""},
            }
        )
    usage = data.get("usage") if isinstance(data, dict) and isinstance(data.get("usage"), dict) else None
    return Completion(
        text=message.get("content") or None,
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
        usage=_usage(usage) if usage else None,
        model=data.get("model") if isinstance(data, dict) else None,
        logprobs=choice.get("logprobs") or None,
        reasoning=message.get("reasoning_content") or message.get("reasoning") or None,
    )


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


async def stream(request: LLMRequest, idle: float, connect: float) -> AsyncIterator[Chunk]:
    """The chunks of one streamed completion, as they arrive (server-sent events, `[DONE]` ends)."""
    try:
        async with _answer(request, True, idle, connect) as response:
            async for data in _events(response):
                if data == b"[DONE]":
                    return
                try:
                    parsed = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue  # a comment or keep-alive some servers send as data
                if isinstance(parsed, dict) and parsed.get("error"):
                    raise _stream_failure(parsed["error"])
                yield chunk_of(parsed)
    except httpx.HTTPError as exc:
        raise _transport(exc) from exc


def _stream_failure(error: Any) -> ProviderStatusError:
    """An error sent inside a stream that began with 200 (vLLM, OpenRouter do this)."""
    if not isinstance(error, dict):
        return ProviderStatusError(500, str(error))
    code = str(error.get("code") or "")
    status = int(code) if code.isdigit() and 400 <= int(code) < 600 else 500
    return ProviderStatusError(status, str(error.get("message") or "the model provider's stream failed"))


async def _events(response: httpx.Response) -> AsyncIterator[bytes]:
    """The `data:` payloads of a server-sent event stream, split from the raw bytes (cheaper than
    decoding every line to text first)."""
    pending = b""
    async for piece in response.aiter_raw():
        pending += piece
        while True:
            end = pending.find(b"\n")
            if end < 0:
                break
            line, pending = pending[:end].rstrip(b"\r"), pending[end + 1 :]
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if pending.startswith(b"data:"):
        yield pending[5:].strip()


def chunk_of(data: Any) -> Chunk:
    """A `chat.completion.chunk` read without a schema."""
    if not isinstance(data, dict):
        return Chunk()
    out = Chunk(model=data.get("model"))
    usage = data.get("usage")
    if isinstance(usage, dict):
        out.usage = _usage(usage)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return out
    choice = choices[0]
    out.finish_reason = choice.get("finish_reason")
    logprobs = choice.get("logprobs")
    if logprobs:
        out.logprobs = {"content": logprobs.get("content"), "refusal": logprobs.get("refusal")}
    delta = choice.get("delta")
    if isinstance(delta, dict):
        out.text = delta.get("content") or None
        out.reasoning = delta.get("reasoning_content") or delta.get("reasoning") or None
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            out.tool_calls.append(
                ToolCallDelta(
                    index=int(call.get("index") or 0),
                    id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                )
            )
    return out
