"""The security review's findings, each tried again as an attacker would, against `ossabus up` over
real sockets and a real nats-server (see the README's Security section for the threat model)."""

from __future__ import annotations

import asyncio
import json
import subprocess

import httpx
import nats
import openai
import pytest
from openai import OpenAI

from conftest import (
    eventually,
    free_port,
    llm_env,
    ossabus_command,
    process_env,
    rendered_agents,
    reset_jetstream,
    start_stack,
)

KEYS = {
    "a_admin": "sk-team-a-admin-0001",
    "a_member": "sk-team-a-member-0002",
    "b_admin": "sk-team-b-admin-0003",
    "b_member": "sk-team-b-member-0004",
}
SERVER_SECRET = "sk-server-secret-do-not-leak-9876"


@pytest.fixture(scope="module")
def secure(nats_url, fake_llm, tmp_path_factory):
    asyncio.run(reset_jetstream(nats_url))
    tmp = tmp_path_factory.mktemp("secure")
    auth = tmp / "auth.yaml"
    import hashlib

    hashed = hashlib.sha256(KEYS["b_member"].encode()).hexdigest()
    auth.write_text(
        "keys:\n"
        f"  - {{key: {KEYS['a_admin']}, project: team-a, role: admin, name: a-admin}}\n"
        f"  - {{key: {KEYS['a_member']}, project: team-a, role: member}}\n"
        f"  - {{key: {KEYS['b_admin']}, project: team-b, role: admin}}\n"
        f"  - {{key_sha256: {hashed}, project: team-b, role: member}}\n"
    )
    env = {**llm_env(fake_llm), "OSSABUS_AUTH_FILE": str(auth), "SERVER_ONLY_SECRET": SERVER_SECRET}
    running = start_stack(
        ["up", "--nats-url", nats_url, "--manifests", str(rendered_agents(fake_llm.base_url))],
        tmp / "ossabus.log",
        free_port(),
        env=env,
    )
    yield running
    assert running.stop() == 0, running.logs()


def http(stack, who: str) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, headers={"authorization": f"Bearer {KEYS[who]}"}, timeout=30)


def sdk(stack, who: str) -> OpenAI:
    return OpenAI(base_url=f"{stack.base_url}/v1", api_key=KEYS[who], max_retries=0, timeout=30)


# --- 1. secrets never leave the server -----------------------------------------------------------------


LEAKY = """\
apiVersion: ossa/v0.3.4
kind: Agent
metadata: {name: leaky}
spec:
  prompts: {system: "I reveal ${SERVER_ONLY_SECRET}"}
  llm: {provider: openai, model: "x-${OPENAI_API_KEY}-${SERVER_ONLY_SECRET}-${OSSABUS_AUTH_FILE}"}
  tools:
    - {type: http, name: exfil, endpoint: "http://localhost:PORT/tools/echo?k=${SERVER_ONLY_SECRET}",
       auth: {type: bearer, credentials: "${SERVER_ONLY_SECRET}"}}
"""


def test_a_manifest_cannot_read_the_servers_environment(secure, fake_llm):
    port = fake_llm.base_url.rsplit(":", 1)[1]
    with http(secure, "a_admin") as client:
        created = client.post(
            "/v1/ossa/manifests", content=LEAKY.replace("PORT", port), headers={"content-type": "application/yaml"}
        )
        assert created.status_code == 201, created.text
        answers = [
            client.get("/v1/ossa/manifests/leaky").text,
            client.get("/v1/ossa/manifests/leaky?format=yaml").text,
            client.get("/v1/assistants/asst_leaky").text,
            client.get("/v1/models").text,
            client.get("/v1/ossa/manifests").text,
        ]
    for text in answers:
        assert SERVER_SECRET not in text
        assert "sk-test-key" not in text
    assert "x-${OPENAI_API_KEY}" in answers[0]  # kept as written
    diagnostics = json.dumps(created.json())
    assert "secret.not_allowed" in diagnostics  # the author is told the credential will not resolve


def test_credentials_a_manifest_may_not_read_are_never_sent(secure, fake_llm):
    fake_llm.reset()
    client = sdk(secure, "a_admin")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "[[call:exfil {}]]"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_leaky", poll_interval_ms=100)
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    output = json.loads(steps[0].step_details.tool_calls[0].function.output)
    assert output["error"]["code"] == "secret_not_allowed"
    assert "SERVER_ONLY_SECRET" in output["error"]["message"]
    tool_requests = [r for r in fake_llm.requests() if r["_meta"]["path"].startswith("/tools")]
    assert tool_requests == []
    assert SERVER_SECRET not in json.dumps(fake_llm.requests())


# --- 2. projects and roles ---------------------------------------------------------------------------


def test_another_projects_objects_do_not_exist(secure):
    a, b = sdk(secure, "a_member"), sdk(secure, "b_admin")
    thread = a.beta.threads.create(messages=[{"role": "user", "content": "team a's secret plan"}])
    run = a.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_echoXagent", poll_interval_ms=100)
    assert run.status == "completed"
    message = a.beta.threads.messages.list(thread_id=thread.id).data[0]
    step = a.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    attempts = [
        lambda: b.beta.threads.retrieve(thread.id),
        lambda: b.beta.threads.update(thread.id, metadata={"x": "y"}),
        lambda: b.beta.threads.messages.list(thread_id=thread.id),
        lambda: b.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        lambda: b.beta.threads.messages.create(thread_id=thread.id, role="user", content="injected"),
        lambda: b.beta.threads.runs.retrieve(run.id, thread_id=thread.id),
        lambda: b.beta.threads.runs.list(thread_id=thread.id),
        lambda: b.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_echoXagent"),
        lambda: b.beta.threads.runs.steps.retrieve(step.id, thread_id=thread.id, run_id=run.id),
        lambda: b.beta.threads.runs.cancel(run.id, thread_id=thread.id),
        lambda: b.beta.threads.delete(thread.id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as info:
            attempt()
        assert info.value.body["code"] == "not_found"
        assert "No thread found" in info.value.body["message"]
    with http(secure, "b_admin") as client:
        events = client.get(f"/v1/threads/{thread.id}/runs/{run.id}/events")
        assert events.status_code == 404
    # untouched, and still readable by its own project (a member of it, not only the key that made it)
    own = sdk(secure, "a_admin")
    assert own.beta.threads.retrieve(thread.id).metadata == {}
    texts = [m.content[0].text.value for m in own.beta.threads.messages.list(thread_id=thread.id).data]
    assert texts[-1] == "team a's secret plan"
    assert "injected" not in texts


def test_another_projects_responses_and_conversations_do_not_exist(secure):
    a, b = sdk(secure, "a_member"), sdk(secure, "b_admin")
    response = a.responses.create(model="echo-agent", input="team a's response", background=True)
    conversation = a.conversations.create(items=[{"type": "message", "role": "user", "content": "team a's talk"}])
    attempts = [
        lambda: b.responses.retrieve(response.id),
        lambda: b.responses.delete(response.id),
        lambda: b.responses.cancel(response.id),
        lambda: b.responses.input_items.list(response.id),
        lambda: b.responses.create(model="echo-agent", input="x", previous_response_id=response.id),
        lambda: b.responses.input_tokens.count(model="echo-agent", input="x", previous_response_id=response.id),
        lambda: b.conversations.retrieve(conversation.id),
        lambda: b.conversations.update(conversation.id, metadata={"x": "y"}),
        lambda: b.conversations.items.list(conversation.id),
        lambda: b.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "user", "content": "i"}]
        ),
        lambda: b.conversations.delete(conversation.id),
        lambda: b.responses.create(model="echo-agent", input="x", conversation=conversation.id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            attempt()
    texts = [i.content[0].text for i in a.conversations.items.list(conversation.id).data]
    assert texts == ["team a's talk"]  # nothing injected
    assert a.responses.retrieve(response.id).id == response.id


def test_another_projects_files_do_not_exist(secure):
    import io

    a, b = sdk(secure, "a_member"), sdk(secure, "b_admin")
    uploaded = a.files.create(file=("plan.txt", io.BytesIO(b"team a's plan")), purpose="assistants")
    for attempt in (
        lambda: b.files.retrieve(uploaded.id),
        lambda: b.files.content(uploaded.id),
        lambda: b.files.delete(uploaded.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert uploaded.id not in {f.id for f in b.files.list().data}
    assert a.files.content(uploaded.id).read() == b"team a's plan"
    store = a.vector_stores.create(name="team a", file_ids=[uploaded.id])
    mine = b.files.create(file=("b.txt", io.BytesIO(b"team b's words")), purpose="assistants")
    for attempt in (
        lambda: b.vector_stores.retrieve(store.id),
        lambda: b.vector_stores.search(store.id, query="plan"),
        lambda: b.vector_stores.files.list(store.id),
        lambda: b.vector_stores.files.create(store.id, file_id=mine.id),
        lambda: b.vector_stores.delete(store.id),
        lambda: b.vector_stores.create(name="theft", file_ids=[uploaded.id]),  # a's file in b's store
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert store.id not in {s.id for s in b.vector_stores.list().data}
    batch_calls = (
        lambda: b.vector_stores.file_batches.create(store.id, file_ids=[mine.id]),
        lambda: b.vector_stores.files.content(uploaded.id, vector_store_id=store.id),
    )
    for attempt in batch_calls:
        with pytest.raises(openai.NotFoundError):
            attempt()


def test_rewrite_query_without_a_configured_model_is_a_clear_400(secure):
    a = sdk(secure, "a_admin")
    store = a.vector_stores.create(name="no rewriting here")
    with pytest.raises(openai.BadRequestError) as refused:
        a.vector_stores.search(store.id, query="anything", rewrite_query=True)
    assert refused.value.body["param"] == "rewrite_query"
    assert "OSSABUS_REWRITE_MODEL" in refused.value.message


def test_file_search_never_reads_another_projects_store(secure, fake_llm):
    """A run of team b that names team a's vector store (on a Responses tool, or in a thread's
    tool_resources) searches nothing: a's words never reach the model."""
    import io
    import time

    a, b = sdk(secure, "a_admin"), sdk(secure, "b_admin")
    secret = a.files.create(file=("secret.txt", io.BytesIO(b"zanzibar merger closes friday")), purpose="assistants")
    store = a.vector_stores.create(name="team a only", file_ids=[secret.id])
    deadline = time.monotonic() + 60
    while a.vector_stores.retrieve(store.id).status == "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ask = '[[call:file_search {"query": "zanzibar merger"}]]'
    answer = a.responses.create(
        model="gpt-4o-mini", input=ask, tools=[{"type": "file_search", "vector_store_ids": [store.id]}]
    )
    assert "zanzibar merger closes friday" in answer.output_text  # the owner finds it
    stolen = b.responses.create(
        model="gpt-4o-mini", input=ask, tools=[{"type": "file_search", "vector_store_ids": [store.id]}]
    )
    assert "closes friday" not in stolen.output_text
    assert "No passages matched" in stolen.output_text
    with pytest.raises(openai.NotFoundError):  # naming a's store on b's thread is refused outright
        b.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    # assistants are shared by every project: one of a's, with a's store, run in b's thread finds nothing
    assistant = a.beta.assistants.create(
        model="gpt-4o-mini",
        name="team-a-helper",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = b.beta.threads.create(messages=[{"role": "user", "content": ask}])
    run = b.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    assert "closes friday" not in b.beta.threads.messages.list(thread.id).data[0].content[0].text.value
    seen_by_model = [r for r in fake_llm.requests() if "zanzibar" in str(r.get("messages"))]
    assert sum("closes friday" in str(r["messages"]) for r in seen_by_model) == 1  # only the owner's run


def test_web_chats_with_the_same_id_are_separate_per_project(secure):
    body = {
        "id": "shared-chat-id",
        "agent": "echo-agent",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "alpha only"}]}],
    }
    with http(secure, "a_member") as a, http(secure, "b_member") as b:
        assert a.post("/api/chat", json=body).status_code == 200
        mine = a.get("/api/chat/shared-chat-id/messages").json()["messages"]
        theirs = b.get("/api/chat/shared-chat-id/messages").json()["messages"]
        assert [p["text"] for p in mine[0]["parts"]] == ["alpha only"]
        assert theirs == []
        assert b.get("/api/chat/shared-chat-id/stream").status_code == 204


def test_members_use_agents_but_only_admins_write_them_and_read_metrics(secure):
    manifest = "apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: members-agent}\nspec:\n  llm: {model: gpt-4o}\n"
    yaml_type = {"content-type": "application/yaml"}
    with http(secure, "a_member") as member, http(secure, "a_admin") as admin:
        for response in (
            member.post("/v1/ossa/manifests", content=manifest, headers=yaml_type),
            member.put("/v1/ossa/manifests/echo-agent", content=manifest, headers=yaml_type),
            member.delete("/v1/ossa/manifests/echo-agent"),
            member.post("/v1/assistants", json={"model": "gpt-4o", "name": "sneaky"}),
            member.delete("/v1/assistants/asst_echoXagent"),
            member.get("/metrics"),
        ):
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "permission_denied"
        assert member.get("/v1/ossa/manifests/echo-agent").status_code == 200  # reading is fine
        assert member.post("/v1/ossa/validate", content=manifest, headers=yaml_type).status_code == 200
        assert admin.get("/metrics").status_code == 200
        assert admin.post("/v1/ossa/manifests", content=manifest, headers=yaml_type).status_code == 201
        assert admin.delete("/v1/ossa/manifests/members-agent").status_code == 200


def test_usage_is_per_project_and_per_key(secure):
    a, b = sdk(secure, "a_member"), sdk(secure, "b_member")
    a.chat.completions.create(model="echo-agent", messages=[{"role": "user", "content": "one two three"}])
    b.chat.completions.create(model="echo-agent", messages=[{"role": "user", "content": "four"}])

    def rows(who: str, **params) -> list[dict]:
        with http(secure, who) as client:
            return client.get("/v1/ossa/usage", params=params).json()["data"]

    def check() -> None:
        mine, theirs = rows("a_admin", agent="echo-agent"), rows("b_admin", agent="echo-agent")
        assert mine
        assert theirs
        assert {r["project"] for r in mine} == {"team-a"}
        assert {r["project"] for r in theirs} == {"team-b"}
        keys = {r["principal"] for r in mine if r["principal"]}
        assert len(keys) >= 1
        assert all(k.startswith("key_") for k in keys)
        assert KEYS["a_member"] not in json.dumps(mine)

    eventually(check)
    # naming another project's key fingerprint finds nothing: the query stays inside the caller's project
    b_keys = {r["principal"] for r in rows("b_admin", agent="echo-agent") if r["principal"]}
    for fingerprint in b_keys:
        assert rows("a_admin", key=fingerprint) == []


def test_keys_are_checked_and_never_logged(secure):
    with httpx.Client(base_url=secure.base_url, timeout=10) as client:
        for headers in ({}, {"authorization": "Bearer"}, {"authorization": "Bearer sk-wrong"}, {"authorization": "x"}):
            response = client.get("/v1/models", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
    logs = secure.logs()
    for key in KEYS.values():
        assert key not in logs


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OSSABUS_API_KEYS": ","}, "empty key"),
        ({"OSSABUS_API_KEYS": " , "}, "empty key"),
        ({"OSSABUS_API_KEYS": "good-key,"}, "empty key"),
        ({"OSSABUS_AUTH_FILE": "/nonexistent/auth.yaml"}, "cannot read the auth file"),
    ],
)
def test_blank_or_unreadable_keys_refuse_to_start(env, message, tmp_path):
    result = subprocess.run(
        ossabus_command("up", "--nats-port", "-1", "--data-dir", str(tmp_path), "--host", "0.0.0.0"),
        env=process_env({"OSSABUS_API_KEYS": None, "OSSABUS_AUTH_FILE": None, **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys: []\n", "at least one entry"),
        ("keys:\n  - {key: k, project: Bad Name}\n", "project must be"),
        ("keys:\n  - {key: k, role: root}\n", "role must be"),
        ("keys:\n  - {key: k, key_sha256: ab}\n", "exactly one of"),
        ("keys:\n  - {key_sha256: nothex}\n", "64 hex digits"),
        ("keys:\n  - {key: same}\n  - {key: same}\n", "listed twice"),
    ],
)
def test_a_broken_auth_file_is_refused_with_a_reason(text, message, tmp_path):
    from ossabus.relay.auth import AuthConfigError, load_auth_file

    path = tmp_path / "auth.yaml"
    path.write_text(text)
    with pytest.raises(AuthConfigError, match=message):
        load_auth_file(path)


# --- 3. egress -----------------------------------------------------------------------------------------


def test_a_manifest_cannot_pick_its_own_network_reach(secure, fake_llm):
    """allow_private_network in a manifest grants nothing; the tests' operator allows `localhost` only."""
    port = fake_llm.base_url.rsplit(":", 1)[1]
    manifest = f"""\
apiVersion: ossa/v0.3.4
kind: Agent
metadata: {{name: reachy}}
spec:
  llm: {{provider: openai, model: fake-model}}
  tools:
    - {{type: http, name: inside, endpoint: "http://127.0.0.1:{port}/tools/echo", allow_private_network: true}}
    - {{type: http, name: cgnat, endpoint: "http://100.64.0.1:{port}/x", allow_private_network: true}}
    - {{type: http, name: sixtofour, endpoint: "http://[2002:7f00:1::]:{port}/tools/echo"}}
    - {{type: http, name: mapped, endpoint: "http://[::ffff:127.0.0.1]:{port}/tools/echo"}}
    - {{type: http, name: sitelocal, endpoint: "http://[fec0::1]:{port}/x"}}
"""
    with http(secure, "a_admin") as client:
        response = client.post("/v1/ossa/manifests", content=manifest, headers={"content-type": "application/yaml"})
        assert response.status_code == 201, response.text
    fake_llm.reset()
    client = sdk(secure, "a_admin")
    calls = " ".join(f"[[call:{n} {{}}]]" for n in ("inside", "cgnat", "sixtofour", "mapped", "sitelocal"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": calls}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_reachy", poll_interval_ms=100
    )
    assert run.status == "completed"
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    outputs = [json.loads(c.function.output) for c in steps[0].step_details.tool_calls]
    assert [o["error"]["code"] for o in outputs] == ["egress_refused"] * 5
    assert not [r for r in fake_llm.requests() if r["_meta"]["path"].startswith("/tools")]


def test_a_manifest_base_url_is_checked_and_never_gets_the_servers_provider_key(secure, fake_llm):
    port = fake_llm.base_url.rsplit(":", 1)[1]
    manifests = {
        "to-loopback": f"http://127.0.0.1:{port}/v1",  # not in the egress policy: refused
        "to-localhost": f"http://localhost:{port}/v1",  # allowed, but gets no key of the server's
    }
    with http(secure, "a_admin") as client:
        for name, url in manifests.items():
            text = (
                f"apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {{name: {name}}}\n"
                f"spec:\n  llm: {{provider: openai, model: fake-model, base_url: '{url}'}}\n"
            )
            response = client.post("/v1/ossa/manifests", content=text, headers={"content-type": "application/yaml"})
            assert response.status_code == 201
    fake_llm.reset()
    client = sdk(secure, "a_admin")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="to-loopback", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert "egress policy" in info.value.body["message"]
    assert fake_llm.requests() == []
    reply = client.chat.completions.create(model="to-localhost", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Echo: hi"
    assert fake_llm.last_request()["_meta"]["authorization"] != "Bearer sk-test-key-0123456789"


async def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(monkeypatch):
    """DNS rebinding: the first answer passes the policy, a second would not. The connection must go
    to the first, and the name must not be resolved again."""
    from ossabus.runtime import egress

    hits: dict[str, int] = {"127.0.0.2": 0, "127.0.0.1": 0}

    async def serve(host: str):
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            hits[host] += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        return await asyncio.start_server(handle, host, 0)

    allowed = await serve("127.0.0.2")
    port = allowed.sockets[0].getsockname()[1]
    forbidden = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"])
    lookups: list[str] = []

    async def rebinding_getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        return [(2, 1, 6, "", (next(answers), port))]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", rebinding_getaddrinfo)
    policy = egress.EgressPolicy.parse("127.0.0.2/32")
    async with httpx.AsyncClient(transport=egress.pinned_transport(httpx, policy)) as client:
        response = await client.get(f"http://rebind.test:{port}/")
    assert response.text == "ok"
    assert lookups == ["rebind.test"]
    assert hits == {"127.0.0.2": 1, "127.0.0.1": 0}
    allowed.close()
    forbidden.close()


# --- 4.-6. hostile input ----------------------------------------------------------------------------------


def test_deep_nesting_is_a_400_and_the_server_lives(secure):
    deep = "[" * 50_000 + "]" * 50_000
    yaml_type, json_type = {"content-type": "application/yaml"}, {"content-type": "application/json"}
    with http(secure, "a_admin") as client:
        report = client.post("/v1/ossa/validate", content=deep, headers=yaml_type)
        assert report.status_code == 200  # validate answers with a report
        assert [e["code"] for e in report.json()["errors"]] == ["manifest.too_deep"]
        stored = client.post("/v1/ossa/manifests", content=deep, headers=yaml_type)
        assert stored.status_code == 400
        assert stored.json()["error"]["code"] == "invalid_manifest"
        for path in ("/v1/ossa/validate", "/v1/ossa/manifests"):
            as_json = client.post(path, content=deep, headers=json_type)
            assert as_json.status_code == 400
            assert as_json.json()["error"]["code"] == "too_deep"
        chat = client.post("/v1/chat/completions", content='{"model": "echo-agent", "messages": ' + deep + "}")
        threads = client.post("/v1/threads", content="{" + '"a":{' * 30_000 + "}" * 30_001)
        for response in (chat, threads):
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "too_deep"
        assert client.get("/readyz").status_code == 200
    assert secure.process.poll() is None


LONE = "\ud800"  # json.dumps writes it as the escape `\ud800`: valid JSON, not valid text


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"model": "echo-agent", "messages": [{"role": "user", "content": LONE}]},
         "messages.0.content"),
        ("/v1/threads", {"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": LONE}]},
         "messages.1.content"),
        ("/v1/threads", {"metadata": {LONE: "x"}}, "metadata.\\ud800"),
        ("/api/chat", {"agent": "echo-agent", "messages": [{"role": "user", "parts": [{"type": "text", "text": LONE}]}]},  # noqa: E501
         "messages.0.parts.0.text"),
    ],
)  # fmt: skip
def test_lone_surrogates_are_a_400_naming_the_field_and_nothing_is_written(secure, nats_url, path, body, param):
    count_before = asyncio.run(_thread_count(nats_url))
    with http(secure, "a_admin") as client:
        response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_text"
        assert error["param"] == param
    assert asyncio.run(_thread_count(nats_url)) == count_before


def test_invalid_utf8_is_a_400(secure):
    with http(secure, "a_admin") as client:
        response = client.post("/v1/threads", content=b'{"metadata": {"a": "\xff\xfe"}}')
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_encoding"


async def _thread_count(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("KV_ossa_threads")
        return info.state.messages
    finally:
        await nc.close()


def test_a_broken_provider_answer_never_shows_internals(secure):
    client = sdk(secure, "a_admin")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="echo-agent", messages=[{"role": "user", "content": "[[garbage]]"}])
    assert info.value.status_code == 502
    text = json.dumps(info.value.body)
    for internal in ("Traceback", 'File "', "site-packages", ".py", "secret_internal"):
        assert internal not in text
    assert (
        info.value.body["message"]
        == "the model provider's answer was not a chat completion (no text and no tool calls)"
    )
    assert "model provider error" in secure.logs()  # the detail is in the server's log instead


# --- 8. the bus: corrupt and deleted storage ------------------------------------------------------------


def test_corrupt_records_are_skipped_and_a_deleted_bucket_comes_back(secure, nats_url):
    async def vandalise() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await (await js.key_value("ossa_manifests")).put("garbage", b"\x00not json{")
            await (await js.key_value("ossa_messages")).put("thread_x.msg_x", b"[1, 2")
            await js.delete_key_value("ossa_usage")
        finally:
            await nc.close()

    asyncio.run(vandalise())
    with http(secure, "a_admin") as client:
        manifests = client.get("/v1/ossa/manifests")
        assert manifests.status_code == 200
        assert "garbage" not in [m["name"] for m in manifests.json()["data"]]
        assert client.get("/v1/assistants").status_code == 200
        first = client.get("/v1/ossa/usage")
        assert first.status_code in (200, 503)
        if first.status_code == 503:
            assert first.json()["error"]["message"] == "storage is unavailable; try again shortly"

        def recovered() -> None:
            assert client.get("/readyz").status_code == 200
            assert client.get("/v1/ossa/usage").status_code == 200

        eventually(recovered, timeout=20)
    assert "skipping a corrupt record" in secure.logs()
