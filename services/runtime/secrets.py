"""Secrets a manifest may name, and when they are read.

A manifest is untrusted input: anyone with an admin key writes one, and whatever it makes the server
read can end up in a model's prompt, a tool's URL or an API answer. So `${NAME}` is honoured only

- for names the operator allows (`OSSABUS_SECRET_ENV=GITHUB_TOKEN,PAGERDUTY_*`, shell-style patterns),
- in credential fields (API keys, auth tokens and headers), and
- at the moment of use (the dispatcher building a request, the executor calling a model): the
  registry stores and returns the text as written, never its value.

Everywhere else `${...}` is literal text. ossabus's own settings (`OSSABUS_*`) and the bus's
(`NATS_*`) are never readable, whatever the allow list says.
"""

from __future__ import annotations

import fnmatch
import os
import re

ALLOW_ENV = "OSSABUS_SECRET_ENV"
NEVER = ("OSSABUS_*", "NATS_*")

# `${NAME}` or `${NAME:-default}`; `${{ ... }}` is an OSSA expression, not a secret.
REFERENCE = re.compile(r"\$\{(?!\{)([^}]*)\}")
# OSSA expressions written `${root.path}`: `env` and `secrets` name a secret (`${env.GITHUB_TOKEN}`,
# as v0.4 manifests write credentials); the others are values of a workflow's run, never variables.
SECRET_ROOTS = ("env", "secrets")
EXPRESSION_ROOTS = ("input", "inputs", "steps", "context", "workflow", "output", "outputs", "vars", "item")
_DOTTED = re.compile(r"^(?P<root>[A-Za-z_][A-Za-z0-9_]*)\.(?P<rest>.+)$")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INNER = re.compile(r"^(?P<name>[^:\-}]*)(?::?-(?P<default>.*))?$")

# Keys whose values are credentials wherever they stand in a manifest (auth blocks, headers).
CREDENTIAL_KEYS = frozenset(
    {"credentials", "token", "key", "api_key", "apiKey", "password", "secret", "bearer", "value"}
)


# The operator's provider keys (what litellm reads anyway). A manifest may name one as its
# `api_key_env` without the allow list as long as it keeps the provider's own endpoint: the key
# then goes where it would have gone. With a base URL of the manifest's choosing, it needs the list.
PROVIDER_KEYS = frozenset(
    {
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "AZURE_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "MISTRAL_API_KEY",
        "GROQ_API_KEY",
        "COHERE_API_KEY",
        "TOGETHER_API_KEY",
        "TOGETHERAI_API_KEY",
        "DEEPSEEK_API_KEY",
        "OPENROUTER_API_KEY",
        "FIREWORKS_API_KEY",
        "XAI_API_KEY",
        "PERPLEXITY_API_KEY",
        "HUGGINGFACE_API_KEY",
    }
)


class SecretError(Exception):
    """A credential that cannot be resolved; `code` is what the tool result or run error carries."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def allow_patterns() -> list[str]:
    return [p.strip() for p in os.environ.get(ALLOW_ENV, "").split(",") if p.strip()]


def allowed(name: str) -> bool:
    """Whether the operator lets manifests read the variable `name`."""
    if not NAME.fullmatch(name) or any(fnmatch.fnmatchcase(name, p) for p in NEVER):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in allow_patterns())


def _secret_name(written: str) -> str:
    """`env.NAME` / `secrets.NAME` -> `NAME`; anything else as written."""
    dotted = _DOTTED.match(written)
    return dotted["rest"] if dotted and dotted["root"] in SECRET_ROOTS else written


def expression_root(inner: str) -> str | None:
    """The root of an OSSA expression (`input` of `${input.mr_iid}`), or None when `inner` is not
    a dotted expression or names a secret."""
    dotted = _DOTTED.match(inner.strip())
    if dotted is None or dotted["root"] in SECRET_ROOTS:
        return None
    return dotted["root"]


def references(value: str) -> list[tuple[str, str | None]]:
    """(name, default) of every secret `${...}` in `value` (`${NAME}`, `${env.NAME}`,
    `${secrets.NAME}`); OSSA expressions (`${input.x}`, `${steps.a.output}`) are not secrets and
    are left out. A name that is not a variable name is kept as written, so callers can report it."""
    out: list[tuple[str, str | None]] = []
    for match in REFERENCE.finditer(value):
        if expression_root(match.group(1)) is not None:
            continue
        inner = _INNER.match(match.group(1))
        name, default = (inner["name"], inner["default"]) if inner else (match.group(1), None)
        out.append((_secret_name(name), default))
    return out


def expressions(value: str) -> list[str]:
    """The roots of the OSSA expressions in `value`, in order."""
    roots = [expression_root(m.group(1)) for m in REFERENCE.finditer(value)]
    return [r for r in roots if r is not None]


def template_defaults(value: object) -> object:
    """`${NAME:-default}` outside credential fields, as OSSA's templates write model and provider: the
    default, which the manifest itself holds; the environment is never read. Other `${...}` stay as
    written."""
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match) -> str:
        inner = _INNER.match(match.group(1))
        if inner and NAME.fullmatch(inner["name"]) and inner["default"] is not None:
            return inner["default"]
        return match.group(0)

    return REFERENCE.sub(replace, value)


def resolve(value: str, what: str) -> str:
    """`value` with its `${NAME}` references replaced by their values, now.

    Raises SecretError when a name is not allowed or is unset without a default: a credential
    that is half-resolved (the literal `${X}` sent as a token) would only leak the variable's name.
    """

    def replace(match: re.Match) -> str:
        if expression_root(match.group(1)) is not None:
            return match.group(0)  # an OSSA expression: a workflow fills it in, not the environment
        inner = _INNER.match(match.group(1))
        name = _secret_name(inner["name"] if inner else match.group(1))
        if not allowed(name):
            raise SecretError(
                "secret_not_allowed",
                f"{what} reads ${{{name}}}, which the operator has not allowed (set {ALLOW_ENV})",
            )
        found = os.environ.get(name)
        if found is not None:
            return found
        if inner and inner["default"] is not None:
            return inner["default"]
        raise SecretError("missing_credentials", f"{what} reads ${{{name}}}, which is not set")

    return REFERENCE.sub(replace, value)


def variable(name: str, what: str, *, provider_endpoint: bool = False) -> str:
    """The value of a variable a manifest names directly (`api_key_env: NAME`); `provider_endpoint`
    when the key goes to the provider's own endpoint (see PROVIDER_KEYS)."""
    if not allowed(name) and not (provider_endpoint and name in PROVIDER_KEYS):
        raise SecretError(
            "secret_not_allowed", f"{what} names {name}, which the operator has not allowed (set {ALLOW_ENV})"
        )
    found = os.environ.get(name)
    if found is None:
        raise SecretError("missing_credentials", f"{what} names {name}, which is not set")
    return found
