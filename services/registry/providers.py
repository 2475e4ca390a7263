"""Which litellm provider an OSSA / Vercel provider name means, and the litellm model string.

A static table rather than `import litellm` (which costs ~3 s): the CLI and registry stay fast, and
a test keeps every entry honest by checking it against litellm's own provider list.
"""

from __future__ import annotations

PROVIDER_ALIASES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gemini",
    "gemini": "gemini",
    "google-vertex": "vertex_ai",
    "vertex": "vertex_ai",
    "vertex_ai": "vertex_ai",
    "vertexai": "vertex_ai",
    "azure": "azure",
    "azure-openai": "azure",
    "azure_openai": "azure",
    "aws-bedrock": "bedrock",
    "amazon-bedrock": "bedrock",
    "bedrock": "bedrock",
    "mistral": "mistral",
    "groq": "groq",
    "cohere": "cohere",
    "fireworks": "fireworks_ai",
    "fireworks_ai": "fireworks_ai",
    "ollama": "ollama",
    "ollama_chat": "ollama_chat",
    "together": "together_ai",
    "together_ai": "together_ai",
    "deepseek": "deepseek",
    "xai": "xai",
    "openrouter": "openrouter",
    "huggingface": "huggingface",
    "perplexity": "perplexity",
    "vllm": "hosted_vllm",
    "hosted_vllm": "hosted_vllm",
    "lm_studio": "lm_studio",
    "lmstudio": "lm_studio",
    # Any OpenAI-compatible server reached through base_url.
    "custom": "openai",
    "openai-compatible": "openai",
    "openai_compatible": "openai",
}

# Model-name prefixes litellm routes without a provider, for manifests that give only a model.
_MODEL_PREFIXES = (
    (("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-"), "openai"),
    (("claude-",), "anthropic"),
    (("gemini-",), "gemini"),
)


def litellm_provider(provider: str | None) -> str | None:
    """litellm's provider id for a manifest's provider name, or None when unknown."""
    if provider is None:
        return None
    return PROVIDER_ALIASES.get(provider.strip().lower())


def infer_provider(model: str) -> str | None:
    """The provider a bare model name implies (`gpt-4o` -> openai), or None."""
    head = model.split("/", 1)[0]
    if "/" in model and head.lower() in PROVIDER_ALIASES:
        return head.lower()
    for prefixes, provider in _MODEL_PREFIXES:
        if model.startswith(prefixes):
            return provider
    return None


def litellm_model(provider: str | None, model: str) -> str:
    """`<provider>/<model>` unless the model already carries that prefix."""
    if provider is None or model.startswith(f"{provider}/"):
        return model
    head = model.split("/", 1)[0].lower()
    if "/" in model and PROVIDER_ALIASES.get(head) == provider:
        return f"{provider}/{model.split('/', 1)[1]}"
    return f"{provider}/{model}"
