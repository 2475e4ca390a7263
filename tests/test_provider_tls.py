"""The direct client over HTTPS: a provider behind a private CA, connections kept alive.

The fake upstream runs over TLS with a throwaway CA the executor trusts through `SSL_CERT_FILE`,
as an operator points ossabus at a provider inside their network.
"""

import asyncio
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from conftest import Stack, free_port, llm_env, reset_jetstream, start_stack
from tls_certs import make_certificates


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    certificates = make_certificates(tmp_path_factory.mktemp("provider-tls"))
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("fake_llm.py")),
            "--port",
            "0",
            "--tls-cert",
            str(certificates.cert),
            "--tls-key",
            str(certificates.key),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline().strip().split("=")[1])
    yield f"https://127.0.0.1:{port}", certificates.ca
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def tls_stack(nats_url, fake_llm, tls_upstream, tmp_path_factory) -> Iterator[Stack]:
    asyncio.run(reset_jetstream(nats_url))
    base, ca = tls_upstream
    env = {**llm_env(fake_llm), "OPENAI_BASE_URL": f"{base}/v1", "SSL_CERT_FILE": str(ca)}
    log = tmp_path_factory.mktemp("tls-stack") / "ossabus.log"
    running = start_stack(["up", "--nats-url", nats_url], log, free_port(), env=env)
    yield running
    assert running.stop() == 0, running.logs()


def test_calls_to_an_https_provider_behind_a_private_ca_work_and_keep_their_connections(tls_stack, tls_upstream):
    base, ca = tls_upstream
    client = openai.OpenAI(base_url=f"{tls_stack.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    marker = uuid.uuid4().hex

    def ask(i: int) -> str:
        messages = [{"role": "user", "content": f"{marker} {i} [[slow:0.3]]"}]
        stream = i % 2 == 0
        answer = client.chat.completions.create(model="openai/fake-model", messages=messages, stream=stream)
        if stream:
            return "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
        return answer.choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert answers == [f"Echo: {marker} {i}" for i in range(8)]
    trusting = ssl.create_default_context(cafile=str(ca))

    def seen() -> list[dict]:
        return [r for r in httpx.get(f"{base}/_requests", verify=trusting).json() if marker in str(r["messages"])]

    at_once = seen()
    assert len(at_once) == 8
    opened = {r["_meta"]["peer_port"] for r in at_once}
    for i in range(8):  # one after another now: every call finds a connection kept from before
        assert ask(i) == f"Echo: {marker} {i}"
    every = seen()
    assert {r["_meta"]["peer_port"] for r in every} == opened
