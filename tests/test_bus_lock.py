"""The locked bus of `ossabus up`: generated credentials, and what each NATS role may do.

Every attempt here is made against the embedded nats-server of a real `ossabus up`, with the same
Python client (nats-py) other systems use; denials are read from the server's own permission errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys

import httpx
import nats
import pytest
from nats.errors import NoServersError

from ossabus.client import OssabusClient
from ossabus.tools import ToolWorker

from conftest import REPO, free_port, llm_env, ossabus_command, rendered_agents, start_stack
from tls_certs import make_certificates


@pytest.fixture(scope="module")
def locked(fake_llm, tmp_path_factory):
    data = tmp_path_factory.mktemp("locked") / "data"
    stack = start_stack(
        ["up", "--data-dir", str(data), "--nats-port", "-1", "--manifests", str(rendered_agents(fake_llm.base_url))],
        data.parent / "ossabus.log",
        free_port(),
        env={**llm_env(fake_llm), "NATS_URL": None},
    )
    stack.data = data
    yield stack
    assert stack.stop() == 0, stack.logs()


def credential(stack, role: str) -> str:
    result = subprocess.run(
        ossabus_command("credentials", role, "--data-dir", str(stack.data)), capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def without_password(url: str) -> str:
    host = url.rsplit("@", 1)[1]
    return f"nats://{host}"


class Denials:
    """Collects the server's permission errors for one connection (`callback` is its error_cb)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def callback(self, error: Exception) -> None:
        self.seen.append(str(error).lower())

    def about(self, word: str) -> bool:
        return any("permissions violation" in e and word.lower() in e for e in self.seen)


async def connect(url: str) -> tuple[nats.NATS, Denials]:
    denials = Denials()
    nc = await nats.connect(url, error_cb=denials.callback, allow_reconnect=False, max_reconnect_attempts=0)
    return nc, denials


def test_credentials_are_private_files_and_never_logged(locked):
    folder = locked.data / "credentials"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in ("bus.json", "client.url", "worker.url"):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(locked.data / "nats" / "nats-server.conf").st_mode) == 0o600
    passwords = json.loads((folder / "bus.json").read_text())
    assert set(passwords) == {"ossabus", "client", "worker"}
    logs = locked.logs()
    assert all(password not in logs for password in passwords.values())
    assert "ossabus credentials client" in logs  # the user is told how other systems get in


def test_a_connection_without_credentials_is_refused(locked):
    url = without_password(credential(locked, "client"))

    async def attempt() -> None:
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)

    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        asyncio.run(attempt())
    wrong = credential(locked, "client").replace("nats://client:", "nats://client:wrong", 1)
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        asyncio.run(nats.connect(wrong, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3))


def test_a_task_publisher_runs_agents_and_reads_events_but_touches_nothing_else(locked):
    async def scenario() -> None:
        async with await OssabusClient.connect(credential(locked, "client")) as client:
            task = await client.submit("echo-agent", "hello over a locked bus")
            result = await task.result(timeout=60)
            assert result.status == "completed"
            assert result.output_text == "Echo: hello over a locked bus"
            assert (await client.ask("echo-agent", "and again", timeout=60)).output_text == "Echo: and again"

        nc, denials = await connect(credential(locked, "client"))
        try:
            await nc.publish("$KV.ossa_threads.thread_x", b"{}")
            await nc.publish("$JS.API.STREAM.DELETE.KV_ossa_threads", b"")
            await nc.publish("ossa.tools.get_weather", b"{}")
            await nc.subscribe("ossa.tools.>")
            await nc.subscribe("_INBOX_ossabus.>")  # the services' replies, which carry stored state
            await nc.subscribe("$KV.>")
            await nc.flush()
            await asyncio.sleep(0.5)
            for word in ("$KV.ossa_threads", "$JS.API.STREAM.DELETE", "ossa.tools.get_weather"):
                assert denials.about(word), denials.seen
            for word in ("ossa.tools.>", "_INBOX_ossabus.>", "$KV.>"):
                assert denials.about(word), denials.seen
            refused: Exception | None = None
            try:
                kv = await nc.jetstream().key_value("ossa_threads")
                await kv.get("anything")
            except Exception as exc:  # a timeout or an API error: any refusal will do, as long as it is one
                refused = exc
            assert refused is not None
            assert denials.about("$js.api"), denials.seen
        finally:
            await nc.close()

    asyncio.run(scenario())
    assert httpx.get(f"{locked.base_url}/readyz").status_code == 200  # nothing above deleted a bucket


def test_a_tool_worker_serves_tools_and_nothing_else(locked):
    async def scenario() -> None:
        worker = ToolWorker(credential(locked, "worker"), announce_every_s=1)

        @worker.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
        async def get_weather(city: str) -> dict:
            return {"city": city, "sky": "locked but sunny"}

        await worker.start()
        try:
            from openai import AsyncOpenAI

            api = AsyncOpenAI(base_url=f"{locked.base_url}/v1", api_key="unused", max_retries=0)
            thread = await api.beta.threads.create(
                messages=[{"role": "user", "content": '[[call:get_weather {"city": "Oslo"}]]'}]
            )
            run = await api.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id="asst_toolsXagent", poll_interval_ms=100
            )
            assert run.status == "completed"
            steps = await api.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
            output = json.loads(steps.data[0].step_details.tool_calls[0].function.output)
            assert output == {"city": "Oslo", "sky": "locked but sunny"}
        finally:
            await worker.stop()

        nc, denials = await connect(credential(locked, "worker"))
        events = []
        try:
            await nc.publish("ossa.tasks.echo-agent", b'{"input": "from a worker"}')

            async def seen(msg) -> None:
                events.append(msg)

            await nc.subscribe("ossa.events.>", cb=seen)
            await nc.subscribe("ossa.tasks.>")
            await nc.publish("$KV.ossa_manifests.echo-agent", b"{}")
            await nc.flush()
            await asyncio.sleep(0.5)
            for word in ("ossa.tasks.echo-agent", "ossa.events.>", "ossa.tasks.>", "$KV.ossa_manifests"):
                assert denials.about(word), denials.seen
        finally:
            await nc.close()
        assert events == []

    asyncio.run(scenario())


def test_without_a_url_the_client_finds_the_local_credentials(locked, tmp_path):
    """`OssabusClient.connect()` on the machine that runs `ossabus up` uses its client credentials."""
    script = (
        "import asyncio\n"
        "from ossabus.client import OssabusClient\n"
        "async def main():\n"
        "    async with await OssabusClient.connect() as client:\n"
        "        print((await client.ask('echo-agent', 'found it', timeout=60)).output_text)\n"
        "asyncio.run(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["OSSABUS_DATA_DIR"] = str(locked.data)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Echo: found it"


def test_ossabus_runs_against_an_operators_nats_with_tls_and_passwords(fake_llm, tmp_path):
    """infra/nats/single-node.conf as an operator runs it: TLS, the ossabus users, secrets from the
    environment; ossabus connects with `--nats-url tls://user:password@... --nats-ca`."""
    import ssl
    import time

    from ossabus.runtime.bus_auth import PASSWORD_VARIABLES
    from ossabus.runtime.nats_server import find_nats_server

    certificates = make_certificates(tmp_path / "tls")
    passwords = {role: f"pw-{role}-{os.getpid()}" for role in PASSWORD_VARIABLES}
    secrets_env = {**certificates.env(), **{PASSWORD_VARIABLES[r]: p for r, p in passwords.items()}}
    port = free_port()
    server = subprocess.Popen(
        [str(find_nats_server()), "-c", str(REPO / "infra" / "nats" / "single-node.conf"), "-p", str(port)],
        cwd=tmp_path,
        env={**os.environ, **secrets_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, "nats-server exited at start"
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.1)
        url = f"tls://ossabus:{passwords['ossabus']}@127.0.0.1:{port}"
        stack = start_stack(
            [
                "up",
                "--nats-url",
                url,
                "--nats-ca",
                str(certificates.ca),
                "--manifests",
                str(rendered_agents(fake_llm.base_url)),
            ],
            tmp_path / "ossabus.log",
            free_port(),
            env=llm_env(fake_llm),
        )
        try:
            reply = httpx.post(
                f"{stack.base_url}/v1/chat/completions",
                json={"model": "echo-agent", "messages": [{"role": "user", "content": "over tls"}]},
                timeout=30,
            )
            assert reply.json()["choices"][0]["message"]["content"] == "Echo: over tls"
            assert passwords["ossabus"] not in stack.logs()

            async def as_client() -> str:
                context = ssl.create_default_context(cafile=str(certificates.ca))
                client_url = f"tls://client:{passwords['client']}@127.0.0.1:{port}"
                async with await OssabusClient.connect(client_url, tls=context) as client:
                    return (await client.ask("echo-agent", "client over tls", timeout=60)).output_text

            assert asyncio.run(as_client()) == "Echo: client over tls"

            async def plaintext() -> None:
                await nats.connect(
                    f"nats://client:{passwords['client']}@127.0.0.1:{port}",
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    connect_timeout=3,
                )

            with pytest.raises((NoServersError, nats.errors.Error, OSError)):
                asyncio.run(plaintext())  # the server requires TLS
        finally:
            assert stack.stop() == 0, stack.logs()
    finally:
        server.terminate()
        server.wait(10)
