"""The registry over the real bus: request/reply, versions, change events, bad requests."""

import asyncio
import json
import textwrap

import nats
import pytest
from nats.errors import NoRespondersError

from ossabus.contracts import subjects
from ossabus.registry.service import RegistryService
from ossabus.runtime.settings import Settings
from ossabus.telemetry.service import TelemetryService


def manifest(name: str, prompt: str = "You help.") -> str:
    return textwrap.dedent(f"""\
        apiVersion: ossa/v0.3.4
        kind: Agent
        metadata:
          name: {name}
          version: 1.0.0
        spec:
          prompts: {{system: {prompt}}}
          llm: {{provider: openai, model: gpt-4o}}
        """)


@pytest.fixture
async def registry(clean_bus, tmp_path):
    (tmp_path / "one.yaml").write_text(manifest("from-file"))
    service = RegistryService(Settings(nats_url=clean_bus, manifest_dirs=[tmp_path], load_bundled_manifests=False))
    await service.start()
    yield service
    await service.stop()


async def until_answered(nc: nats.NATS, subject: str, seconds: float = 5.0) -> None:
    """Wait until something serves `subject`. Service.start() flushes after subscribing, so this
    should return at once; in a full CI run a first request once found no responders anyway (not
    reproduced in isolation; recorded in the session notes), so tests of freshly started services
    confirm reachability before asserting behaviour."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            await nc.request(subject, b"{}", timeout=2)
            return
        except NoRespondersError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def ask(nc: nats.NATS, subject: str, body: dict | bytes) -> dict:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await nc.request(subject, payload, timeout=5)
    return json.loads(reply.data)


async def test_loaded_manifests_are_listed_and_fetched(registry, nc):
    listing = await ask(nc, subjects.REGISTRY_LIST, {})
    assert listing["ok"] is True
    assert [m["name"] for m in listing["result"]["data"]] == ["from-file"]
    record = (await ask(nc, subjects.REGISTRY_GET, {"name": "from-file"}))["result"]
    assert record["version"] == 1
    assert record["definition"]["system_prompt"] == "You help."
    assert record["source"].endswith("one.yaml")
    status = (await ask(nc, subjects.REGISTRY_STATUS, {}))["result"]
    assert status == {"loaded": True, "manifests": 1, "load_errors": []}


async def test_every_write_is_a_version_and_publishes_a_change_event(registry, nc):
    events = await nc.subscribe(subjects.registry_changed("agent-a"))
    first = await ask(nc, subjects.REGISTRY_PUT, {"content": manifest("agent-a", "One."), "mode": "create"})
    assert (first["result"]["created"], first["result"]["record"]["version"]) == (True, 1)
    second = await ask(nc, subjects.REGISTRY_PUT, {"content": manifest("agent-a", "Two.")})
    assert (second["result"]["created"], second["result"]["record"]["version"]) == (False, 2)
    same = await ask(nc, subjects.REGISTRY_PUT, {"content": manifest("agent-a", "Two.")})
    assert (same["result"]["changed"], same["result"]["record"]["version"]) == (False, 2)

    old = (await ask(nc, subjects.REGISTRY_GET, {"name": "agent-a", "version": 1}))["result"]
    assert old["definition"]["system_prompt"] == "One."
    received = [json.loads((await events.next_msg(timeout=5)).data) for _ in range(2)]
    assert [(e["name"], e["action"], e["version"]) for e in received] == [("agent-a", "put", 1), ("agent-a", "put", 2)]
    with pytest.raises(nats.errors.TimeoutError):
        await events.next_msg(timeout=0.3)  # the unchanged write announced nothing

    deleted = await ask(nc, subjects.REGISTRY_DELETE, {"name": "agent-a"})
    assert deleted["result"] == {"name": "agent-a", "deleted": True}
    assert json.loads((await events.next_msg(timeout=5)).data)["action"] == "delete"
    again = await ask(nc, subjects.REGISTRY_PUT, {"content": manifest("agent-a", "Three.")})
    assert again["result"]["record"]["version"] == 3  # a re-created name keeps counting


async def test_create_of_an_existing_name_is_a_conflict_and_stores_nothing(registry, nc):
    reply = await ask(nc, subjects.REGISTRY_PUT, {"content": manifest("from-file", "Other."), "mode": "create"})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "conflict"
    record = (await ask(nc, subjects.REGISTRY_GET, {"name": "from-file"}))["result"]
    assert (record["version"], record["definition"]["system_prompt"]) == (1, "You help.")


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"not json", "invalid_request", None),
        ({"content": 42}, "invalid_request", "content"),
        ({"content": "a: [1"}, "invalid_manifest", "$"),
        ({"content": manifest("Bad_Name")}, "invalid_manifest", "$.metadata.name"),
        ({"content": manifest("x") + "---\n" + manifest("y")}, "invalid_request", None),
        ({"content": manifest("x"), "name": "y"}, "invalid_request", "metadata.name"),
        ({"content": "a: '" + "x" * (1024 * 1024) + "'"}, "too_large", None),
    ],
)
async def test_bad_puts_get_typed_errors_and_store_nothing(registry, nc, body, code, param):
    reply = await ask(nc, subjects.REGISTRY_PUT, body)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    if param:
        assert reply["error"]["param"] == param
    names = [m["name"] for m in (await ask(nc, subjects.REGISTRY_LIST, {}))["result"]["data"]]
    assert names == ["from-file"]


async def test_missing_manifests_and_versions_are_not_found(registry, nc):
    for request in ({"name": "nope"}, {"name": "from-file", "version": 9}):
        reply = await ask(nc, subjects.REGISTRY_GET, request)
        assert reply["error"]["code"] == "not_found"
    assert (await ask(nc, subjects.REGISTRY_DELETE, {"name": "nope"}))["error"]["code"] == "not_found"


async def test_validate_reports_without_storing(registry, nc):
    reply = await ask(nc, subjects.REGISTRY_VALIDATE, {"content": manifest("checked"), "strict": True})
    assert reply["result"]["valid"] is True
    assert reply["result"]["definitions"][0]["name"] == "checked"
    broken = await ask(nc, subjects.REGISTRY_VALIDATE, {"content": "kind: Agent\n"})
    assert broken["result"]["valid"] is False
    codes = {d["code"] for r in broken["result"]["reports"] for d in r["diagnostics"]}
    assert {"manifest.api_version_missing", "manifest.metadata_missing"} <= codes
    assert (await ask(nc, subjects.REGISTRY_GET, {"name": "checked"}))["error"]["code"] == "not_found"


async def test_concurrent_writers_of_one_name_each_get_their_own_version(registry, nc):
    replies = await asyncio.gather(
        *(ask(nc, subjects.REGISTRY_PUT, {"content": manifest("racer", f"Take {i}.")}) for i in range(8))
    )
    assert all(r["ok"] for r in replies)
    assert sorted(r["result"]["record"]["version"] for r in replies) == list(range(1, 9))


async def test_manifests_survive_a_registry_restart_without_new_versions(clean_bus, tmp_path, nc):
    (tmp_path / "one.yaml").write_text(manifest("keeper"))
    settings = Settings(nats_url=clean_bus, manifest_dirs=[tmp_path], load_bundled_manifests=False)
    for _ in range(2):
        service = RegistryService(settings)
        await service.start()
        record = (await ask(nc, subjects.REGISTRY_GET, {"name": "keeper"}))["result"]
        await service.stop()
        assert record["version"] == 1


async def test_a_stopped_registry_is_no_silent_timeout(clean_bus, nc):
    with pytest.raises(NoRespondersError):
        await nc.request(subjects.REGISTRY_LIST, b"{}", timeout=2)


async def test_the_telemetry_service_answers_usage_queries_and_refuses_bad_ones(clean_bus, nc):
    settings = Settings(nats_url=clean_bus, load_bundled_manifests=False)
    service = TelemetryService(settings)
    await service.start()
    await until_answered(nc, subjects.TELEMETRY_USAGE)
    try:
        empty = await ask(nc, subjects.TELEMETRY_USAGE, {"agent": "nobody"})
        assert empty["ok"] is True
        assert empty["result"]["data"] == []
        assert empty["result"]["total"]["total_tokens"] == 0
        bad = await ask(nc, subjects.TELEMETRY_USAGE, {"from_day": "last tuesday"})
        assert bad["ok"] is False
        assert bad["error"]["code"] == "invalid_request"
        assert bad["error"]["param"] == "from_day"
        metrics = await ask(nc, subjects.TELEMETRY_METRICS, {})
        assert "# TYPE" in metrics["result"]["text"]
    finally:
        await service.stop()


async def test_the_dispatcher_answers_bad_calls_with_typed_errors(clean_bus, nc):
    from ossabus.dispatcher.service import DispatcherService

    service = DispatcherService(Settings(nats_url=clean_bus, load_bundled_manifests=False))
    await service.start()
    await until_answered(nc, subjects.DISPATCHER_TOOLS)
    try:
        assert (await ask(nc, subjects.DISPATCHER_CALL, {"call_id": "x"}))["error"]["code"] == "invalid_request"
        call = {
            "tool": {"name": "nobody_serves_this", "function_name": "nobody_serves_this"},
            "call_id": "call_1",
            "arguments": "{}",
        }
        reply = await ask(nc, subjects.DISPATCHER_CALL, call)
        assert reply["ok"] is True
        assert reply["result"]["error"]["code"] == "no_worker"
        assert (await ask(nc, subjects.DISPATCHER_TOOLS, {}))["result"] == {"data": []}
    finally:
        await service.stop()
