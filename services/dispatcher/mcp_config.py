"""Where MCP servers live: the operator's configuration, and what a manifest may say for itself.

Manifests name MCP servers (`type: mcp, server: filesystem`); the operator says how to reach each
name in one file, in the `mcpServers` format most MCP clients share:

    {"mcpServers": {
        "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"]},
        "search": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"}}
    }}

The file is named by `--mcp-config` or `OSSABUS_MCP_CONFIG` (JSON or YAML). A manifest may give a
streamable-HTTP `url` itself (checked by the same address guard as HTTP tools), but never a command:
anyone who can register a manifest could otherwise run programs on the dispatcher's host.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from ossabus.contracts.agent import McpBinding

CONFIG_ENV = "OSSABUS_MCP_CONFIG"


class McpServerConfig(BaseModel):
    """How to reach one MCP server: a command to start (stdio) or a URL (streamable HTTP)."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    allow_private_network: bool = Field(
        True, description="Operator-configured URLs are trusted; manifest URLs are not (see `from_manifest`)."
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if bool(self.command) == bool(self.url):
            raise ValueError("an MCP server needs exactly one of `command` (stdio) or `url` (streamable HTTP)")
        return self

    @property
    def key(self) -> str:
        """Identity of the server process or endpoint: one connection per key is shared by all runs."""
        return json.dumps(self.model_dump(), sort_keys=True)


class McpConfigError(Exception):
    """The operator's MCP configuration cannot be read; the dispatcher refuses to start with it."""


def load_config(path: str | Path | None) -> dict[str, McpServerConfig]:
    if not path:
        return {}
    path = Path(path)
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise McpConfigError(f"cannot read the MCP configuration {path}: {exc}") from exc
    servers = data.get("mcpServers", data.get("servers")) if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(f"{path}: expected an object with `mcpServers` mapping names to servers")
    out: dict[str, McpServerConfig] = {}
    for name, entry in servers.items():
        try:
            out[str(name)] = McpServerConfig.model_validate(entry)
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise McpConfigError(f"{path}: mcpServers.{name}: {problem['msg']}") from exc
    return out


def config_path_from_env() -> str | None:
    return os.environ.get(CONFIG_ENV) or None


def from_manifest(binding: McpBinding) -> McpServerConfig | None:
    """A server the manifest describes itself: a URL only (never a command), untrusted: it reaches
    only what the operator's egress policy allows, whatever the manifest says."""
    if binding.url:
        return McpServerConfig(url=binding.url, allow_private_network=False)
    return None


_OPERATOR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def expand_operator_env(value: str) -> str:
    """`${VAR}` / `${VAR:-default}` in the operator's own MCP configuration, from the environment.
    (The operator's file is trusted; manifests never reach this: see `ossabus.runtime.secrets`.)"""

    def replace(match: re.Match) -> str:
        found = os.environ.get(match.group(1))
        if found is not None:
            return found
        return match.group(2) if match.group(2) is not None else match.group(0)

    return _OPERATOR_REF.sub(replace, value)


def describe(binding: McpBinding) -> str:
    return repr(binding.server) if binding.server else (binding.url or "(unnamed)")
