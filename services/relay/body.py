"""Reading a manifest from a request body: YAML or JSON, by content type."""

from __future__ import annotations

from fastapi import Request

from ossabus.relay.errors import ApiError

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPES = ("application/json",)
TEXT_TYPES = ("text/plain", "")


async def manifest_text(request: Request) -> tuple[str, str]:
    """The body as text and its format (`yaml`, `json` or `auto`); 400/415 for what cannot be one."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in YAML_TYPES:
        fmt = "yaml"
    elif content_type in JSON_TYPES:
        fmt = "json"
    elif content_type in TEXT_TYPES:
        fmt = "auto"
    else:
        raise ApiError(
            415,
            f"send the manifest as application/yaml or application/json, not {content_type}",
            param="content-type",
        )
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send an OSSA manifest", code="empty_body")
    try:
        return raw.decode("utf-8"), fmt
    except UnicodeDecodeError as exc:
        raise ApiError(400, "the request body is not UTF-8 text", code="invalid_encoding") from exc
