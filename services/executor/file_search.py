"""`file_search` in runs: the model sees a function `file_search({"query"})`; the executor answers it
by searching the run's vector stores through the retrieval service, for any model.

Which stores: a Responses request names them on its tool (`run.file_search_scope`); an Assistants
run uses the assistant's and the thread's `tool_resources.file_search.vector_store_ids` (read at
each search, so files attached to the thread meanwhile count). A store still indexing is waited for,
up to `OSSABUS_FILE_SEARCH_WAIT_S`, then what is ready is searched.

Each passage reaches the model with a marker `【k:j†filename】` (the k-th search of the run, its j-th
result), the form OpenAI's assistants wrote; a marker the answer repeats becomes a `file_citation`
annotation for that file. Numbering comes from the run's stored steps, so any executor that
continues the run numbers the same way.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition, ToolDefinition
from ossabus.contracts.openai_objects import Run, RunStep, Thread, ToolCall, ToolCallsDetails
from ossabus.contracts.retrieval import SearchRequest, SearchResults
from ossabus.contracts.tools import tool_error
from ossabus.runtime.bus import BusClient, BusFailure

NAME = "file_search"
DEFAULT_MAX_RESULTS = 20  # OpenAI's default for file_search
RANKER = "default_2024_08_21"  # the ranker name OpenAI reports for `auto`
WAIT_ENV = "OSSABUS_FILE_SEARCH_WAIT_S"
MARKER = re.compile(r"【(\d+):(\d+)†[^】]*】")

TOOL = ToolDefinition(
    name=NAME,
    function_name=NAME,
    kind="file_search",
    description=(
        "Search the files available to you for passages relevant to a query. Each passage comes with a "
        "marker such as 【0:1†report.pdf】: when a passage supports what you write, put its marker right "
        "after that sentence."
    ),
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to look for, in plain words."}},
        "required": ["query"],
    },
)


def indexing_wait_s() -> float:
    return float(os.environ.get(WAIT_ENV, 30.0))


@dataclass
class Scope:
    vector_store_ids: list[str] = field(default_factory=list)
    max_num_results: int = DEFAULT_MAX_RESULTS
    score_threshold: float = 0.0
    ranker: str = "auto"
    filters: dict[str, Any] | None = None


def _store_ids(resources: dict[str, Any] | None) -> list[str]:
    ids = ((resources or {}).get("file_search") or {}).get("vector_store_ids") or []
    return [i for i in ids if isinstance(i, str)]


def offered(run: Run) -> bool:
    return any(t.type == "file_search" for t in run.tools) or run.file_search_scope is not None


def scope_of(run: Run, definition: AgentDefinition, thread: Thread | None) -> Scope:
    if run.file_search_scope is not None:
        given = run.file_search_scope
        ranking = given.get("ranking_options") or {}
        return Scope(
            vector_store_ids=list(given.get("vector_store_ids") or []),
            max_num_results=int(given.get("max_num_results") or DEFAULT_MAX_RESULTS),
            score_threshold=float(ranking.get("score_threshold") or 0.0),
            ranker=ranking.get("ranker") or "auto",
            filters=given.get("filters"),
        )
    tool = next((t for t in run.tools if t.type == "file_search"), None)
    options = (tool.file_search if tool is not None else None) or {}
    ranking = options.get("ranking_options") or {}
    ids = dict.fromkeys(_store_ids(thread.tool_resources if thread else None) + _store_ids(definition.tool_resources))
    return Scope(
        vector_store_ids=list(ids),
        max_num_results=int(options.get("max_num_results") or DEFAULT_MAX_RESULTS),
        score_threshold=float(ranking.get("score_threshold") or 0.0),
        ranker=ranking.get("ranker") or "auto",
    )


def searches(steps: list[RunStep]) -> list[ToolCall]:
    """The run's file_search calls in the order they were made: their position is `k` in markers."""
    out = []
    for step in steps:
        if isinstance(step.step_details, ToolCallsDetails):
            out.extend(c for c in step.step_details.tool_calls if c.type == "file_search")
    return out


def query_of(call: ToolCall) -> str:
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError:
        return ""
    query = arguments.get("query") if isinstance(arguments, dict) else None
    return query.strip() if isinstance(query, str) else ""


async def search(bus: BusClient, call: ToolCall, number: int, scope: Scope, project: str) -> None:
    """Answer one call: `call.file_search` gets OpenAI's details (results with their content, kept
    in the store), `call.function.output` the passages as the model reads them."""
    call.type = "file_search"
    ranking = {"ranker": RANKER if scope.ranker == "auto" else scope.ranker, "score_threshold": scope.score_threshold}
    query = query_of(call)
    # `queries` is an ossabus addition (OpenAI's step shows none): Responses' file_search_call needs it
    call.file_search = {"ranking_options": ranking, "results": [], "queries": [query] if query else []}
    if not query:
        call.function.output = tool_error("invalid_arguments", 'file_search takes {"query": "<what to look for>"}')
        return
    if not scope.vector_store_ids:
        call.function.output = "No files are available to search."
        return
    wait = indexing_wait_s()
    request = SearchRequest(
        vector_store_ids=scope.vector_store_ids,
        queries=[query],
        filters=scope.filters,
        max_num_results=max(1, min(50, scope.max_num_results)),
        score_threshold=scope.score_threshold,
        hybrid=scope.ranker != "none",
        project=project,
        wait_for_indexing_s=wait,
    )
    try:
        found = await bus.call(subjects.RETRIEVAL_SEARCH, request, SearchResults, wait_s=wait + 60)
    except BusFailure as failure:
        call.function.output = tool_error("file_search_failed", failure.error.message)
        return
    call.file_search["results"] = [
        {
            "file_id": hit.file_id,
            "file_name": hit.filename,
            "score": hit.score,
            "content": [{"type": "text", "text": hit.text}],
        }
        for hit in found.data
    ]
    if not found.data:
        call.function.output = f"No passages matched {query!r}."
        return
    call.function.output = "\n\n".join(
        f"【{number}:{j}†{hit.filename or hit.file_id}】 {hit.text}" for j, hit in enumerate(found.data)
    )


def citations(text: str, steps: list[RunStep]) -> list[dict[str, Any]]:
    """`file_citation` annotations for the markers the answer repeats (unknown markers are left as text)."""
    made = searches(steps)
    out = []
    for match in MARKER.finditer(text):
        k, j = int(match[1]), int(match[2])
        results = (made[k].file_search or {}).get("results") or [] if k < len(made) else []
        if j >= len(results):
            continue
        out.append(
            {
                "type": "file_citation",
                "text": match[0],
                "start_index": match.start(),
                "end_index": match.end(),
                "file_citation": {"file_id": results[j]["file_id"]},
            }
        )
    return out
