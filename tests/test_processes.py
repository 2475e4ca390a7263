"""ossabus as whole processes: embedded NATS, restarts, clean stops, split services, refusals."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port, ossabus_command, reset_jetstream, start_stack

YAML = {"content-type": "application/yaml"}
AGENT = "apiVersion: ossa/v0.3.4\nkind: Agent\nmetadata: {name: kept}\nspec: {role: You keep things.}\n"


def nats_pid(data_dir: Path) -> int:
    ports = list((data_dir / "nats" / "ports").glob("*.ports"))
    assert len(ports) == 1
    return int(re.search(r"_(\d+)\.ports$", ports[0].name).group(1))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_up_with_embedded_nats_survives_restart_and_stops_cleanly(tmp_path):
    data = tmp_path / "data"
    args = ["up", "--data-dir", str(data), "--nats-port", "-1"]
    started = time.monotonic()
    stack = start_stack(args, tmp_path / "first.log", free_port())
    startup_s = time.monotonic() - started
    assert startup_s < 15, f"ossabus up took {startup_s:.1f}s"
    listed = httpx.get(f"{stack.base_url}/v1/ossa/manifests", params={"limit": 100}).json()
    assert len(listed["data"]) == 19
    created = httpx.post(f"{stack.base_url}/v1/ossa/manifests", content=AGENT, headers=YAML)
    assert created.status_code == 201
    pid = nats_pid(data)
    assert alive(pid)
    assert stack.stop() == 0
    assert not alive(pid), "the embedded nats-server outlived ossabus"
    assert "SIGTERM received: draining" in stack.logs()

    again = start_stack(args, tmp_path / "second.log", free_port())
    try:
        kept = httpx.get(f"{again.base_url}/v1/ossa/manifests/kept").json()
        assert (kept["version"], kept["source"]) == (1, "api")
        tutor = httpx.get(f"{again.base_url}/v1/ossa/manifests/math-tutor").json()
        assert tutor["version"] == 1  # unchanged files are not new versions
        assert "19 unchanged" in again.logs()
    finally:
        assert again.stop() == 0


LEAVING = """
import atexit, sys, threading, time
from ossabus.runtime.supervisor import leave
atexit.register(lambda: print("finalized", end=""))
if sys.argv[1] == "daemon":  # as the credentials check's import of litellm, still running at the stop
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
print("last words", end="")  # no newline: buffered until something flushes it
raise SystemExit(leave(int(sys.argv[2])))
"""


@pytest.mark.parametrize("threads", ["daemon", "none"])
def test_a_stopped_server_leaves_with_its_code_and_its_output_whatever_threads_still_run(threads):
    """A daemon thread inside native code at interpreter finalization can abort the process
    (SIGABRT); `leave` skips the finalization then, and only then, with the output flushed."""
    done = subprocess.run([sys.executable, "-c", LEAVING, threads, "3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    if threads == "daemon":
        assert done.stdout == "last words"  # flushed, and nothing finalized after it
    else:
        assert done.stdout == "last wordsfinalized"  # the normal way out, atexit handlers included


def test_up_explains_a_taken_nats_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ossabus_command("up", "--data-dir", str(tmp_path), "--nats-port", str(port), "--port", str(free_port())),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already taken" in result.stderr
    assert "--nats-url" in result.stderr


def test_serve_explains_a_taken_http_port(nats_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ossabus_command("serve", "relay", "--nats-url", nats_url, "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_up_refuses_a_public_address_without_api_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OSSABUS_API_KEYS"}
    result = subprocess.run(
        ossabus_command("up", "--host", "0.0.0.0", "--data-dir", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "OSSABUS_API_KEYS" in result.stderr
    assert not (tmp_path / "nats").exists(), "nothing should start before the refusal"


def test_serve_reports_an_unreachable_nats():
    result = subprocess.run(
        ossabus_command("serve", "registry", "--nats-url", f"nats://127.0.0.1:{free_port()}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot connect to NATS" in result.stderr


def test_services_in_separate_processes_with_api_keys(nats_url, tmp_path):
    import asyncio

    asyncio.run(reset_jetstream(nats_url))
    registry = subprocess.Popen(
        ossabus_command("serve", "registry", "--nats-url", nats_url),
        stdout=(tmp_path / "registry.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        relay = start_stack(
            ["serve", "relay", "--nats-url", nats_url],
            tmp_path / "relay.log",
            free_port(),
            env={"OSSABUS_API_KEYS": "key-one, key-two"},
        )
        try:
            url = f"{relay.base_url}/v1/ossa/manifests"
            missing = httpx.get(url)
            assert missing.status_code == 401
            assert missing.json()["error"]["code"] == "missing_api_key"
            wrong = httpx.get(url, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert wrong.json()["error"]["type"] == "authentication_error"
            ok = httpx.get(url, headers={"authorization": "Bearer key-two"}, params={"limit": 100})
            assert ok.status_code == 200
            assert len(ok.json()["data"]) == 19
            assert httpx.get(f"{relay.base_url}/healthz").status_code == 200
            for path in ("/v1/models", "/v1/assistants", "/metrics", "/api/chat/any/messages"):
                assert httpx.get(f"{relay.base_url}{path}").status_code == 401
            assert httpx.get(f"{relay.base_url}/").status_code == 200  # the playground page asks for a key itself
            chat = httpx.post(f"{relay.base_url}/v1/chat/completions", json={"model": "math-tutor", "messages": []})
            assert chat.status_code == 401
            models = httpx.get(f"{relay.base_url}/v1/models", headers={"authorization": "Bearer key-one"})
            assert "math-tutor" in [m["id"] for m in models.json()["data"]]
        finally:
            assert relay.stop() == 0
    finally:
        registry.terminate()
        assert registry.wait(30) == 0


@pytest.mark.parametrize("service", ["executor", "dispatcher", "telemetry"])
def test_each_service_runs_alone_and_stops_on_sigterm(nats_url, service, tmp_path):
    log = tmp_path / f"{service}.log"
    process = subprocess.Popen(
        ossabus_command("serve", service, "--nats-url", nats_url), stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while f"{service} service started" not in log.read_text() and time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    process.terminate()
    assert process.wait(30) == 0, log.read_text()
    assert f"{service} service stopped" in log.read_text()


def test_the_embedded_nats_server_dies_with_a_killed_ossabus(tmp_path):
    """SIGKILL gives no chance to clean up: the child must not outlive us holding the port and the store."""
    data = tmp_path / "data"
    stack = start_stack(
        ["up", "--data-dir", str(data), "--nats-port", "-1", "--no-bundled-manifests"],
        tmp_path / "ossabus.log",
        free_port(),
    )
    pid = nats_pid(data)
    assert alive(pid)
    stack.process.send_signal(signal.SIGKILL)
    stack.process.wait(10)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), "the embedded nats-server outlived a SIGKILLed ossabus"


def test_up_restarts_its_embedded_nats_server_when_it_dies(tmp_path):
    data = tmp_path / "data"
    stack = start_stack(["up", "--data-dir", str(data), "--nats-port", "-1"], tmp_path / "ossabus.log", free_port())
    try:
        created = httpx.post(f"{stack.base_url}/v1/ossa/manifests", content=AGENT, headers=YAML)
        assert created.status_code == 201
        first = nats_pid(data)
        port = int(re.search(r"embedded nats-server with JetStream at nats://[\d.]+:(\d+)", stack.logs()).group(1))
        os.kill(first, signal.SIGKILL)
        # hold the port for a while, as a slow-to-die process would: the restart must wait and try again.
        # The port is free the moment the killed process is gone (milliseconds); the supervisor looks
        # every 0.2 s, so this takes it first.
        blocker = None
        while blocker is None:
            try:
                blocker = socket.create_server(("127.0.0.1", port))
            except OSError:
                time.sleep(0.001)
        try:
            deadline = time.monotonic() + 15
            while "could not restart the embedded nats-server" not in stack.logs():
                assert time.monotonic() < deadline, stack.logs()
                time.sleep(0.1)
            readyz = httpx.get(f"{stack.base_url}/readyz", timeout=10)
            assert readyz.status_code == 503  # the truth while NATS is away
            assert readyz.json()["checks"]["bus"] == {"ok": False}
        finally:
            blocker.close()
        deadline = time.monotonic() + 60
        while True:
            ready = httpx.get(f"{stack.base_url}/readyz", timeout=10).status_code == 200
            if ready:
                break
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
        assert alive(nats_pid(data))
        assert nats_pid(data) != first
        logs = stack.logs()
        assert "the embedded nats-server exited with code -9" in logs
        assert f"the embedded nats-server is back at nats://127.0.0.1:{port}" in logs
        kept = httpx.get(f"{stack.base_url}/v1/ossa/manifests/kept")  # the data dir came back with it
        assert kept.status_code == 200
        assert kept.json()["version"] == 1
        again = httpx.put(
            f"{stack.base_url}/v1/ossa/manifests/kept", content=AGENT.replace("keep", "hold"), headers=YAML
        )
        assert again.status_code in (200, 201), again.text  # services write through the new server
    finally:
        assert stack.stop() == 0, stack.logs()


def test_up_warns_once_per_provider_whose_credentials_are_missing(tmp_path):
    env = {"OPENAI_API_KEY": None, "ANTHROPIC_API_KEY": "sk-ant-present-for-this-test"}
    stack = start_stack(
        ["up", "--data-dir", str(tmp_path / "data"), "--nats-port", "-1"], tmp_path / "o.log", free_port(), env=env
    )
    try:
        deadline = time.monotonic() + 30
        while "where the executor runs" not in stack.logs():
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.1)
        time.sleep(0.5)
        warnings = [line for line in stack.logs().splitlines() if "where the executor runs" in line]
        assert len(warnings) == 1, warnings  # anthropic has its key: only openai is named
        assert re.search(r"\d+ agents use openai: set OPENAI_API_KEY where the executor runs", warnings[0])
        assert "math-tutor" in warnings[0]
        assert "sk-ant-present" not in stack.logs()
    finally:
        assert stack.stop() == 0


def test_a_stack_asked_to_stop_during_a_nats_outage_stops_at_once_and_plainly(tmp_path):
    """A drain needs the server: with NATS away, each service says so in a line and closes; no
    traceback, no process left waiting for a connection that is not coming back."""
    from ossabus.runtime.nats_server import EmbeddedNats

    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    url = server.start()
    stack = start_stack(["up", "--nats-url", url], tmp_path / "o.log", free_port())
    server.stop()
    deadline = time.monotonic() + 15
    while "Connection broken" not in stack.logs():
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.1)
    started = time.monotonic()
    assert stack.stop() == 0, stack.logs()
    assert time.monotonic() - started < 20
    logs = stack.logs()
    assert "Traceback" not in logs, logs
    assert "did not stop cleanly" not in logs, logs
    assert "executor: NATS is unreachable, stopped without draining" in logs


def test_relay_processes_share_one_port_with_reuse_port(nats_url, tmp_path):
    """`serve relay --reuse-port` N times: every process takes connections on the one port, and the
    port goes on answering when one of them stops; a relay without the flag is refused the port."""
    import asyncio

    asyncio.run(reset_jetstream(nats_url))
    registry = subprocess.Popen(
        ossabus_command("serve", "registry", "--nats-url", nats_url),
        stdout=(tmp_path / "registry.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    port = free_port()
    relays = []
    try:
        for n in range(2):
            relays.append(
                start_stack(
                    ["serve", "relay", "--nats-url", nats_url, "--reuse-port"], tmp_path / f"relay-{n}.log", port
                )
            )
        for relay in relays:  # the port answers as soon as the first is up: each says it has started
            deadline = time.monotonic() + 30
            while "relay service started" not in relay.logs():
                assert relay.process.poll() is None, relay.logs()
                assert time.monotonic() < deadline, relay.logs()
                time.sleep(0.1)
        for _ in range(20):  # a new connection each time
            assert (
                httpx.get(f"{relays[0].base_url}/v1/ossa/manifests", headers={"connection": "close"}).status_code == 200
            )
        alone = subprocess.run(
            ossabus_command("serve", "relay", "--nats-url", nats_url, "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert alone.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in alone.stderr
        assert relays[0].stop() == 0
        for _ in range(10):
            assert httpx.get(f"{relays[1].base_url}/healthz", headers={"connection": "close"}).status_code == 200
    finally:
        for relay in relays:
            relay.stop()
        registry.terminate()
        assert registry.wait(30) == 0
