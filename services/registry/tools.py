"""Collecting the tools a manifest declares, from every place OSSA and its extensions allow.

The same tool often appears several times (seed manifests declare `search_flights` both under
`extensions.mcp.tools` and `extensions.openai_assistants.tools`). Declarations with one name in
*different* places are merged, richest source first; the same name twice in *one* list is an error,
because the model could not tell the two apart.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.validators import validator_for

from ossabus.contracts.agent import HttpBinding, McpBinding, ToolDefinition
from ossabus.registry.validation import Findings, json_path

FUNCTION_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
FUNCTION_NAME_MAX = 64
BUILTIN_BY_CAPABILITY = {"code_execution": "code_interpreter", "retrieval": "file_search"}
HTTP_TYPES = ("http", "api", "webhook")
_SCHEMA_KEYS = {
    "type",
    "properties",
    "$ref",
    "anyOf",
    "oneOf",
    "allOf",
    "enum",
    "$schema",
    "items",
    "const",
    "not",
}


def as_json_schema(value: Any) -> Any:
    """Accept Vercel's shorthand (`{order_id: {type: string}}`) as an object schema."""
    is_shorthand = isinstance(value, dict) and value and not (_SCHEMA_KEYS & value.keys())
    if is_shorthand and all(isinstance(v, dict) for v in value.values()):
        return {"type": "object", "properties": value}
    return value


def check_json_schema(f: Findings, schema: Any, path: list[str | int], what: str) -> bool:
    """A tool's schema must itself be a valid JSON Schema, or no call could ever be checked."""
    if not isinstance(schema, dict):
        f.error("tool.invalid_schema", f"{what} must be a JSON Schema object", path)
        return False
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = json_path([*path, *exc.absolute_path])
        f.error("tool.invalid_schema", f"{what} is not a valid JSON Schema: {exc.message} (at {where})", path)
        return False
    return True


class ToolCollector:
    """Accumulates tool declarations in priority order and merges them by name."""

    def __init__(self, findings: Findings):
        self.f = findings
        self.tools: dict[str, ToolDefinition] = {}
        self.capabilities: list[str] = []
        self.mcp_servers: list[McpBinding] = []

    # --- entry points, one per place a manifest can declare tools ---------------------------------

    def spec_capabilities(self, items: Any, base: list[str | int]) -> None:
        for i, item in self._items(items, base):
            path = [*base, i]
            if isinstance(item, str):
                self._capability(item)
            elif isinstance(item, dict) and isinstance(item.get("name"), str):
                self._add(
                    path,
                    item["name"],
                    kind="function",
                    description=item.get("description"),
                    parameters=_first(item, "input_schema", "inputSchema", "parameters"),
                    parameters_path=_key_path(path, item, "input_schema", "inputSchema", "parameters"),
                    output_schema=_first(item, "output_schema", "outputSchema"),
                    output_path=_key_path(path, item, "output_schema", "outputSchema"),
                    confirmation=needs_confirmation(item),
                )
            else:
                self.f.warning("capability.unrecognised", "a capability is a name or an object with a name", path)

    def spec_tools(self, items: Any, base: list[str | int]) -> None:
        seen: set[str] = set()
        for i, item in self._items(items, base):
            path = [*base, i]
            if not isinstance(item, dict):
                self.f.warning("tool.unrecognised", "a tool is an object", path)
                continue
            kind = item.get("type", "function")
            if kind == "mcp":
                self._mcp_server_tool(item, path, seen)
                continue
            if kind not in ("function", *HTTP_TYPES):
                self.f.warning("tool.unsupported_type", f"tool type {kind!r} is not run by ossabus yet; ignored", path)
                continue
            function = item.get("function") if isinstance(item.get("function"), dict) else {}
            name = item.get("name") or function.get("name")
            if not isinstance(name, str):
                self.f.warning("tool.unnamed", "tool has no name; ignored", path)
                continue
            http = None
            if kind in HTTP_TYPES:
                endpoint = item.get("endpoint") or item.get("url")
                if not isinstance(endpoint, str):
                    # the official schema accepts it: the manifest is valid, this one tool cannot run
                    self.f.warning(
                        "tool.http_endpoint_missing", f"http tool {name!r} has no endpoint; it is not offered", path
                    )
                    continue
                http = HttpBinding(
                    endpoint=endpoint,
                    method=str(item.get("method", "POST")).upper(),
                    auth=item.get("auth"),
                    allow_private=item.get("allow_private_network") is True,
                )
            keys = ("parameters", "input_schema", "inputSchema")
            params_path = _key_path(path, item, *keys) or _key_path([*path, "function"], function, "parameters")
            self._add(
                path,
                name,
                kind="http" if http else "function",
                description=item.get("description") or function.get("description"),
                parameters=_first(item, *keys) or function.get("parameters"),
                parameters_path=params_path,
                output_schema=_first(item, "output_schema", "outputSchema"),
                output_path=_key_path(path, item, "output_schema", "outputSchema"),
                http=http,
                handler=_handler(item.get("handler")),
                timeout=item.get("timeout_seconds", item.get("timeout")),
                idempotent=item.get("idempotent") is True,
                confirmation=needs_confirmation(item),
                seen=seen,
            )

    def openai_tools(self, items: Any, base: list[str | int]) -> None:
        seen: set[str] = set()
        for i, item in self._items(items, base):
            path = [*base, i]
            kind = item.get("type") if isinstance(item, dict) else None
            if kind in ("code_interpreter", "file_search"):
                self.builtin(kind, path)
            elif kind == "function" and isinstance(item.get("function"), dict):
                fn = item["function"]
                self._add(
                    path,
                    fn.get("name"),
                    kind="function",
                    description=fn.get("description"),
                    parameters=fn.get("parameters"),
                    parameters_path=_key_path([*path, "function"], fn, "parameters"),
                    strict=fn.get("strict"),
                    seen=seen,
                )
            else:
                self.f.warning(
                    "tool.unrecognised", "OpenAI tool must be function, code_interpreter or file_search", path
                )

    def mcp_tools(self, ext: dict, base: list[str | int]) -> None:
        server = ext.get("server_name")
        binding = McpBinding(server=server, transport=ext.get("server_type"))
        seen: set[str] = set()
        for i, item in self._items(ext.get("tools"), [*base, "tools"]):
            path = [*base, "tools", i]
            if not isinstance(item, dict):
                self.f.warning("tool.unrecognised", "an MCP tool is an object", path)
                continue
            self._add(
                path,
                item.get("name"),
                kind="mcp",
                description=item.get("description"),
                parameters=_first(item, "input_schema", "inputSchema"),
                parameters_path=_key_path(path, item, "input_schema", "inputSchema"),
                mcp=binding,
                seen=seen,
            )

    def protocol_mcp_servers(self, items: Any, base: list[str | int]) -> None:
        """v0.5 `protocols.mcp.servers`: each server and the tools it offers, bound like a tool of
        `type: mcp` (a command a manifest names is never run: servers come from the operator's config)."""
        seen: set[str] = set()
        for i, item in self._items(items, base):
            if isinstance(item, dict):
                self._mcp_server_tool(item, [*base, i], seen)
            else:
                self.f.warning("tool.unrecognised", "an MCP server is an object", [*base, i])

    def vercel_tools(self, items: Any, base: list[str | int]) -> None:
        seen: set[str] = set()
        for i, item in self._items(items, base):
            path = [*base, i]
            if not isinstance(item, dict):
                self.f.warning("tool.unrecognised", "a tool is an object", path)
                continue
            self._add(
                path,
                item.get("name"),
                kind="function",
                description=item.get("description"),
                parameters=as_json_schema(item.get("parameters")),
                parameters_path=_key_path(path, item, "parameters"),
                confirmation=bool(item.get("confirmation", False)),
                handler=item.get("execute") if isinstance(item.get("execute"), str) else None,
                seen=seen,
            )

    # --- internals ---------------------------------------------------------------------------------

    def _items(self, items: Any, base: list[str | int]):
        if items is None:
            return []
        if not isinstance(items, list):
            self.f.warning("tool.list_expected", "expected a list", base)
            return []
        return enumerate(items)

    def _capability(self, name: str) -> None:
        if name not in self.capabilities:
            self.capabilities.append(name)
        if name in BUILTIN_BY_CAPABILITY:
            self.builtin(BUILTIN_BY_CAPABILITY[name], None)

    def builtin(self, kind: str, path: list[str | int] | None) -> None:
        capability = {v: k for k, v in BUILTIN_BY_CAPABILITY.items()}[kind]
        if capability not in self.capabilities:
            self.capabilities.append(capability)
        if kind not in self.tools:
            self.tools[kind] = ToolDefinition(
                name=kind, function_name=kind, kind=kind, parameters={}, parameters_declared=False
            )
        if path is not None:
            self.tools[kind].sources.append(json_path(path))

    def _mcp_server_tool(self, item: dict, path: list[str | int], seen: set[str]) -> None:
        server = item.get("server") or item.get("name")
        command = item.get("command")
        if isinstance(command, str):
            args = item.get("args")
            command = [command, *(str(a) for a in args)] if isinstance(args, list) else [command]
        url = item.get("url") or item.get("endpoint")
        timeout = item.get("timeout_seconds", item.get("timeout"))
        binding = McpBinding(
            server=server if isinstance(server, str) else None,
            transport=item.get("transport"),
            command=command if isinstance(command, list) else None,
            url=url if isinstance(url, str) else None,
            allow_private=item.get("allow_private_network") is True,
            timeout_seconds=float(timeout) if _positive_number(timeout) else None,
            idempotent=item.get("idempotent") is True,
            confirmation=needs_confirmation(item),
        )
        names = item.get("capabilities") or item.get("tools")
        if not names:
            self.mcp_servers.append(binding)
            return
        for j, tool_name in self._items(names, [*path, "capabilities"]):
            if isinstance(tool_name, dict):
                tool_name = tool_name.get("name")
            self._add(
                [*path, "capabilities", j],
                tool_name,
                kind="mcp",
                mcp=binding,
                seen=seen,
                declared=False,
                timeout=timeout,
                idempotent=binding.idempotent,
                confirmation=binding.confirmation,
            )

    def _add(
        self,
        path: list[str | int],
        name: Any,
        *,
        kind: str,
        description: Any = None,
        parameters: Any = None,
        parameters_path: list[str | int] | None = None,
        output_schema: Any = None,
        output_path: list[str | int] | None = None,
        strict: Any = None,
        confirmation: bool = False,
        http: HttpBinding | None = None,
        mcp: McpBinding | None = None,
        handler: str | None = None,
        seen: set[str] | None = None,
        declared: bool = True,
        timeout: Any = None,
        idempotent: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            self.f.warning("tool.unnamed", "tool has no name; ignored", path)
            return
        function_name = function_name_for(name)
        if len(function_name) > FUNCTION_NAME_MAX:
            self.f.error("tool.invalid_name", f"tool name {name!r} is longer than {FUNCTION_NAME_MAX} characters", path)
            return
        clash = next((t for t in self.tools.values() if t.function_name == function_name and t.name != name), None)
        if clash is not None:
            self.f.error(
                "tool.name_collision",
                f"tools {clash.name!r} and {name!r} both become function {function_name!r} for the model",
                path,
            )
            return
        if seen is not None:
            if name in seen:
                self.f.error("tool.duplicate_name", f"tool {name!r} is declared twice in this list", path)
                return
            seen.add(name)
        has_params = parameters is not None
        if has_params and not check_json_schema(self.f, parameters, parameters_path or path, f"parameters of {name!r}"):
            return
        if output_schema is not None and not check_json_schema(
            self.f, output_schema, output_path or path, f"output schema of {name!r}"
        ):
            return
        existing = self.tools.get(name)
        if existing is None:
            tool = ToolDefinition(name=name, function_name=function_name, kind=kind)  # type: ignore[arg-type]
            tool.parameters_declared = False
            self.tools[name] = tool
        tool = self.tools[name]
        tool.sources.append(json_path(path))
        if kind in ("http", "mcp") and tool.kind == "function":
            tool.kind = kind  # type: ignore[assignment]
        tool.description = tool.description or (description if isinstance(description, str) else None)
        if has_params and declared and not tool.parameters_declared:
            tool.parameters = parameters
            tool.parameters_declared = True
        tool.output_schema = tool.output_schema or output_schema
        tool.strict = tool.strict if tool.strict is not None else (strict if isinstance(strict, bool) else None)
        tool.confirmation = tool.confirmation or confirmation
        tool.http = tool.http or http
        tool.mcp = tool.mcp or mcp
        tool.handler = tool.handler or handler
        tool.idempotent = tool.idempotent or idempotent
        if _positive_number(timeout):
            tool.timeout_seconds = tool.timeout_seconds or float(timeout)


def function_name_for(name: str) -> str:
    """OSSA names are often namespaced (`security.scan`); function calling allows `[a-zA-Z0-9_-]` only."""
    return FUNCTION_NAME_UNSAFE.sub("_", name)


def needs_confirmation(item: dict) -> bool:
    """A tool declaration that asks for a person's approval: Vercel's `confirmation`, or OSSA's
    `requires_approval` / `approval_required`, on the tool or in its `policy`."""
    policy = item.get("policy") if isinstance(item.get("policy"), dict) else {}
    keys = ("confirmation", "requires_approval", "approval_required")
    return any(item.get(key) is True or policy.get(key) is True for key in keys)


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _first(item: dict, *keys: str) -> Any:
    for key in keys:
        if key in item:
            return item[key]
    return None


def _key_path(path: list[str | int], item: dict, *keys: str) -> list[str | int] | None:
    for key in keys:
        if key in item:
            return [*path, key]
    return None


def _handler(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        ref = value.get("ref") or value.get("function") or value.get("runtime")
        return ref if isinstance(ref, str) else None
    return None
