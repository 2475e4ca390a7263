"""The direct client speaks HTTP/2 to an https provider: concurrent calls share one connection.

The fake upstream runs over TLS (a throwaway CA the executor trusts through `SSL_CERT_FILE`, as an
operator would point it at a private CA) with HTTP/2 offered by ALPN, as api.openai.com does.
"""

import asyncio
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


def test_concurrent_calls_to_an_https_provider_share_one_http2_connection(tls_stack, tls_upstream):
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

    assert ask(1).startswith("Echo:")  # the connection is open (and known to speak HTTP/2) from here
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert answers == [f"Echo: {marker} {i}" for i in range(8)]
    seen = [r for r in httpx.get(f"{base}/_requests", verify=str(ca)).json() if marker in str(r["messages"])]
    assert len(seen) == 9
    assert {r["_meta"]["http_version"] for r in seen} == {"2"}
    assert len({r["_meta"]["peer_port"] for r in seen}) == 1  # eight calls at once and the first: one connection
