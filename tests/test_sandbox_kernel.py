"""The code-interpreter kernel in its jail: state lives between calls, charts come back as PNG, files
stay in the working directory, and every escape attempt is contained and reported while the session
(or, for what kills a kernel, the next one) goes on: an endless loop, a fork bomb, a memory bomb, a
1 GB write, a connection to a loopback port this test listens on (none may arrive), reading
/etc/shadow, the host's environment or files outside the working directory, 100 MB on stdout, a
kernel that crashes."""

import asyncio
import importlib.util
import os
import socket
import threading

import pytest

from ossabus.sandbox.jail import Limits, NoSandbox, bwrap_path

try:
    from ossabus.sandbox.kernel import Session
except ImportError:  # the sandbox option (jupyter_client, ipykernel) is not installed
    Session = None

from conftest import REPO, missing

SECRET = "sk-test-must-never-be-seen"


def needs_a_jail() -> None:
    if Session is None or importlib.util.find_spec("ipykernel") is None:
        missing("the sandbox option is not installed: pip install -e '.[sandbox]'")
    if bwrap_path() is None:
        missing("bubblewrap is not installed: apt-get install bubblewrap")


@pytest.fixture
async def session(tmp_path, monkeypatch):
    needs_a_jail()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # in the worker's environment, never in the kernel's
    opened = Session(tmp_path / "session", Limits(call_seconds=8, memory_bytes=1 << 30, processes=32))
    await opened.start()
    yield opened
    await opened.close()
    opened.remove()


async def test_state_lives_between_calls_and_files_stay_in_the_working_directory(session):
    assert (await session.run("x = 6 * 7\nprint('ready')")).logs == "ready\n"
    second = await session.run("print(x)\nopen('notes.txt', 'w').write('kept')\nimport os; print(os.getcwd())")
    assert second.logs.splitlines() == ["42", "/mnt/data"]  # OpenAI's place for files; not the host's path
    assert (session.work / "notes.txt").read_text() == "kept"


async def test_a_chart_comes_back_as_a_png(session):
    pytest.importorskip("matplotlib")
    result = await session.run(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('t')\nplt.show()"
    )
    assert result.error is None, result
    assert result.images, result
    assert result.images[0].png.startswith(b"\x89PNG")


async def test_an_exception_is_reported_and_the_session_goes_on(session):
    failed = await session.run("1 / 0")
    assert failed.error == "ZeroDivisionError: division by zero"
    assert (await session.run("print('still here')")).logs == "still here\n"


async def test_an_endless_loop_is_stopped_at_the_call_limit(session):
    result = await session.run("while True:\n    pass")
    assert result.error.startswith("TimeoutError"), result
    assert (await session.run("print('after the loop')")).logs == "after the loop\n"


async def test_nothing_of_the_host_can_be_read(session):
    probe = await session.run(
        "import os\n"
        "print(sorted(k for k in os.environ if 'KEY' in k or 'NATS' in k or 'OSSABUS' in k))\n"
        f"print({SECRET!r} in str(os.environ))\n"
        f"for path in ('/etc/shadow', '/etc/passwd', '/root/.bashrc', {str(REPO / 'pyproject.toml')!r}):\n"
        "    try:\n"
        "        open(path).read(); print(path, 'READ')\n"
        "    except Exception as e:\n"
        "        print(path, type(e).__name__)\n"
        "import glob\n"
        "seen = ''\n"
        "for p in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        seen += open(p, errors='replace').read()\n"
        "    except OSError:\n"
        "        pass\n"
        f"print('leak' if {SECRET!r} in seen or 'OPENAI' in seen else 'clean')\n"
    )
    lines = probe.logs.splitlines()
    assert lines[0] == "[]"
    assert lines[1] == "False"
    assert not [line for line in lines[2:] if line.endswith("READ")], lines
    assert lines[-1] == "clean", lines


async def test_no_connection_leaves_the_jail_not_even_to_loopback(session):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    arrived = []

    def accept():
        for _ in range(30):
            try:
                arrived.append(listener.accept())
            except TimeoutError:
                continue

    watcher = threading.Thread(target=accept)
    watcher.start()
    try:
        result = await session.run(
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')\n"
            "except OSError as e:\n"
            "    print('refused', type(e).__name__)\n"
        )
    finally:
        watcher.join()
        listener.close()
    assert result.logs.startswith("refused"), result
    assert arrived == []


async def test_a_fork_bomb_stops_at_the_process_limit(session):
    result = await session.run(
        "import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            import time; time.sleep(30); os._exit(0)\n        n += 1\n"
        "except OSError as e:\n    print('stopped after', n, type(e).__name__)\n"
    )
    assert "stopped after" in result.logs, result
    assert int(result.logs.split()[2]) < 32
    assert os.getpid()  # this process (and the machine) carried on


async def test_a_memory_bomb_fails_inside_the_kernel(session):
    result = await session.run("block = bytearray(4 << 30)")
    assert result.error is not None
    assert "MemoryError" in result.error or result.kernel_died, result


async def test_a_huge_write_stops_at_the_file_size_limit(tmp_path):
    needs_a_jail()
    small = Session(tmp_path / "s", Limits(call_seconds=20, file_bytes=16 << 20))
    await small.start()
    try:
        result = await small.run(
            "chunk = b'x' * (1 << 20)\n"
            "with open('big.bin', 'wb') as f:\n    for _ in range(1024):\n        f.write(chunk)"
        )
        assert result.error is not None, result
        assert (small.work / "big.bin").stat().st_size <= 16 << 20
    finally:
        await small.close()
        small.remove()


async def test_a_flood_of_output_is_stopped_and_cut(session):
    result = await session.run("import sys\nwhile True:\n    sys.stdout.write('y' * 65536)")
    assert result.truncated
    assert len(result.logs) < 30_000
    assert result.error.startswith("RuntimeError: OutputLimit"), result.error
    assert (await session.run("print('quiet again')")).logs.endswith("quiet again\n")


async def test_a_kernel_that_crashes_ends_its_session_and_says_so(session):
    result = await session.run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert result.kernel_died, result
    await asyncio.sleep(0)
    assert not session.alive


async def test_without_bubblewrap_no_kernel_starts_and_the_reason_names_the_way_out(tmp_path, monkeypatch):
    if Session is None:
        missing("the sandbox option is not installed: pip install -e '.[sandbox]'")
    monkeypatch.setenv("OSSABUS_BWRAP", str(tmp_path / "no-such-bwrap"))
    unjailed = Session(tmp_path / "s", Limits())
    with pytest.raises(NoSandbox, match="OSSABUS_SANDBOX_UNSAFE_NO_ISOLATION"):
        await unjailed.start()
    assert unjailed.process is None  # nothing ran
