"""A stop sent to a run's carrier is not lost, even when Python drops the first cancel.

On Python 3.11 `asyncio.wait_for` returns its inner result and swallows a cancellation that arrives
in the same loop turn (nats-py awaits every request that way). These tests make exactly that happen:
the carrier is inside `wait_for` on a reply that is already there when the stop comes. The end-to-end
proof (a cancelled run's model call is interrupted) is tests/test_openai_runs.py; this one makes the
rare interleaving happen every time."""

import asyncio
import sys
import time

from ossabus.runtime.carriers import RESEND_S, Carriers, Stop, cancel_all


async def _carrier_that_misses_its_first_cancel(reply: asyncio.Future, seen: list) -> None:
    seen.append(await asyncio.wait_for(reply, 5))  # the reply and the cancel land together
    await asyncio.sleep(30)  # a model call: the cancel must interrupt it


async def test_a_cancel_dropped_by_wait_for_is_sent_again_until_the_carrier_takes_it():
    carriers, seen, outcome = Carriers(), [], []
    reply = asyncio.get_running_loop().create_future()

    async def carry():
        try:
            await _carrier_that_misses_its_first_cancel(reply, seen)
        except asyncio.CancelledError:
            outcome.append(carriers.took("run_1"))
            await asyncio.sleep(RESEND_S * 3)  # writing the ending: no second cancel cuts it short
            outcome.append("ending written")

    task = asyncio.create_task(carry())
    carriers.carry("run_1", task)
    await asyncio.sleep(0)  # the carrier is waiting for its reply
    reply.set_result("the reply")
    started = time.monotonic()
    assert carriers.stop("run_1", Stop.CANCEL)
    await asyncio.wait_for(task, 5)
    assert seen == ["the reply"]  # the first cancel was dropped (the carrier went on past wait_for)
    assert outcome == [Stop.CANCEL, "ending written"]
    assert task.cancelling() == 0  # nothing left pending that would cut a later timeout short
    assert time.monotonic() - started < RESEND_S * 3 + 2
    if sys.version_info < (3, 12):
        assert not task.cancelled()


async def test_a_stop_is_for_the_run_carried_and_its_first_reason_stands():
    carriers = Carriers()
    assert not carriers.stop("nobody", Stop.CANCEL)
    task = asyncio.create_task(asyncio.sleep(30))
    carriers.carry("run_2", task)
    assert carriers.stop("run_2", Stop.LEASE_LOST)
    assert carriers.stop("run_2", Stop.CANCEL)
    assert carriers.stopped("run_2") is Stop.LEASE_LOST
    carriers.done("run_2")
    assert carriers.stopped("run_2") is None
    assert not carriers.stop("run_2", Stop.CANCEL)  # nobody carries it here any more
    await asyncio.gather(task, return_exceptions=True)


async def test_a_shutdown_cancel_dropped_by_wait_for_still_stops_every_task():
    loop = asyncio.get_running_loop()
    replies = [loop.create_future() for _ in range(3)]
    tasks = [asyncio.create_task(_carrier_that_misses_its_first_cancel(r, [])) for r in replies]
    await asyncio.sleep(0)
    for reply in replies:
        reply.set_result("the reply")
    started = time.monotonic()
    await cancel_all(tasks)
    assert all(t.cancelled() for t in tasks)
    assert time.monotonic() - started < 5
