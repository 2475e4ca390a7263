"""The `${{ ... }}` expression language of OSSA workflows, parsed once and evaluated without `eval`.

A manifest is untrusted input, so its expressions are read by a small parser of our own rather than
handed to Python: they can name values (`workflow.input.x`, `steps.fetch.output.items[0]`,
`context.variables.y`, a loop's `item` and `index`), compare them (`== != < <= > >= in`), combine
them (`&& || !`, `a ? b : c`) and call a few functions (`length`, `contains`, `startsWith`,
`endsWith`, `join`, `toJSON`, `fromJSON`, `now`). Nothing else: no attribute of a Python object, no
environment, no I/O.

Step ids may hold `-` (`steps.fetch-content.output`), so a `-` inside a name is part of it; there is
no subtraction. A missing key gives null, as in GitHub Actions, so `steps.x.output.flag` of a step
that was skipped is simply null.

A string that is one expression and nothing else (`"${{ steps.a.output }}"`) gives the value with
its type; an expression inside other text is interpolated as text (JSON for objects, "" for null).
`${ ... }` (single braces, OSSA v0.3) is read the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}|\$\{([^{}]*)\}", re.S)
MAX_LENGTH = 2000  # characters of one expression: a manifest is not a program


class ExpressionError(ValueError):
    """An expression that cannot be read, or cannot be evaluated against the values it names."""


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple[Any, ...] = ()


_TOKENS = re.compile(
    r"""\s*(?:
      (?P<number>-?\d+(?:\.\d+)?)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|<=|>=|&&|\|\||[<>!?:.,()\[\]])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)
    )""",
    re.X,
)
FUNCTIONS = ("length", "contains", "startsWith", "endsWith", "join", "toJSON", "fromJSON", "now")
KEYWORDS = {"true": True, "false": False, "null": None}


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    at = 0
    text = text.rstrip()
    while at < len(text):
        match = _TOKENS.match(text, at)
        if match is None or match.end() == at:
            raise ExpressionError(f"unexpected {text[at:].strip()[:20]!r} in {text.strip()!r}")
        at = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "number":
            out.append(("value", float(value) if "." in value else int(value)))
        elif kind == "string":
            out.append(("value", _unquote(value)))
        elif kind == "name" and value in KEYWORDS:
            out.append(("value", KEYWORDS[value]))
        elif kind == "name" and value in ("in", "not"):
            out.append(("op", value))
        else:
            out.append((kind, value))  # type: ignore[arg-type]
    return out


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


class _Parser:
    """Recursive descent, lowest precedence first: ternary, ||, &&, !, comparison, postfix, primary."""

    def __init__(self, text: str):
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"an expression is limited to {MAX_LENGTH} characters")
        self.text = text.strip()
        self.items = _tokens(text)
        self.at = 0

    def parse(self) -> Node:
        if not self.items:
            raise ExpressionError("an empty expression")
        node = self.ternary()
        if self.at != len(self.items):
            raise ExpressionError(f"unexpected {self.items[self.at][1]!r} in {self.text!r}")
        return node

    def peek(self, *ops: str) -> bool:
        return self.at < len(self.items) and self.items[self.at][0] == "op" and self.items[self.at][1] in ops

    def take(self, op: str) -> None:
        if not self.peek(op):
            found = self.items[self.at][1] if self.at < len(self.items) else "the end"
            raise ExpressionError(f"expected {op!r} but found {found!r} in {self.text!r}")
        self.at += 1

    def ternary(self) -> Node:
        condition = self.either()
        if self.peek("?"):
            self.at += 1
            yes = self.ternary()
            if not self.peek(":"):  # `a ? b` (seen in OSSA's own examples): null otherwise
                return Node("?", (condition, yes, Node("value", (None,))))
            self.take(":")
            return Node("?", (condition, yes, self.ternary()))
        return condition

    def either(self) -> Node:
        node = self.both()
        while self.peek("||"):
            self.at += 1
            node = Node("||", (node, self.both()))
        return node

    def both(self) -> Node:
        node = self.negation()
        while self.peek("&&"):
            self.at += 1
            node = Node("&&", (node, self.negation()))
        return node

    def negation(self) -> Node:
        if self.peek("!"):
            self.at += 1
            return Node("!", (self.negation(),))
        return self.comparison()

    def comparison(self) -> Node:
        left = self.postfix()
        if self.peek("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.items[self.at][1]
            self.at += 1
            return Node(op, (left, self.postfix()))
        if self.peek("not"):
            self.at += 1
            self.take("in")
            return Node("!", (Node("in", (left, self.postfix())),))
        return left

    def postfix(self) -> Node:
        node = self.primary()
        while self.peek(".", "["):
            if self.peek("."):
                self.at += 1
                kind, name = self.items[self.at] if self.at < len(self.items) else ("end", "the end")
                if kind != "name":
                    raise ExpressionError(f"expected a name after '.' but found {name!r} in {self.text!r}")
                self.at += 1
                node = Node("get", (node, Node("value", (name,))))
            else:
                self.at += 1
                key = self.ternary()
                self.take("]")
                node = Node("get", (node, key))
        return node

    def primary(self) -> Node:
        if self.at >= len(self.items):
            raise ExpressionError(f"{self.text!r} ends too early")
        kind, value = self.items[self.at]
        self.at += 1
        if kind == "value":
            return Node("value", (value,))
        if kind == "name":
            if self.peek("("):
                if value not in FUNCTIONS:
                    raise ExpressionError(f"unknown function {value!r} (known: {', '.join(FUNCTIONS)})")
                self.at += 1
                args = []
                while not self.peek(")"):
                    args.append(self.ternary())
                    if not self.peek(")"):
                        self.take(",")
                self.take(")")
                return Node("call", (value, *args))
            return Node("name", (value,))
        if value == "(":
            node = self.ternary()
            self.take(")")
            return node
        if value == "[":
            elements = []
            while not self.peek("]"):
                elements.append(self.ternary())
                if not self.peek("]"):
                    self.take(",")
            self.take("]")
            return Node("list", tuple(elements))
        raise ExpressionError(f"unexpected {value!r} in {self.text!r}")


_CACHE: dict[str, Node] = {}


def parse(text: str) -> Node:
    """The parsed expression (cached: a loop evaluates the same few expressions many times)."""
    node = _CACHE.get(text)
    if node is None:
        try:
            node = _Parser(text).parse()
        except RecursionError as exc:
            raise ExpressionError("the expression is nested too deeply") from exc
        if len(_CACHE) < 10_000:
            _CACHE[text] = node
    return node


def names(node: Node) -> list[list[str]]:
    """The dotted paths an expression reads (`steps.fetch.output` -> ["steps", "fetch", "output"])."""
    found: list[list[str]] = []

    def path(n: Node) -> list[str] | None:
        if n.op == "name":
            return [n.args[0]]
        if n.op == "get":
            head = path(n.args[0])
            key = n.args[1]
            if head is not None and key.op == "value" and isinstance(key.args[0], str):
                return [*head, key.args[0]]
            return head
        return None

    def walk(n: Any) -> None:
        if not isinstance(n, Node):
            return
        whole = path(n)
        if whole is not None:
            found.append(whole)
            if n.op == "get":
                walk(n.args[1])
            return
        for arg in n.args:
            walk(arg)

    walk(node)
    return found


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and value != [] and value != {}


def _compare(op: str, left: Any, right: Any) -> bool:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not numbers and not (isinstance(left, str) and isinstance(right, str)):
        raise ExpressionError(f"cannot compare {kind_of(left)} with {kind_of(right)} using {op}")
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def kind_of(value: Any) -> str:
    return (
        "null"
        if value is None
        else {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
    )


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        return container.get(key) if isinstance(key, str) else None
    if isinstance(container, list) and isinstance(key, int) and not isinstance(key, bool):
        return container[key] if -len(container) <= key < len(container) else None
    if isinstance(container, list) and key == "length":
        return len(container)
    return None


def _call(name: str, args: list[Any]) -> Any:
    def need(count: int) -> None:
        if len(args) != count:
            raise ExpressionError(f"{name}() takes {count} argument{'s' if count != 1 else ''}, not {len(args)}")

    if name == "now":
        need(0)
        return datetime.now(UTC).isoformat(timespec="seconds")
    if name == "length":
        need(1)
        return len(args[0]) if isinstance(args[0], str | list | dict) else 0
    if name == "contains":
        need(2)
        haystack, needle = args
        if isinstance(haystack, str):
            return isinstance(needle, str) and needle.lower() in haystack.lower()
        return isinstance(haystack, list) and needle in haystack
    if name in ("startsWith", "endsWith"):
        need(2)
        if not all(isinstance(a, str) for a in args):
            return False
        text, part = args[0].lower(), args[1].lower()
        return text.startswith(part) if name == "startsWith" else text.endswith(part)
    if name == "join":
        if len(args) not in (1, 2):
            raise ExpressionError("join() takes a list and an optional separator")
        items = args[0] if isinstance(args[0], list) else [args[0]]
        return (args[1] if len(args) == 2 else ",").join(as_text(i) for i in items)
    if name == "toJSON":
        need(1)
        return json.dumps(args[0], indent=2)
    need(1)
    if not isinstance(args[0], str):
        raise ExpressionError("fromJSON() takes a string")
    try:
        return json.loads(args[0])
    except json.JSONDecodeError as exc:
        raise ExpressionError(f"fromJSON(): the text is not JSON ({exc.msg})") from exc


def evaluate(node: Node, scope: Mapping[str, Any]) -> Any:
    """The value of a parsed expression; names are looked up in `scope` (unknown ones are an error,
    missing keys below them are null)."""
    op, args = node.op, node.args
    if op == "value":
        return args[0]
    if op == "name":
        if args[0] not in scope:
            raise ExpressionError(f"unknown name {args[0]!r} (known here: {', '.join(sorted(scope))})")
        return scope[args[0]]
    if op == "get":
        return _get(evaluate(args[0], scope), evaluate(args[1], scope))
    if op == "list":
        return [evaluate(a, scope) for a in args]
    if op == "call":
        return _call(args[0], [evaluate(a, scope) for a in args[1:]])
    if op == "?":
        return evaluate(args[1] if truthy(evaluate(args[0], scope)) else args[2], scope)
    if op == "||":
        left = evaluate(args[0], scope)
        return left if truthy(left) else evaluate(args[1], scope)
    if op == "&&":
        left = evaluate(args[0], scope)
        return evaluate(args[1], scope) if truthy(left) else left
    if op == "!":
        return not truthy(evaluate(args[0], scope))
    left, right = evaluate(args[0], scope), evaluate(args[1], scope)
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "in":
        if isinstance(right, str):
            return isinstance(left, str) and left in right
        if isinstance(right, list | dict):
            return left in right
        raise ExpressionError(f"'in' needs a list, an object or a string on its right, not {kind_of(right)}")
    return _compare(op, left, right)


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def expressions_in(text: str) -> list[str]:
    """The bodies of the `${{ }}` / `${ }` expressions in a string."""
    return [(m.group(1) if m.group(1) is not None else m.group(2)) for m in TEMPLATE.finditer(text)]


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """A step's `input` (or any manifest value) with its expressions replaced by their values."""
    if isinstance(value, str):
        return _render_text(value, scope)
    if isinstance(value, dict):
        return {key: render(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, scope) for item in value]
    return value


def _render_text(text: str, scope: Mapping[str, Any]) -> Any:
    if "${" not in text:
        return text
    stripped = text.strip()
    found = list(TEMPLATE.finditer(stripped))
    if len(found) == 1 and found[0].span() == (0, len(stripped)):  # one expression and nothing else: its value
        whole = found[0]
        return evaluate(parse(whole.group(1) if whole.group(1) is not None else whole.group(2)), scope)
    return TEMPLATE.sub(lambda m: as_text(evaluate(parse(m.group(1) or m.group(2) or ""), scope)), text)


def condition(text: str, scope: Mapping[str, Any]) -> bool:
    """A step's or branch's `condition`: `${{ ... }}`, or a bare expression."""
    stripped = text.strip()
    if "${" in stripped:
        return truthy(_render_text(stripped, scope))
    return truthy(evaluate(parse(stripped), scope))


def check(value: Any, on_error: Callable[[str, list[str | int]], None], path: list[str | int]) -> None:
    """Parse every expression in a manifest value, reporting the ones that cannot be read."""
    if isinstance(value, dict):
        for key, item in value.items():
            check(item, on_error, [*path, str(key)])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check(item, on_error, [*path, i])
    elif isinstance(value, str) and "${" in value:
        for body in expressions_in(value):
            try:
                parse(body)
            except ExpressionError as exc:
                on_error(str(exc), path)
