"""Limits on hostile input, checked before a tree is built.

Parsers recurse: libyaml's composer in C (50k nested `[` segfaulted the process, and the embedded
nats-server with it), Python's json in C until RecursionError. So depth is measured by a scan that
does not recurse: a regex tokenizer for JSON, libyaml's event stream (a state machine with its own
stack) for YAML, which also counts what aliases would expand to. Text that passes is parsed as usual.

Strings with lone surrogates (`"\\ud800"` is valid JSON and YAML, but not Unicode) cannot be stored
or encoded as UTF-8; `surrogate_path` finds the first one so the caller can name it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_DEPTH = 64
MAX_YAML_NODES = 200_000

# A JSON string (with escapes) or one bracket; everything else between them is skipped.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')

try:
    _Parser: Any = yaml.CParser  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.parser import Parser as _PyParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _PyParser):  # type: ignore[no-redef]
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _PyParser.__init__(self)


class InputRejected(ValueError):
    """Input refused before parsing; `code` and `line` (when known) go into the error the caller sees."""

    def __init__(self, code: str, message: str, line: int | None = None):
        super().__init__(message)
        self.code, self.message, self.line = code, message, line


def check_json_depth(data: bytes | str, max_depth: int = MAX_DEPTH) -> None:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = 0
    for match in _JSON_TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                line = raw.count(b"\n", 0, match.start()) + 1
                raise InputRejected(
                    "too_deep", f"the JSON nests deeper than {max_depth} levels (line {line})", line=line
                )
        elif token in (b"]", b"}"):
            depth -= 1


def check_yaml(text: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_YAML_NODES) -> None:
    """Depth of every document, and the number of nodes it has once aliases are expanded (an alias
    bomb is a few KiB that expand to billions of nodes). Syntax errors are left to the real parse."""
    parser = _Parser(text)
    frames: list[list[Any]] = []  # per open collection: [nodes in it so far, its anchor]
    sizes: dict[str, int] = {}  # anchor -> nodes an alias to it stands for
    total = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                frames, sizes, total = [], {}, 0
                continue
            if isinstance(event, yaml.CollectionStartEvent):
                frames.append([1, event.anchor])
                if len(frames) > max_depth:
                    line = event.start_mark.line + 1
                    raise InputRejected(
                        "too_deep", f"the YAML nests deeper than {max_depth} levels (line {line})", line=line
                    )
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                count, anchor = frames.pop()
            elif isinstance(event, yaml.AliasEvent):
                count, anchor = sizes.get(event.anchor, 1), None
            elif isinstance(event, yaml.ScalarEvent):
                count, anchor = 1, event.anchor
            else:
                continue
            if anchor:
                sizes[anchor] = count
            if frames:
                frames[-1][0] += count
            else:
                total += count
            if total + sum(f[0] for f in frames) > max_nodes:
                line = event.start_mark.line + 1
                raise InputRejected(
                    "too_large",
                    f"the YAML expands to more than {max_nodes} values (aliases included; line {line})",
                    line=line,
                )
    except yaml.YAMLError:
        return  # the real parse reports it, with its line
    finally:
        if hasattr(parser, "dispose"):
            parser.dispose()


def surrogate_path(value: Any) -> list[str | int] | None:
    """JSON path of the first string (key or value) that holds a lone surrogate, without recursion."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                return path
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if isinstance(key, str) and _has_surrogate(key):
                    return [*path, key]
                stack.append((child, [*path, key]))
        elif isinstance(item, list):
            stack.extend((child, [*path, i]) for i, child in reversed(list(enumerate(item))))
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def dotted(path: list[str | int]) -> str:
    """`messages.0.content`, as OpenAI names a parameter."""
    return ".".join(str(p) for p in path)
