"""How provider failures (litellm's own exception types) become run errors: transient or not, no secrets."""

import litellm
import pytest

from ossabus.executor.llm import classify


def test_openais_missing_key_is_not_retried_although_litellm_calls_it_a_500():
    error = classify(
        litellm.InternalServerError(
            message="OpenAIException - Missing credentials. Please pass an `api_key`",
            llm_provider="openai",
            model="gpt-4o-mini",
        )
    )
    assert (error.code, error.transient) == ("server_error", False)
    assert "OPENAI_API_KEY" in error.message


@pytest.mark.parametrize(
    ("exception", "code", "transient"),
    [
        (litellm.RateLimitError(message="slow down", llm_provider="openai", model="m"), "rate_limit_exceeded", True),
        (litellm.InternalServerError(message="boom", llm_provider="openai", model="m"), "server_error", True),
        (litellm.BadRequestError(message="bad prompt", llm_provider="openai", model="m"), "invalid_prompt", False),
        (litellm.AuthenticationError(message="invalid key", llm_provider="openai", model="m"), "server_error", False),
        (litellm.Timeout(message="slow", llm_provider="openai", model="m"), "server_error", True),
    ],
)
def test_provider_failures_map_to_run_error_codes(exception, code, transient):
    error = classify(exception)
    assert (error.code, error.transient) == (code, transient)


def test_secrets_in_provider_messages_are_redacted(monkeypatch):
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "very-secret-value-123")
    error = classify(
        litellm.BadRequestError(
            message="rejected sk-abcdefghijklmnop with key very-secret-value-123", llm_provider="openai", model="m"
        )
    )
    assert "sk-abcdefghijklmnop" not in error.message
    assert "very-secret-value-123" not in error.message
