"""Property-based fuzzing of the relay's own OpenAPI document with schemathesis, over a real socket
against `ossabus up` (real nats-server, the fake upstream): no 5xx, only documented status codes and
content types, every body valid against its documented schema (errors: OpenAI's error object), 405s
with a correct `Allow` header. Bounded in time; schemathesis prints the seed of each run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, llm_env, reset_jetstream, start_stack

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "unsupported_method",
        "allow_header_conformance",
    )
)
BUDGET_S = 100


@pytest.mark.timeout(BUDGET_S + 150)  # fuzzing runs for BUDGET_S by design; the stack's start comes on top
def test_the_api_survives_fuzzing_of_its_openapi_document(nats_url, fake_llm, tmp_path):
    asyncio.run(reset_jetstream(nats_url))
    stack = start_stack(["up", "--nats-url", nats_url], tmp_path / "ossabus.log", free_port(), env=llm_env(fake_llm))
    try:
        st = Path(sys.executable).with_name("st")
        # The coverage phase is left out: its generator fails on its own ("Inconsistent results" in
        # schemathesis' code, before any request) for some request schemas.
        command = [str(st), "run", f"{stack.base_url}/openapi.json", "--checks", CHECKS]
        command += ["--phases", "examples,fuzzing", "--max-time", str(BUDGET_S), "--workers", "2", "--no-color"]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=BUDGET_S + 120,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "passed" in result.stdout
        assert stack.process.poll() is None
    finally:
        assert stack.stop() == 0, stack.logs()
    assert "unhandled error" not in stack.logs()  # no 500 was hidden behind a retry
