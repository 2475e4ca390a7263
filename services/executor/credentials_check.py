"""One warning at start for each provider the agents use whose credentials are missing.

Without it the first sign of a missing `OPENAI_API_KEY` was a run that failed, long after start.
The check runs where model calls are made (the executor's environment is the one that matters) and
asks litellm which variables each agent's model needs, so it knows every provider litellm knows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading

from ossabus.contracts import subjects
from ossabus.contracts.agent import AgentDefinition
from ossabus.contracts.bus import AnyRequest, ListManifestsRequest, ManifestList, RegistryStatus
from ossabus.runtime.bus import BusClient, BusFailure

log = logging.getLogger(__name__)
WAIT_FOR_REGISTRY_S = 60.0


def missing_variables(definition: AgentDefinition) -> tuple[str, ...]:
    """The variables the agent's model calls need and this environment lacks ((), when none)."""
    from ossabus.executor.llm import _litellm

    llm = definition.llm
    if llm.api_key_env:
        return () if os.environ.get(llm.api_key_env) else (llm.api_key_env,)
    if llm.base_url or not llm.litellm_model:
        return ()  # an endpoint of the manifest's own, called without the operator's keys
    try:
        found = _litellm().validate_environment(model=llm.litellm_model)
    except Exception:  # a model litellm does not know fails at call time, with its own message
        return ()
    # litellm lists a provider's base URL as missing even where it has a default (ollama): not a key
    return tuple(k for k in found.get("missing_keys", []) if not k.endswith(("_API_BASE", "_BASE_URL")))


def summarize(definitions: list[AgentDefinition]) -> list[str]:
    """One line per set of missing variables, naming the agents and the provider."""
    by_missing: dict[tuple[str, ...], list[AgentDefinition]] = collections.defaultdict(list)
    for definition in definitions:
        missing = missing_variables(definition)
        if missing:
            by_missing[missing].append(definition)
    lines = []
    for missing, agents in sorted(by_missing.items()):
        providers = sorted({(a.llm.litellm_model or "?").split("/", 1)[0] for a in agents})
        names = ", ".join(sorted(a.name for a in agents))
        count = f"{len(agents)} agents use" if len(agents) != 1 else "1 agent uses"
        lines.append(
            f"{count} {'/'.join(providers)}: set {' and '.join(missing)} where the executor runs, "
            f"or their runs will fail ({names})"
        )
    return lines


async def warn_missing_credentials(bus: BusClient) -> None:
    """Wait for the registry to have loaded its manifests, then warn once per missing credential."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_REGISTRY_S
    while True:
        try:
            status = await bus.call(subjects.REGISTRY_STATUS, AnyRequest(), RegistryStatus, wait_s=5)
            if status.loaded:
                listing = await bus.call(
                    subjects.REGISTRY_LIST, ListManifestsRequest(with_definitions=True), ManifestList, wait_s=10
                )
                break
        except BusFailure:
            pass
        if loop.time() > deadline:
            return
        await asyncio.sleep(1)
    definitions = [m.definition for m in listing.data if m.definition is not None and m.kind == "Agent"]
    for line in await off_the_loop(summarize, definitions):
        log.warning(line)


async def off_the_loop(function, *args):
    """`function(*args)` on a daemon thread: the check may import litellm (seconds, more on a loaded
    machine), and a process asked to stop must not wait for that on the way out, as it would for a
    thread of the loop's default executor."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def work() -> None:
        try:
            outcome, failure = function(*args), None
        except Exception as exc:
            outcome, failure = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for the answer
            loop.call_soon_threadsafe(_settle, done, outcome, failure)

    threading.Thread(target=work, name="ossabus-credentials-check", daemon=True).start()
    return await done


def _settle(future: asyncio.Future, outcome, failure: Exception | None) -> None:
    if future.done():  # the waiting task was cancelled (the executor stopped)
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(outcome)
