"""The start-up credentials check must neither hold a stopping executor nor race the first model call."""

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest

from ossabus.executor.credentials_check import off_the_loop


def test_off_the_loop_returns_the_answer_and_raises_the_failure():
    async def scenario():
        assert await off_the_loop(lambda a, b: a + b, 2, 3) == 5

        def broken():
            raise ValueError("no such provider")

        with pytest.raises(ValueError, match="no such provider"):
            await off_the_loop(broken)

    asyncio.run(scenario())


def test_a_process_stopping_during_the_check_does_not_wait_for_it():
    """The check's work never finishes here (as a litellm import on a starved machine may take long);
    the process must still end as soon as its loop does. On the loop's default executor it would not."""
    script = textwrap.dedent(
        """
        import asyncio, threading
        from ossabus.executor.credentials_check import off_the_loop

        async def main():
            check = asyncio.create_task(off_the_loop(threading.Event().wait))
            await asyncio.sleep(0.2)
            check.cancel()

        asyncio.run(main())
        print("ended")
        """
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ended"
    assert time.monotonic() - started < 30


def test_litellm_imported_from_two_threads_at_once_is_whole_in_both():
    script = textwrap.dedent(
        """
        import threading
        from ossabus.executor.llm import _litellm

        seen = []
        threads = [threading.Thread(target=lambda: seen.append(hasattr(_litellm(), "acompletion"))) for _ in range(3)]
        for thread in threads:
            thread.start()
        print(hasattr(_litellm(), "acompletion"))
        for thread in threads:
            thread.join()
        print(seen)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["True", "[True, True, True]"]
