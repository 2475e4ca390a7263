"""A deterministic OpenAI-compatible LLM server for tests and benchmarks (its own process, real socket).

Behaviour comes from directives in the conversation, so a test says what it wants in plain text:

- default: answers `Echo: <last user text>`, streamed a word at a time;
- `[[call:NAME {"json": "args"}]]` (repeatable): answers with tool calls (parallel when several);
  once the conversation ends with tool results, answers `Tool results: <outputs>`;
  `[[call64:NAME BASE64]]` the same with base64 arguments (arguments that hold a directive themselves);
- `[[fail:STATUS]]` fails every time; `[[fail:STATUS:N]]` fails the first N attempts of that conversation;
- `[[slow:SECONDS]]` waits before the first token; `[[delay:MS]]` waits between tokens;
- `[[stall:MS]]` streams two words, then stalls for MS before the rest;
- `[[long:N]]` answers N words (`max_tokens` cuts it with finish_reason `length`);
- `[[json]]` answers a JSON object;
- `[[loop]]` with `[[call:...]]`: keeps calling the tools even after their results (a runaway agent);
- `[[garbage]]` answers 200 with JSON that is not an OpenAI completion (a broken or hostile provider);
- `[[nousage]]` leaves usage out (of the answer, and of the stream even when `include_usage` asks);
- `[[streamerror]]` streams the text, then an `{"error": ...}` event instead of the end (as vLLM does);
- `POST /v1/embeddings`: lexical embeddings (hashed bag of words, 256 dimensions or `dimensions`);
  an input holding `[[fail` answers 500, one holding `[[slow:SECONDS]]` answers that much later;
- `[[think SOME WORDS]]`: streams SOME WORDS as `reasoning_content` before the answer;
- `logprobs: true` in the request: made-up logprobs per word, in the message and in each chunk.

Usage counts words: prompt tokens are the words of all messages, completion tokens the words sent.
`GET /_requests` returns every request body received (with `_meta`: path, query, the authorization
and api-key headers, the user agent and the caller's port, which shows a kept-alive connection);
`GET /_concurrency` how many requests were inside their `[[slow:]]` wait at once (now, and at most);
`GET /_concurrency?containing=TEXT` counts only the requests whose messages hold TEXT (a test's own
tag: a request another test left waiting must not count); `POST /_reset` forgets both;
`GET /_streams?containing=TEXT` each streamed answer to a request holding TEXT: the words it sent
and whether it `finished` or was `abandoned` by its reader (who closed the connection before the end).

Run: python tests/fake_llm.py --port 0   (prints `FAKE_LLM_PORT=<port>` once listening);
`--tls-cert CERT --tls-key KEY` serves HTTPS instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import socket
import sys
import time
from collections import Counter
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

DIRECTIVE = re.compile(r"\[\[(\w+)(?::([^\]\s]*))?(?:\s+(.*?))?\]\]", re.S)
REQUESTS: list[dict[str, Any]] = []
ATTEMPTS: Counter[str] = Counter()
CONCURRENT = {"now": 0, "max": 0}  # requests inside their [[slow:]] wait at once, and the most seen
WAITS: list[dict[str, Any]] = []  # each [[slow:]] wait: the request's text, when it began and ended
STREAMS: list[dict[str, Any]] = []  # each streamed answer: the request's text, words sent, how it ended


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def words(text: str) -> int:
    return len(text.split())


def plan(body: dict[str, Any]) -> dict[str, Any]:
    """What to answer: text or tool calls, with failure and timing directives."""
    messages = body.get("messages") or []
    last_user = next((text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
    directives = [(m.group(1), m.group(2), m.group(3)) for m in DIRECTIVE.finditer(last_user)]
    clean = DIRECTIVE.sub("", last_user).strip()
    out: dict[str, Any] = {"fail": None, "slow": 0.0, "delay": 0.0, "stall": 0.0, "calls": [], "text": f"Echo: {clean}"}
    for name, arg, rest in directives:
        if name == "fail":
            status, _, times = (arg or "500").partition(":")
            key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
            ATTEMPTS[key] += 1
            if not times or ATTEMPTS[key] <= int(times):
                out["fail"] = int(status)
        elif name == "slow":
            out["slow"] = float(arg or 1)
        elif name == "delay":
            out["delay"] = float(arg or 10) / 1000
        elif name == "stall":
            out["stall"] = float(arg or 1000) / 1000
        elif name == "long":
            out["text"] = " ".join(f"w{i}" for i in range(int(arg or 100)))
        elif name == "json":
            out["text"] = json.dumps({"answer": clean, "ok": True})
        elif name == "garbage":
            out["garbage"] = True
        elif name == "nousage":
            out["nousage"] = True
        elif name == "streamerror":
            out["streamerror"] = True
        elif name == "think":
            out["think"] = (rest or "").strip()
        elif name == "call":
            out["calls"].append({"name": arg, "arguments": (rest or "{}").strip()})
        elif name == "call64":
            out["calls"].append({"name": arg, "arguments": base64.b64decode((rest or "").strip()).decode()})
    looping = any(name == "loop" for name, _, _ in directives)
    if messages and messages[-1].get("role") == "tool" and not looping:
        out["calls"] = []
        outputs = [text_of(m) for m in messages if m.get("role") == "tool"]
        out["text"] = "Tool results: " + " | ".join(outputs)
    return out


def usage(body: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = sum(words(text_of(m)) for m in body.get("messages") or [])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def pieces(text: str, max_tokens: int | None) -> tuple[list[str], str]:
    parts = text.split(" ")
    if max_tokens is not None and len(parts) > max_tokens:
        return parts[:max_tokens], "length"
    return parts, "stop"


def error(status: int) -> JSONResponse:
    kinds = {429: ("rate_limit_exceeded", "rate_limit_error"), 400: ("invalid_prompt", "invalid_request_error")}
    code, kind = kinds.get(status, ("server_error", "server_error"))
    body = {"error": {"message": f"fake upstream failure {status}", "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def tool_calls(calls: list[dict[str, str]], salt: str) -> list[dict[str, Any]]:
    return [
        {
            "id": "call_" + hashlib.sha256(f"{salt}{i}{c['name']}".encode()).hexdigest()[:24],
            "type": "function",
            "function": {"name": c["name"], "arguments": c["arguments"]},
        }
        for i, c in enumerate(calls)
    ]


async def chat(request: Request):
    body = await request.json()
    REQUESTS.append(
        {
            **body,
            "_meta": {
                "path": request.url.path,
                "query": request.url.query,
                "authorization": request.headers.get("authorization"),
                "api_key_header": request.headers.get("api-key"),
                "user_agent": request.headers.get("user-agent"),
                "peer_port": request.client.port if request.client else None,
                "http_version": request.scope.get("http_version"),
            },
        }
    )
    p = plan(body)
    if p["slow"]:
        CONCURRENT["now"] += 1
        CONCURRENT["max"] = max(CONCURRENT["max"], CONCURRENT["now"])
        wait = {"text": " ".join(text_of(m) for m in body.get("messages") or []), "began": time.monotonic()}
        WAITS.append(wait)
        try:
            await asyncio.sleep(p["slow"])
        finally:
            CONCURRENT["now"] -= 1
            wait["ended"] = time.monotonic()
    if p["fail"]:
        return error(p["fail"])
    if p.get("garbage"):
        junk = {"result": "this is not a completion", "trace": 'File "/srv/app/secret_internal.py", line 3'}
        if body.get("stream"):
            return StreamingResponse(iter([f"data: {json.dumps(junk)}\n\n", "data: [DONE]\n\n"]))
        return JSONResponse(junk)
    created, cid, model = int(time.time()), f"chatcmpl-fake{len(REQUESTS)}", body.get("model", "fake")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    calls = tool_calls(p["calls"], str(len(REQUESTS))) if p["calls"] and body.get("tools") else []
    parts, finish = ([], "tool_calls") if calls else pieces(p["text"], max_tokens)
    completion_tokens = len(parts) + sum(words(c["function"]["arguments"]) for c in calls)

    def logprobs_of(tokens: list[str]) -> dict[str, Any] | None:
        """`logprobs: true`: a made-up log probability per word (the i-th word -0.1*(i+1))."""
        if not body.get("logprobs"):
            return None
        top = int(body.get("top_logprobs") or 0)
        content = []
        for i, token in enumerate(tokens):
            entry = {"token": token, "logprob": -0.1 * (i + 1), "bytes": list(token.encode())}
            entry["top_logprobs"] = [{"token": token, "logprob": entry["logprob"], "bytes": entry["bytes"]}][:top]
            content.append(entry)
        return {"content": content, "refusal": None}

    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else " ".join(parts)}
        if calls:
            message["tool_calls"] = calls
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": logprobs_of(parts)}],
                **({} if p.get("nousage") else {"usage": usage(body, completion_tokens)}),
            }
        )

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, logprobs: Any = None) -> str:
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}],
        }
        return f"data: {json.dumps(data)}\n\n"

    record = {"text": " ".join(text_of(m) for m in body.get("messages") or []), "sent": 0, "ended": None}

    async def stream():
        STREAMS.append(record)
        try:
            async for event in events():
                yield event
        except BaseException:  # the reader closed the connection: the server cancelled the stream
            record["ended"] = "abandoned"
            raise
        record["ended"] = "finished"

    async def events():
        yield chunk({"role": "assistant", "content": ""})
        for i, word in enumerate((p.get("think") or "").split()):  # reasoning first, as reasoning models do
            yield chunk({"reasoning_content": word if i == 0 else " " + word})
        for i, word in enumerate(parts):
            if p["delay"]:
                await asyncio.sleep(p["delay"])
            if i == 2 and p["stall"]:
                await asyncio.sleep(p["stall"])
            token = word if i == 0 else " " + word
            yield chunk({"content": token}, logprobs=logprobs_of([token]))
            record["sent"] += 1
        for i, call in enumerate(calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": args[:half]},
                        }
                    ]
                }
            )
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]})
        if p.get("streamerror"):
            failure = {"message": "fake upstream failed mid-stream", "type": "server_error", "code": "503"}
            yield f"data: {json.dumps({'error': failure})}\n\n"
            return
        yield chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage") and not p.get("nousage"):
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage(body, completion_tokens),
            }
            yield f"data: {json.dumps(data)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


EMBEDDING_DIMENSIONS = 256


def embed(text: str | list[int], dimensions: int) -> list[float]:
    """Lexical embeddings: each word (or token id) hashed into a bucket, the vector L2-normalised, so
    texts sharing words are near each other and retrieval in tests is deterministic and meaningful."""
    vector = [0.0] * dimensions
    units = [str(t) for t in text] if isinstance(text, list) else re.findall(r"\w+", text.lower())
    for unit in units:
        bucket = int(hashlib.sha256(unit.encode()).hexdigest()[:8], 16) % dimensions
        vector[bucket] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


async def embeddings(request: Request):
    body = await request.json()
    REQUESTS.append({**body, "_meta": {"path": request.url.path}})
    given = body.get("input")
    if isinstance(given, str) or (isinstance(given, list) and given and isinstance(given[0], int)):
        given = [given]
    if not isinstance(given, list) or not given:
        return error(400)
    if any(isinstance(g, str) and "[[fail" in g for g in given):
        return error(500)
    slow = [float(m[1]) for g in given if isinstance(g, str) for m in re.finditer(r"\[\[slow:([\d.]+)\]\]", g)]
    if slow:
        await asyncio.sleep(max(slow))
    dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
    data = [{"object": "embedding", "index": i, "embedding": embed(g, dimensions)} for i, g in enumerate(given)]
    tokens = sum(len(g) if isinstance(g, list) else words(g) for g in given)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.get("model", "fake-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def tool_echo(request: Request):
    """An HTTP tool: answers with what it received (JSON body or query) and the auth header."""
    body = await request.json() if request.method == "POST" else dict(request.query_params)
    return JSONResponse({"received": body, "authorization": request.headers.get("authorization")})


async def tool_fail(_: Request):
    return JSONResponse({"detail": "the backend is down"}, status_code=500)


async def tool_huge(_: Request):
    """50 MB, streamed: a client must stop reading at its own limit."""

    async def chunks():
        for _ in range(50 * 16):
            yield b"y" * 65536

    return StreamingResponse(chunks(), media_type="text/plain")


async def requests_seen(_: Request):
    return JSONResponse(REQUESTS)


async def streams(request: Request):
    containing = request.query_params.get("containing", "")
    return JSONResponse([{k: v for k, v in r.items() if k != "text"} for r in STREAMS if containing in r["text"]])


async def concurrency(request: Request):
    containing = request.query_params.get("containing")
    if containing is None:
        return JSONResponse(CONCURRENT)
    return JSONResponse(overlap([w for w in WAITS if containing in w["text"]]))


def overlap(waits: list[dict[str, Any]]) -> dict[str, int]:
    """How many of these waits are going on now, and the most that were at once (ends sort before
    beginnings at the same instant: one wait ending as another begins is not two at once)."""
    edges = sorted([(w["began"], 1) for w in waits] + [(w["ended"], -1) for w in waits if "ended" in w])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return {"now": now, "max": most}


async def reset(_: Request):
    REQUESTS.clear()
    ATTEMPTS.clear()
    CONCURRENT["max"] = CONCURRENT["now"]
    WAITS[:] = [w for w in WAITS if "ended" not in w]
    return JSONResponse({"ok": True})


async def models(_: Request):
    return JSONResponse(
        {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]}
    )


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/openai/deployments/{deployment}/chat/completions", chat, methods=["POST"]),  # Azure OpenAI's form
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/_requests", requests_seen),
        Route("/tools/echo", tool_echo, methods=["GET", "POST"]),
        Route("/tools/fail", tool_fail, methods=["POST"]),
        Route("/tools/huge", tool_huge, methods=["POST"]),
        Route("/_reset", reset, methods=["POST"]),
        Route("/_concurrency", concurrency),
        Route("/_streams", streams),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (and --tls-key)")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only for such sockets;
    # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"FAKE_LLM_PORT={sock.getsockname()[1]}", flush=True)
    tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key} if args.tls_cert else {}
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1, **tls)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
