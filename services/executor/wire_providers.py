"""Which model calls go over the OpenAI wire format directly, and where: the endpoint, key and body.

litellm translates between a hundred provider formats; for a provider that already speaks OpenAI's
`/chat/completions` that translation is pure cost on every request and every chunk (the issue that
introduced this measured it). So `openai/...` (any `base_url`: vLLM, Ollama's /v1, LM Studio,
llama.cpp server) and the hosted providers below that speak the same format are called by
`openai_wire`; everything else (Anthropic, Bedrock, Vertex, Gemini, Cohere, ...) stays on litellm.

What litellm would have done on the way is kept: the same variables name the same endpoints and
keys (`OPENAI_BASE_URL`, `GROQ_API_KEY`, `AZURE_API_BASE`, ...), parameters a known model does not
take are dropped (litellm's own table, as with its `drop_params`), `max_tokens` becomes
`max_completion_tokens` where the model wants that, Mistral's `seed` is its `random_seed`, and a
Fireworks model gets its `accounts/fireworks/models/` prefix.

`OSSABUS_LITELLM_PROVIDERS` (comma-separated litellm provider ids, or `all`) sends a provider back
through litellm; a manifest does so for itself with `extensions.ossabus.llm_client: litellm`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ossabus.contracts.bus import PROVIDER_SPECIFIC_PARAMS, SAMPLING_PARAMS

FORCE_LITELLM_ENV = "OSSABUS_LITELLM_PROVIDERS"
AZURE_DEFAULT_API_VERSION = "2024-10-21"

# The OpenAI request fields litellm may know a model not to take; only these are ever dropped.
STANDARD_FIELDS = frozenset(
    {
        *SAMPLING_PARAMS,
        *PROVIDER_SPECIFIC_PARAMS,
        "max_tokens",
        "max_completion_tokens",
        "frequency_penalty",
        "presence_penalty",
        "n",
        "logit_bias",
    }
)
# What the caller hands over that is about the connection, not the body.
CONNECTION_FIELDS = frozenset({"api_key", "api_base", "api_version", "extra_headers", "extra_body", "timeout"})


@dataclass(frozen=True)
class WireProvider:
    """How litellm finds one OpenAI-compatible provider: base URL and key variables, in its order."""

    base_env: tuple[str, ...]
    default_base: str | None
    key_env: tuple[str, ...]
    renamed: dict[str, str] = field(default_factory=dict)
    model_prefix: str = ""


WIRE_PROVIDERS: dict[str, WireProvider] = {
    "openai": WireProvider(("OPENAI_BASE_URL", "OPENAI_API_BASE"), "https://api.openai.com/v1", ("OPENAI_API_KEY",)),
    "hosted_vllm": WireProvider(("HOSTED_VLLM_API_BASE",), None, ("HOSTED_VLLM_API_KEY",)),
    "lm_studio": WireProvider(("LM_STUDIO_API_BASE",), None, ("LM_STUDIO_API_KEY",)),
    "groq": WireProvider(("GROQ_API_BASE",), "https://api.groq.com/openai/v1", ("GROQ_API_KEY",)),
    "together_ai": WireProvider(
        ("TOGETHER_AI_API_BASE",),
        "https://api.together.xyz/v1",
        ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"),
    ),
    "deepseek": WireProvider(("DEEPSEEK_API_BASE",), "https://api.deepseek.com/beta", ("DEEPSEEK_API_KEY",)),
    "openrouter": WireProvider(("OPENROUTER_API_BASE",), "https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY",)),
    "fireworks_ai": WireProvider(
        ("FIREWORKS_API_BASE", "FIREWORKS_AI_API_BASE"),
        "https://api.fireworks.ai/inference/v1",
        ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
        model_prefix="accounts/fireworks/models/",
    ),
    "mistral": WireProvider(
        ("MISTRAL_API_BASE",), "https://api.mistral.ai/v1", ("MISTRAL_API_KEY",), renamed={"seed": "random_seed"}
    ),
}
AZURE = "azure"


@dataclass(frozen=True)
class WireCall:
    """One request as it goes on the wire: where, with which headers, and the body's fields."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    provider: str


class NoKey(Exception):
    """The provider's key variable is not set: the same refusal litellm gives, before any request."""


def forced_to_litellm(provider: str) -> bool:
    chosen = {p.strip().lower() for p in (os.environ.get(FORCE_LITELLM_ENV) or "").split(",") if p.strip()}
    return "all" in chosen or provider in chosen


def speaks_openai(model: str, client: str | None = None) -> bool:
    """Whether this litellm model string is called directly (else through litellm)."""
    provider, _ = split(model)
    if client == "litellm" or forced_to_litellm(provider):
        return False
    if provider == AZURE:
        return not os.environ.get("AZURE_AD_TOKEN")  # Entra ID tokens are litellm's business
    return provider in WIRE_PROVIDERS


def split(model: str) -> tuple[str, str]:
    """(`openai` for a bare model name, else the litellm provider; the model's own name)."""
    provider, _, name = model.partition("/") if "/" in model else ("openai", "", model)
    return provider, name


@functools.lru_cache(maxsize=512)
def litellm_fields(provider: str, name: str) -> frozenset[str] | None:
    """The OpenAI fields litellm's table lists for this model (for a model it does not know, its
    provider's general list); None when litellm cannot say. Asked on every request, so kept."""
    from ossabus.executor.llm import _litellm

    try:
        return frozenset(_litellm().get_supported_openai_params(model=name, custom_llm_provider=provider) or ())
    except Exception:
        return None


@functools.lru_cache(maxsize=512)
def _known(provider: str, name: str) -> bool:
    from ossabus.executor.llm import _litellm

    try:
        _litellm().get_model_info(model=name, custom_llm_provider=provider)
    except Exception:
        return False
    return True


def supported_fields(provider: str, name: str) -> frozenset[str] | None:
    """The fields a model litellm knows takes; None for one it does not know (a model on a
    self-hosted server: then everything is passed and the server decides)."""
    return litellm_fields(provider, name) if _known(provider, name) else None


def _env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def prepare(model: str, messages: list[dict[str, Any]], tools: list[dict] | None, params: dict[str, Any]) -> WireCall:
    """The request for `model` with `params` (our call parameters, litellm's names), or NoKey."""
    provider, name = split(model)
    body_fields = {k: v for k, v in params.items() if k not in CONNECTION_FIELDS and v is not None}
    supported = supported_fields(provider, name)
    if supported is not None:
        body_fields = {k: v for k, v in body_fields.items() if k not in STANDARD_FIELDS or k in supported}
        if provider in ("openai", AZURE):
            _as_openai_wants(name, body_fields)
    headers = {"Content-Type": "application/json"}
    if provider == AZURE:
        url, key_headers = _azure(name, params)
    else:
        wire = WIRE_PROVIDERS[provider]
        for ours, theirs in wire.renamed.items():
            if ours in body_fields:
                body_fields[theirs] = body_fields.pop(ours)
        if wire.model_prefix and not name.startswith("accounts/") and "#" not in name:
            name = wire.model_prefix + name
        base = params.get("api_base") or _env(wire.base_env) or wire.default_base
        key = params.get("api_key") or _env(wire.key_env)
        if not base:
            raise NoKey(f"no base URL for {provider}: set {wire.base_env[0]} or the manifest's base_url")
        if not key:
            raise NoKey(f"missing api key: set {wire.key_env[0]} or name one with the manifest's api_key_env")
        url = base.rstrip("/") + "/chat/completions"
        key_headers = {"Authorization": f"Bearer {key}"}
    headers.update(key_headers)
    headers.update({str(k): str(v) for k, v in (params.get("extra_headers") or {}).items()})
    body: dict[str, Any] = {"model": name, "messages": messages, **body_fields}
    if tools:
        body["tools"] = tools
    body.update(params.get("extra_body") or {})
    return WireCall(url=url, headers=headers, body=body, provider=provider)


REASONING_MODELS = ("o1", "o3", "o4", "gpt-5")


def _as_openai_wants(name: str, fields: dict[str, Any]) -> None:
    """OpenAI's own models: `max_tokens` is deprecated (and refused by reasoning models) in favour
    of `max_completion_tokens`; reasoning models take only the default temperature."""
    if "max_tokens" in fields:
        fields["max_completion_tokens"] = fields.pop("max_tokens")
    if name.startswith(REASONING_MODELS) and fields.get("temperature") not in (None, 1):
        del fields["temperature"]


def _azure(deployment: str, params: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Azure OpenAI: the deployment in the path, the API version in the query, the key as `api-key`."""
    base = params.get("api_base") or _env(("AZURE_API_BASE",))
    key = params.get("api_key") or _env(("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"))
    version = params.get("api_version") or _env(("AZURE_API_VERSION",)) or AZURE_DEFAULT_API_VERSION
    if not base:
        raise NoKey("no base URL for azure: set AZURE_API_BASE or the manifest's base_url")
    if not key:
        raise NoKey("missing api key: set AZURE_API_KEY or name one with the manifest's api_key_env")
    base = base.rstrip("/")
    if base.endswith("/openai/v1"):  # Azure's v1 API: OpenAI's own paths, the deployment as the model
        return f"{base}/chat/completions", {"api-key": key}
    url = f"{base}/openai/deployments/{quote(deployment, safe='')}/chat/completions?api-version={quote(version)}"
    return url, {"api-key": key}
