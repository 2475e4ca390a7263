"""A run's events from the bus as the Responses API's stream events, with `sequence_number`.

The translation depends only on the run's events in order, so a replay of the same events gives the
same events with the same numbers: that is what makes `GET /v1/responses/{id}?stream=true&
starting_after=N` resume exactly. The final event (`response.completed`, `.incomplete`, `.failed`)
carries the response as stored, read after the run's ending event (the executor writes before it
announces).

Text streams as it comes. Tool calls are shown whole once it is known who runs them: a call the run
waits on the client for (at `requires_action`) as a `function_call`, a call that ran on the server
once it has its output (`mcp_call` added, arguments, completed or failed, done). Until then a call
may still run on the server or turn into an approval request, and a client must never be shown
as its own a call the server runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ossabus.contracts.openai_objects import ToolCall
from ossabus.relay.responses.objects import (
    SERVER_LABEL,
    approval_request_item,
    code_interpreter_item,
    file_search_item,
    function_call_item,
    item_id,
    mcp_call_item,
    output_annotations,
    wants_outputs,
    wants_results,
)
from ossabus.runtime.events import REASONING_DELTA
from ossabus.store.responses import ResponseRecord

Event = dict[str, Any]

# Events that follow a turn's reasoning: the reasoning item closes before them.
TURN_OUTPUT = {
    "thread.message.created",
    "thread.message.delta",
    "thread.run.step.delta",
    "thread.run.step.completed",
    "thread.run.requires_action",
}
ENDINGS = {
    "thread.run.completed": "response.completed",
    "thread.run.requires_action": "response.completed",
    "thread.run.incomplete": "response.incomplete",
    "thread.run.failed": "response.failed",
    "thread.run.expired": "response.failed",
    "thread.run.cancelled": "response.failed",
    "error": "response.failed",
}


@dataclass
class ResponseEvents:
    record: ResponseRecord
    snapshot: dict[str, Any]  # the response as created: status and request echo, no output yet
    sequence: int = 0
    items: int = 0
    texts: dict[str, tuple[int, list[str]]] = field(default_factory=dict)  # message id -> (index, parts)
    partial: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)  # (step, index) -> call so far
    shown: set[str] = field(default_factory=set)  # call ids already shown whole (or by an earlier response)
    in_progress_sent: bool = False
    reasoning: tuple[str, int, list[str]] | None = None  # the open reasoning item: id, index, text so far
    # code_interpreter calls being streamed: (step, index) -> {"id", "index" (output), "code"}
    interpreting: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[Event]:
        out = [self._event("response.created", response=self.snapshot)]
        for item in self.record.list_items:  # MCP servers the request named, listed before the run
            index = self.items
            self.items += 1
            started = {**item, "tools": []}
            out.append(self._event("response.output_item.added", output_index=index, item=started))
            out.append(self._event("response.mcp_list_tools.in_progress", item_id=item["id"], output_index=index))
            outcome = "failed" if item.get("error") else "completed"
            out.append(self._event(f"response.mcp_list_tools.{outcome}", item_id=item["id"], output_index=index))
            out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    def feed(self, name: str, data: Any) -> list[Event]:
        if not isinstance(data, dict):
            return []
        if name == REASONING_DELTA:
            return self._reasoning_delta(data)
        out = self._close_reasoning() if name in TURN_OUTPUT else []
        return out + self._feed(name, data)

    def _feed(self, name: str, data: dict) -> list[Event]:
        if name == "thread.run.in_progress" and not self.in_progress_sent:
            self.in_progress_sent = True
            return [self._event("response.in_progress", response={**self.snapshot, "status": "in_progress"})]
        if name == "thread.message.created":
            return self._open_text(data.get("id", ""))
        if name == "thread.message.delta":
            return self._text_delta(data)
        if name in ("thread.message.completed", "thread.message.incomplete"):
            return self._close_text(data)
        if name == "thread.run.step.delta":
            return self._tool_deltas(data)
        if name == "thread.run.step.completed" and data.get("type") == "tool_calls":
            return self._step_calls(data)
        if name == "thread.run.requires_action":
            return self._requires_action(data)
        return []

    def ending(self, name: str) -> str | None:
        return ENDINGS.get(name)

    def finish(self, kind: str, response: dict[str, Any], error: dict[str, Any] | None = None) -> list[Event]:
        out = self._close_reasoning()
        if error is not None:
            out.append(self._event("error", code=error.get("code"), message=error.get("message", ""), param=None))
        out.append(self._event(kind, response=response))
        return out

    # --- reasoning -----------------------------------------------------------------------------------

    def _reasoning_delta(self, data: dict) -> list[Event]:
        out: list[Event] = []
        ident, delta = str(data.get("id", "")), str(data.get("delta", ""))
        if self.reasoning is None or self.reasoning[0] != ident:
            out += self._close_reasoning()
            index = self.items
            self.items += 1
            self.reasoning = (ident, index, [])
            item = {"id": ident, "type": "reasoning", "summary": []}
            part = {"type": "summary_text", "text": ""}
            out.append(self._event("response.output_item.added", output_index=index, item=item))
            out.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=ident,
                    output_index=index,
                    summary_index=0,
                    part=part,
                )
            )
        _, index, parts = self.reasoning
        parts.append(delta)
        out.append(
            self._event(
                "response.reasoning_summary_text.delta", item_id=ident, output_index=index, summary_index=0, delta=delta
            )
        )
        return out

    def _close_reasoning(self) -> list[Event]:
        if self.reasoning is None:
            return []
        ident, index, parts = self.reasoning
        self.reasoning = None
        text = "".join(parts)
        part = {"type": "summary_text", "text": text}
        return [
            self._event(
                "response.reasoning_summary_text.done", item_id=ident, output_index=index, summary_index=0, text=text
            ),
            self._event(
                "response.reasoning_summary_part.done", item_id=ident, output_index=index, summary_index=0, part=part
            ),
            self._event(
                "response.output_item.done",
                output_index=index,
                item={"id": ident, "type": "reasoning", "summary": [part]},
            ),
        ]

    # --- text ------------------------------------------------------------------------------------

    def _open_text(self, message_id: str) -> list[Event]:
        if message_id in self.texts:
            return []
        index = self.items
        self.items += 1
        self.texts[message_id] = (index, [])
        item = {"id": message_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self._event("response.output_item.added", output_index=index, item=item),
            self._event(
                "response.content_part.added", item_id=message_id, output_index=index, content_index=0, part=part
            ),
        ]

    def _text_delta(self, data: dict) -> list[Event]:
        message_id = data.get("id", "")
        out = self._open_text(message_id)
        index, parts = self.texts[message_id]
        for part in (data.get("delta") or {}).get("content") or []:
            value = (part.get("text") or {}).get("value") if part.get("type") == "text" else None
            if value:
                parts.append(value)
                out.append(
                    self._event(
                        "response.output_text.delta",
                        item_id=message_id,
                        output_index=index,
                        content_index=0,
                        delta=value,
                        logprobs=[],
                    )
                )
        return out

    def _close_text(self, message: dict) -> list[Event]:
        message_id = message.get("id", "")
        if message_id not in self.texts:
            if not _text_of(message):
                return []
            self._open_text(message_id)  # (a replay that starts after its opening cannot happen: kept whole)
        index, parts = self.texts.pop(message_id)
        text = _text_of(message) or "".join(parts)
        cited = [a for p in message.get("content") or [] for a in (p.get("text") or {}).get("annotations") or []]
        part = {
            "type": "output_text",
            "text": text,
            "annotations": output_annotations(cited, self.record.thread_id),
            "logprobs": [],
        }
        status = "completed" if message.get("status") == "completed" else "incomplete"
        item = {"id": message_id, "type": "message", "role": "assistant", "status": status, "content": [part]}
        return [
            self._event(
                "response.output_text.done",
                item_id=message_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._event(
                "response.content_part.done", item_id=message_id, output_index=index, content_index=0, part=part
            ),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    # --- tool calls ---------------------------------------------------------------------------------

    def _seen(self, step_id: str, entry: dict) -> dict[str, str]:
        """What the deltas told of one call so far (id, name, arguments)."""
        position = (step_id, int(entry.get("index", 0)))
        seen = self.partial.setdefault(position, {"id": "", "name": "", "arguments": ""})
        function = entry.get("function") or {}
        seen["id"] = entry.get("id") or seen["id"]
        seen["name"] = function.get("name") or seen["name"]
        seen["arguments"] += function.get("arguments") or ""
        return seen

    def _tool_deltas(self, data: dict) -> list[Event]:
        out: list[Event] = []
        for entry in ((data.get("delta") or {}).get("step_details") or {}).get("tool_calls") or []:
            if entry.get("type") == "file_search":
                if "results" in (entry.get("file_search") or {}) and entry.get("id"):
                    out += self._show_file_search(entry)
                continue
            if entry.get("type") == "code_interpreter":
                out += self._code_delta(data.get("id", ""), entry)
                continue
            seen = self._seen(data.get("id", ""), entry)
            output = (entry.get("function") or {}).get("output")
            if output is not None and seen["id"]:
                call = ToolCall.model_validate(
                    {
                        "id": seen["id"],
                        "function": {"name": seen["name"], "arguments": seen["arguments"], "output": output},
                    }
                )
                out += self._show_server_call(call)
        return out

    def _step_calls(self, step: dict) -> list[Event]:
        """A finished tool step: its server-side calls not shown yet (a continuation's step also
        holds the client's answers, which belong to the response before)."""
        out: list[Event] = []
        for n, entry in enumerate((step.get("step_details") or {}).get("tool_calls") or []):
            if entry.get("type") == "file_search":
                out += self._show_file_search(entry)
                continue
            if entry.get("type") == "code_interpreter":
                details = entry.get("code_interpreter") or {}
                position = (step.get("id", ""), n)
                streamed = position in self.interpreting
                head = {"index": n, "id": entry.get("id"), "type": "code_interpreter"}
                code = "" if streamed else details.get("input") or ""
                out += self._code_delta(position[0], {**head, "code_interpreter": {"input": code}})
                out += self._code_delta(
                    position[0], {**head, "code_interpreter": {"outputs": details.get("outputs") or []}}
                )
                continue
            call = ToolCall.model_validate(entry)
            if call.function.output is not None:
                out += self._show_server_call(call)
        return out

    def _show_function_call(self, call: ToolCall) -> list[Event]:
        if call.id in self.shown:
            return []
        self.shown.add(call.id)
        index = self.items
        self.items += 1
        item = function_call_item(call)
        ident = item["id"]
        return [
            self._event(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            ),
            self._event(
                "response.function_call_arguments.delta",
                item_id=ident,
                output_index=index,
                delta=call.function.arguments,
            ),
            self._event(
                "response.function_call_arguments.done",
                item_id=ident,
                output_index=index,
                name=call.function.name,
                arguments=call.function.arguments,
            ),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _show_server_call(self, call: ToolCall) -> list[Event]:
        if call.id in self.shown:
            return []
        self.shown.add(call.id)
        label = self.record.mcp_labels.get(call.function.name, SERVER_LABEL)
        done = mcp_call_item(call, label)
        index = self.items
        self.items += 1
        started = {**done, "status": "in_progress", "arguments": "", "output": None, "error": None}
        ident = done["id"]
        return [
            self._event("response.output_item.added", output_index=index, item=started),
            self._event("response.mcp_call.in_progress", item_id=ident, output_index=index),
            self._event(
                "response.mcp_call_arguments.delta", item_id=ident, output_index=index, delta=call.function.arguments
            ),
            self._event(
                "response.mcp_call_arguments.done", item_id=ident, output_index=index, arguments=call.function.arguments
            ),
            self._event(
                "response.mcp_call.completed" if done["status"] == "completed" else "response.mcp_call.failed",
                item_id=ident,
                output_index=index,
            ),
            self._event("response.output_item.done", output_index=index, item=done),
        ]

    def _code_delta(self, step_id: str, entry: dict) -> list[Event]:
        """A code_interpreter call as it streams: added and in progress when it starts, the code as the
        model writes it, then (with its outputs) code done, interpreting, completed, done."""
        position = (step_id, int(entry.get("index", 0)))
        details = entry.get("code_interpreter") or {}
        seen = self.interpreting.get(position)
        out: list[Event] = []
        if seen is None:
            if not entry.get("id") or entry["id"] in self.shown:
                return []
            seen = {"id": entry["id"], "index": self.items, "code": "", "done": False}
            self.items += 1
            self.interpreting[position] = seen
            self.shown.add(entry["id"])
            running = ToolCall(id=seen["id"], type="code_interpreter", function={"name": "python", "arguments": ""})
            started = {**code_interpreter_item(running, self.record.thread_id, with_outputs=False), "code": ""}
            out += [
                self._event("response.output_item.added", output_index=seen["index"], item=started),
                self._event(
                    "response.code_interpreter_call.in_progress", item_id=started["id"], output_index=seen["index"]
                ),
            ]
        if seen["done"]:
            return out
        ident = item_id("ci", seen["id"])
        if details.get("input"):
            seen["code"] += details["input"]
            out.append(
                self._event(
                    "response.code_interpreter_call_code.delta",
                    item_id=ident,
                    output_index=seen["index"],
                    delta=details["input"],
                )
            )
        if "outputs" in details and details["outputs"] is not None and entry.get("id"):
            if not details["outputs"] and "input" in details:
                return out  # the first delta of a call carries an empty list: not its result yet
            seen["done"] = True
            call = ToolCall(
                id=seen["id"],
                type="code_interpreter",
                function={"name": "python", "arguments": "", "output": ""},
                code_interpreter={"input": seen["code"], "outputs": details["outputs"]},
            )
            done = code_interpreter_item(call, self.record.thread_id, wants_outputs(self.record))
            out += [
                self._event(
                    "response.code_interpreter_call_code.done",
                    item_id=ident,
                    output_index=seen["index"],
                    code=seen["code"],
                ),
                self._event("response.code_interpreter_call.interpreting", item_id=ident, output_index=seen["index"]),
                self._event("response.code_interpreter_call.completed", item_id=ident, output_index=seen["index"]),
                self._event("response.output_item.done", output_index=seen["index"], item=done),
            ]
        return out

    def _show_file_search(self, entry: dict) -> list[Event]:
        """A search that ran: added (in progress), searching, completed, done."""
        if entry["id"] in self.shown:
            return []
        self.shown.add(entry["id"])
        call = ToolCall(
            id=entry["id"],
            type="file_search",
            file_search=entry.get("file_search") or {},
            function={"name": "file_search", "arguments": "", "output": ""},
        )
        done = file_search_item(call, wants_results(self.record))
        index = self.items
        self.items += 1
        ident = done["id"]
        return [
            self._event(
                "response.output_item.added",
                output_index=index,
                item={**done, "status": "in_progress", "results": None},
            ),
            self._event("response.file_search_call.in_progress", item_id=ident, output_index=index),
            self._event("response.file_search_call.searching", item_id=ident, output_index=index),
            self._event("response.file_search_call.completed", item_id=ident, output_index=index),
            self._event("response.output_item.done", output_index=index, item=done),
        ]

    def _requires_action(self, run: dict) -> list[Event]:
        action = run.get("required_action") or {}
        kind = action.get("type")
        waiting = (action.get(kind) or {}).get("tool_calls") or [] if kind else []
        out: list[Event] = []
        for entry in waiting:
            call = ToolCall.model_validate({"id": entry["id"], "function": entry["function"]})
            if kind == "submit_tool_outputs":
                out += self._show_function_call(call)
                continue
            if call.id in self.shown:
                continue
            self.shown.add(call.id)
            label = self.record.mcp_labels.get(call.function.name, SERVER_LABEL)
            item = approval_request_item(call, label)
            index = self.items
            self.items += 1
            out += [
                self._event("response.output_item.added", output_index=index, item=item),
                self._event("response.output_item.done", output_index=index, item=item),
            ]
        return out


def _text_of(message: dict) -> str:
    return "".join(
        (part.get("text") or {}).get("value", "") for part in message.get("content") or [] if part.get("type") == "text"
    )
