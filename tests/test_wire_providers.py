"""Which calls go over the OpenAI wire format directly, and what goes on the wire (no network here:
what `prepare` builds is checked as litellm would have sent it)."""

import pytest

from ossabus.executor import llm, openai_wire, wire_providers
from ossabus.executor.wire_providers import NoKey, prepare, speaks_openai

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def quiet_environment(monkeypatch):
    for name in (
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "OPENAI_API_KEY",
        "GROQ_API_KEY",
        "MISTRAL_API_KEY",
        "FIREWORKS_API_KEY",
        "AZURE_API_BASE",
        "AZURE_API_KEY",
        "AZURE_API_VERSION",
        "AZURE_AD_TOKEN",
        "HOSTED_VLLM_API_BASE",
        wire_providers.FORCE_LITELLM_ENV,
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("model", "direct"),
    [
        ("openai/gpt-4o-mini", True),
        ("gpt-4o-mini", True),  # a bare name is OpenAI's
        ("hosted_vllm/meta-llama/Llama-3.1-8B", True),
        ("groq/llama-3.1-8b-instant", True),
        ("mistral/mistral-small-latest", True),
        ("azure/my-deployment", True),
        ("anthropic/claude-sonnet-4-5", False),
        ("bedrock/anthropic.claude-3", False),
        ("ollama/llama3", False),  # Ollama's own API; its /v1 is reached as openai/ with a base_url
    ],
)
def test_providers_that_speak_the_openai_format_are_called_directly(model, direct):
    assert speaks_openai(model) is direct


def test_the_operator_and_a_manifest_can_send_a_provider_back_through_litellm(monkeypatch):
    assert speaks_openai("openai/gpt-4o", client="litellm") is False
    assert speaks_openai("openai/gpt-4o", client="auto") is True
    monkeypatch.setenv(wire_providers.FORCE_LITELLM_ENV, "groq, openai")
    assert (speaks_openai("openai/gpt-4o"), speaks_openai("groq/x"), speaks_openai("mistral/x")) == (False, False, True)
    monkeypatch.setenv(wire_providers.FORCE_LITELLM_ENV, "all")
    assert speaks_openai("mistral/x") is False
    monkeypatch.delenv(wire_providers.FORCE_LITELLM_ENV)
    monkeypatch.setenv("AZURE_AD_TOKEN", "token")  # Entra ID auth stays litellm's
    assert speaks_openai("azure/d") is False


def test_openai_reads_the_standard_variables_and_keeps_connection_settings_off_the_body(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator")
    call = prepare(
        "openai/my-model",
        MESSAGES,
        [{"type": "function", "function": {"name": "f"}}],
        {"temperature": 0.2, "timeout": 5, "extra_headers": {"X-Trace": "1"}, "extra_body": {"top_k": 3}},
    )
    assert call.url == "http://127.0.0.1:9/v1/chat/completions"
    assert call.headers["Authorization"] == "Bearer sk-operator"
    assert call.headers["X-Trace"] == "1"
    assert call.body == {
        "model": "my-model",
        "messages": MESSAGES,
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "top_k": 3,
    }


def test_a_manifest_base_url_and_key_win_over_the_variables(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator")
    call = prepare("openai/m", MESSAGES, None, {"api_base": "http://127.0.0.1:9", "api_key": llm.NO_KEY})
    assert call.url == "http://127.0.0.1:9/chat/completions"
    assert call.headers["Authorization"] == f"Bearer {llm.NO_KEY}"  # never the operator's key


def test_a_missing_key_is_refused_before_any_request_and_is_not_transient():
    with pytest.raises(NoKey, match="OPENAI_API_KEY"):
        prepare("openai/gpt-4o", MESSAGES, None, {})
    error = llm.classify(openai_wire.ProviderStatusError(401, "missing api key: set OPENAI_API_KEY"))
    assert (error.code, error.transient) == ("server_error", False)
    assert "OPENAI_API_KEY" in error.message


def test_hosted_providers_get_their_own_endpoint_key_and_field_names(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk-1")
    assert (
        prepare("groq/llama-3.1-8b-instant", MESSAGES, None, {}).url
        == "https://api.groq.com/openai/v1/chat/completions"
    )
    monkeypatch.setenv("MISTRAL_API_KEY", "m-1")
    mistral = prepare("mistral/some-new-model", MESSAGES, None, {"seed": 3})
    assert mistral.body["random_seed"] == 3
    assert "seed" not in mistral.body
    monkeypatch.setenv("FIREWORKS_API_KEY", "fw-1")
    assert prepare("fireworks_ai/llama-v3p1-8b", MESSAGES, None, {}).body["model"] == (
        "accounts/fireworks/models/llama-v3p1-8b"
    )
    with pytest.raises(NoKey, match="HOSTED_VLLM_API_BASE"):  # a self-hosted server has no default address
        prepare("hosted_vllm/llama", MESSAGES, None, {"api_key": "k"})


def test_azure_puts_the_deployment_in_the_path_and_the_key_in_api_key(monkeypatch):
    monkeypatch.setenv("AZURE_API_BASE", "https://example-resource.openai.azure.com/")
    monkeypatch.setenv("AZURE_API_KEY", "az-1")
    call = prepare("azure/my deployment", MESSAGES, None, {})
    assert call.url == (
        "https://example-resource.openai.azure.com/openai/deployments/my%20deployment/chat/completions"
        f"?api-version={wire_providers.AZURE_DEFAULT_API_VERSION}"
    )
    assert call.headers["api-key"] == "az-1"
    assert "Authorization" not in call.headers
    monkeypatch.setenv("AZURE_API_BASE", "https://example-resource.openai.azure.com/openai/v1")
    v1 = prepare("azure/my-deployment", MESSAGES, None, {})
    assert v1.url == "https://example-resource.openai.azure.com/openai/v1/chat/completions"
    assert v1.body["model"] == "my-deployment"


def test_fields_a_known_model_does_not_take_are_dropped_as_litellm_would(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-1")
    reasoning = prepare("openai/o3-mini", MESSAGES, None, {"max_tokens": 50, "temperature": 0.3})
    assert reasoning.body.get("max_completion_tokens") == 50
    assert "max_tokens" not in reasoning.body
    assert "temperature" not in reasoning.body  # o-series models refuse it
    chat = prepare("openai/gpt-4o-mini", MESSAGES, None, {"max_tokens": 50, "temperature": 0.3})
    assert (chat.body["max_completion_tokens"], chat.body["temperature"]) == (50, 0.3)
    gpt5 = prepare("openai/gpt-5", MESSAGES, None, {"top_p": 0.5, "logprobs": True})
    assert "top_p" not in gpt5.body
    assert "logprobs" not in gpt5.body
    self_hosted = prepare("openai/llama-3", MESSAGES, None, {"max_tokens": 50})
    assert self_hosted.body["max_tokens"] == 50  # vLLM, Ollama and llama.cpp know max_tokens
    unknown = prepare("openai/my-own-model", MESSAGES, None, {"logit_bias": {"1": 2}, "n": 2})
    assert (unknown.body["logit_bias"], unknown.body["n"]) == ({"1": 2}, 2)  # the server decides


def test_chunks_and_answers_are_read_without_a_schema_and_never_raise():
    assert openai_wire.chunk_of("not a chunk").text is None
    assert openai_wire.chunk_of({"choices": "nope"}).text is None
    chunk = openai_wire.chunk_of(
        {
            "model": "m",
            "choices": [
                {
                    "delta": {"content": "hi", "tool_calls": [{"index": 1, "id": "c", "function": {"name": "f"}}]},
                    "finish_reason": None,
                }
            ],
        }
    )
    assert (chunk.text, chunk.tool_calls[0].index, chunk.tool_calls[0].name, chunk.tool_calls[0].arguments) == (
        "hi",
        1,
        "f",
        "",
    )
    assert openai_wire.chunk_of({"choices": [{"delta": {"reasoning": "hm"}}]}).reasoning == "hm"
    garbage = openai_wire.completion_of({"result": "this is not a completion"})
    assert not garbage.answered
    assert garbage.usage is None
    whole = openai_wire.completion_of(
        {
            "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1},
        }
    )
    assert whole.answered
    assert whole.usage == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [
        (429, "rate_limit_exceeded", True),
        (500, "server_error", True),
        (400, "invalid_prompt", False),
        (403, "server_error", False),
    ],
)
def test_provider_statuses_map_to_the_same_run_errors_as_through_litellm(status, code, transient):
    error = llm.classify(openai_wire.ProviderStatusError(status, "nope"))
    assert (error.code, error.transient, error.status) == (code, transient, status)


def test_a_broken_connection_is_transient_and_says_so():
    error = llm.classify(openai_wire.ProviderConnectionError("connection refused"))
    assert error.transient
    assert error.message.startswith("could not connect to the model provider")
