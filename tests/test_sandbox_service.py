"""The sandbox service on a real NATS: sessions per thread on whichever worker started them, files in
and out through the Files store, a new kernel (and a note) when the worker holding one is gone,
idle expiry, a worker's cap on sessions, and projects kept apart."""

import asyncio
import json

import pytest
from test_sandbox_kernel import needs_a_jail

from ossabus.contracts import subjects
from ossabus.contracts.openai_objects import FunctionCall, ToolCall
from ossabus.contracts.sandbox import ExecuteResult, SessionPlace
from ossabus.executor import code_interpreter
from ossabus.runtime.bus import BusClient
from ossabus.runtime.service import make_broker
from ossabus.runtime.settings import Settings
from ossabus.sandbox.service import SandboxService
from ossabus.store import kv as kvs
from ossabus.store.files import FileObject, Files


def python_call(code: str) -> ToolCall:
    return ToolCall(id="call_1", function=FunctionCall(name="python", arguments=json.dumps({"code": code})))


class Bench:
    """Sandbox workers and an executor's side of the conversation (a bus client), on one NATS."""

    def __init__(self, url: str):
        self.url = url
        self.workers: list[SandboxService] = []

    async def __aenter__(self):
        self.broker = make_broker(Settings(nats_url=self.url), "test-executor")
        await self.broker.start()
        self.bus = BusClient(self.broker)
        js = self.broker.connection.jetstream()
        self.places = await js.key_value(subjects.SANDBOX_SESSIONS_BUCKET)
        self.files = await Files.open(js)
        return self

    async def __aexit__(self, *_):
        for worker in self.workers:
            await worker.stop()
        await self.broker.stop()

    async def add_worker(self) -> SandboxService:
        worker = SandboxService(Settings(nats_url=self.url, load_bundled_manifests=False))
        await worker.start()
        self.workers.append(worker)
        return worker

    async def run(self, code: str, session: str = "thread_a", project: str = "p1", file_ids=()) -> ExecuteResult | str:
        return await code_interpreter.execute(
            self.bus,
            self.places,
            python_call(code),
            session=session,
            project=project,
            file_ids=list(file_ids),
            limits=None,
        )


@pytest.fixture
def jail_or_fail():
    needs_a_jail()


async def test_a_thread_keeps_its_kernel_on_its_worker_and_written_files_become_files(clean_bus, jail_or_fail):
    async with Bench(clean_bus) as bench:
        await bench.add_worker()
        await bench.add_worker()
        first = await bench.run("x = 41\nprint('set')")
        assert isinstance(first, ExecuteResult), first
        assert first.logs == "set\n"
        assert not first.recreated
        place, _ = await kvs.read(bench.places, "thread_a", SessionPlace)
        assert place.worker == first.worker
        assert place.project == "p1"
        for _ in range(4):  # every later call reaches the same kernel, whichever worker the group picks
            again = await bench.run("x += 1\nprint(x)")
            assert again.worker == first.worker
        assert again.logs == "45\n"

        written = await bench.run(
            "import pandas as pd, matplotlib.pyplot as plt\n"
            "pd.DataFrame({'n': [1, 2, 3]}).to_csv('numbers.csv', index=False)\n"
            "plt.plot([1, 2, 3]); plt.show()\n"
            "open('.hidden', 'w').write('kernel own')\n"
        )
        assert written.error is None, written
        csv = next(f for f in written.files if f.filename == "numbers.csv")
        assert csv.path == "/mnt/data/numbers.csv"
        assert not csv.image
        image = next(f for f in written.files if f.image)
        assert [f.filename for f in written.files if f.filename.startswith(".")] == []
        stored = await bench.files.get(csv.file_id)
        assert (stored.purpose, stored.project) == ("assistants_output", "p1")
        assert (await bench.files.content(csv.file_id)).decode().split() == ["n", "1", "2", "3"]
        assert (await bench.files.content(image.file_id)).startswith(b"\x89PNG\r\n\x1a\n")
        unchanged = await bench.run("print(open('numbers.csv').read().count(chr(10)))")
        assert unchanged.logs == "4\n"
        assert unchanged.files == []

        model_sees = code_interpreter.model_output(written)
        assert "[file written: /mnt/data/numbers.csv" in model_sees
        assert "image(s) displayed" in model_sees


async def test_files_of_the_project_are_placed_and_another_projects_are_refused(clean_bus, jail_or_fail):
    async with Bench(clean_bus) as bench:
        await bench.add_worker()
        ours = FileObject(
            id="file-ours", bytes=0, created_at=0, filename="sales.csv", purpose="assistants", project="p1"
        )
        theirs = ours.model_copy(update={"id": "file-theirs", "project": "p2"})
        await bench.files.create(ours, b"region,amount\nnorth,10\nsouth,32\n")
        await bench.files.create(theirs, b"secret,1\n")
        read = await bench.run(
            "import pandas as pd\nprint(pd.read_csv('/mnt/data/sales.csv')['amount'].sum())", file_ids=["file-ours"]
        )
        assert read.logs == "42\n", read
        # another project's file is not placed; the code still runs, and the model is told
        without = await bench.run(
            "import os\nprint(sorted(f for f in os.listdir('.') if f[0] != '.'))", file_ids=["file-ours", "file-theirs"]
        )
        assert without.logs == "['sales.csv']\n"
        assert without.notes == ["file file-theirs is not available (no such file in this project)"]
        assert "[note: file file-theirs is not available" in code_interpreter.model_output(without)
        # a session is its project's: a call naming it from another project never reaches its kernel
        other = await bench.run("print(open('/mnt/data/sales.csv').read())", project="p2")
        assert isinstance(other, str)
        assert "no such session in this project" in other


async def test_a_session_whose_worker_is_gone_starts_again_elsewhere_and_the_model_is_told(clean_bus, jail_or_fail):
    async with Bench(clean_bus) as bench:
        holder = await bench.add_worker()
        await bench.add_worker()
        first = await bench.run("x = 1")
        if first.worker != holder.worker:  # the group picked the other one: make it the holder
            holder = next(w for w in bench.workers if w.worker == first.worker)
        await holder.stop()
        bench.workers.remove(holder)
        again = await bench.run("print('x' in dir())")
        assert again.worker != first.worker
        assert again.recreated is True
        assert again.logs == "False\n"
        assert "variables and files from earlier calls are gone" in code_interpreter.model_output(again)
        place, _ = await kvs.read(bench.places, "thread_a", SessionPlace)
        assert place.worker == again.worker


async def test_idle_sessions_expire_and_a_full_worker_closes_the_longest_idle(clean_bus, jail_or_fail, monkeypatch):
    monkeypatch.setenv("OSSABUS_SANDBOX_IDLE_S", "2")
    monkeypatch.setenv("OSSABUS_SANDBOX_MAX_SESSIONS", "2")
    async with Bench(clean_bus) as bench:
        worker = await bench.add_worker()
        for session in ("t1", "t2", "t3"):
            assert (await bench.run("v = 1", session=session)).error is None
        assert sorted(worker.sessions.held) == ["t2", "t3"]  # t1 was idle longest when t3 needed room
        revived = await bench.run("print('v' in dir())", session="t1")
        assert revived.logs == "False\n"
        assert revived.recreated is True
        for _ in range(50):
            if not worker.sessions.held:
                break
            await asyncio.sleep(0.2)
        assert worker.sessions.held == {}
        expired = await bench.run("print('v' in dir())", session="t2")
        assert expired.logs == "False\n"
        assert expired.recreated is True


async def test_no_worker_is_a_tool_error_not_a_hang(clean_bus):
    async with Bench(clean_bus) as bench:
        answer = await bench.run("print(1)")
        assert isinstance(answer, str)
        assert json.loads(answer)["error"]["code"] == "sandbox_unavailable"


async def test_calls_of_different_sessions_on_one_worker_run_side_by_side(clean_bus, jail_or_fail):
    async with Bench(clean_bus) as bench:
        await bench.add_worker()
        for session in ("s1", "s2", "s3"):  # kernels started first: only the calls are timed
            assert (await bench.run("import time", session=session)).error is None
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(bench.run("time.sleep(2); print('ok')", session=s) for s in ("s1", "s2", "s3"))
        )
        took = asyncio.get_running_loop().time() - started
        assert [r.logs for r in results] == ["ok\n"] * 3
        assert took < 5.5, f"three 2 s calls took {took:.1f} s: they ran one after another"


async def test_a_worker_killed_mid_call_is_noticed_in_seconds_and_the_next_call_starts_again(
    clean_bus, jail_or_fail, tmp_path
):
    """A worker process gone with SIGKILL never replies: the executor notices (pings) and tells the
    model within seconds, not at the call's time bound; its kernel dies with it; the next call runs
    on another worker, with the note that the session is new."""
    import signal
    import subprocess
    import time

    from ossabus.sandbox.jail import FIRST_UID, processes_of

    from conftest import ossabus_command, process_env

    log = tmp_path / "sandbox.log"
    victim = await asyncio.create_subprocess_exec(
        *ossabus_command("serve", "sandbox", "--nats-url", clean_bus),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=process_env({}),
    )
    try:
        deadline = time.monotonic() + 60
        while "sandbox service started" not in log.read_text():
            assert victim.returncode is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        async with Bench(clean_bus) as bench:
            assert (await bench.run("x = 1")).error is None
            place, _ = await kvs.read(bench.places, "thread_a", SessionPlace)
            call = asyncio.ensure_future(bench.run("import time\ntime.sleep(60)"))
            await asyncio.sleep(2)
            uids = [FIRST_UID + n for n in range(64) if processes_of(FIRST_UID + n)]
            victim.send_signal(signal.SIGKILL)
            started = asyncio.get_running_loop().time()
            answer = await asyncio.wait_for(call, 30)
            noticed = asyncio.get_running_loop().time() - started
            assert isinstance(answer, str)
            assert json.loads(answer)["error"]["code"] == "sandbox_worker_died"
            assert noticed < 10, f"the dead worker was noticed after {noticed:.1f} s"
            for _ in range(50):  # the jail dies with its worker (bwrap --die-with-parent)
                if not any(processes_of(uid) for uid in uids):
                    break
                await asyncio.sleep(0.1)
            assert uids
            assert not any(processes_of(uid) for uid in uids)

            await bench.add_worker()
            again = await bench.run("print('x' in dir())")
            assert again.logs == "False\n"
            assert again.recreated is True
            assert again.worker != place.worker
    finally:
        if victim.returncode is None:
            victim.kill()
        await asyncio.wait_for(victim.wait(), 10)


async def test_a_kernel_that_crashes_is_reported_and_the_worker_keeps_serving(clean_bus, jail_or_fail):
    async with Bench(clean_bus) as bench:
        worker = await bench.add_worker()
        assert (await bench.run("x = 1")).error is None
        crashed = await bench.run("import os\nos.kill(os.getpid(), 9)")
        assert crashed.kernel_died is True
        assert "the kernel died" in code_interpreter.model_output(crashed)
        assert "thread_a" not in worker.sessions.held
        after = await bench.run("print('x' in dir())")  # a new kernel, on the same worker
        assert after.logs == "False\n"
        assert after.recreated is True
        assert after.worker == worker.worker
