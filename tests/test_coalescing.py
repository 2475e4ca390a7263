"""Token deltas share bus messages without holding back the first (runtime/coalesce.py), and what is
merged reads as what was sent (the text joined, nothing else merged)."""

import asyncio

from ossabus.executor.chat import merged
from ossabus.runtime.coalesce import Coalescer
from ossabus.runtime.events import REASONING_DELTA, merged_deltas

WINDOW = 0.05


class Sent:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.at: list[float] = []

    async def __call__(self, items: list[str]) -> None:
        self.batches.append(items)
        self.at.append(asyncio.get_running_loop().time())


async def test_the_first_delta_goes_at_once_and_the_burst_behind_it_in_one_message():
    sent = Sent()
    held = Coalescer(sent, window=WINDOW, limit=100)
    start = asyncio.get_running_loop().time()
    await held.add("a")
    assert sent.batches == [["a"]]  # before add returned: no wait for the first token
    for piece in "bcd":
        await held.add(piece)
    assert sent.batches == [["a"]]
    await asyncio.sleep(WINDOW * 3)
    assert sent.batches == [["a"], ["b", "c", "d"]]
    assert sent.at[1] - start < WINDOW * 2.5  # held for about one window, not longer


async def test_a_delta_after_a_quiet_moment_goes_at_once_again():
    sent = Sent()
    held = Coalescer(sent, window=WINDOW, limit=100)
    await held.add("a")
    await asyncio.sleep(WINDOW * 2)
    await held.add("b")
    assert sent.batches == [["a"], ["b"]]


async def test_a_full_batch_goes_without_waiting_for_the_window():
    sent = Sent()
    held = Coalescer(sent, window=10, limit=3)
    for piece in "abcd":
        await held.add(piece)
    assert sent.batches == [["a"], ["b", "c", "d"]]


async def test_flush_sends_what_is_held_in_order_and_discard_forgets_it():
    sent = Sent()
    held = Coalescer(sent, window=10, limit=100)
    for piece in "abc":
        await held.add(piece)
    await held.flush()
    await held.flush()  # nothing held: nothing sent
    assert sent.batches == [["a"], ["b", "c"]]
    await held.add("d")
    held.discard()
    await asyncio.sleep(0.01)
    assert sent.batches == [["a"], ["b", "c"]]


async def test_a_zero_window_sends_every_delta_alone():
    sent = Sent()
    held = Coalescer(sent, window=0, limit=100)
    for piece in "abc":
        await held.add(piece)
    assert sent.batches == [["a"], ["b"], ["c"]]


def text(value: str, annotations=()) -> dict:
    return {
        "id": "msg_1",
        "object": "thread.message.delta",
        "delta": {
            "content": [{"index": 0, "type": "text", "text": {"value": value, "annotations": list(annotations)}}]
        },
    }


def test_run_deltas_of_one_message_merge_and_nothing_else_does():
    other = {**text(" c"), "id": "msg_2"}
    annotated = text(" d", [{"type": "file_citation"}])
    reasoning = [(REASONING_DELTA, {"id": "rs_1", "delta": "hm"}), (REASONING_DELTA, {"id": "rs_1", "delta": "m"})]
    out = merged_deltas(
        [
            ("thread.message.delta", text("a")),
            ("thread.message.delta", text(" b")),
            ("thread.message.delta", other),
            ("thread.message.delta", annotated),
            *reasoning,
        ]
    )
    assert [(e, d["delta"]) for e, d in out] == [
        ("thread.message.delta", text("a b")["delta"]),
        ("thread.message.delta", other["delta"]),
        ("thread.message.delta", annotated["delta"]),
        (REASONING_DELTA, "hmm"),
    ]


def test_chat_deltas_merge_their_text_and_logprobs_and_keep_the_role():
    first = ({"role": "assistant", "content": "Hi"}, {"content": [{"token": "Hi"}], "refusal": None})
    second = ({"content": " there"}, {"content": [{"token": " there"}], "refusal": None})
    delta, finish, logprobs = merged([first, second])
    assert delta == {"role": "assistant", "content": "Hi there"}
    assert finish is None
    assert logprobs == {"content": [{"token": "Hi"}, {"token": " there"}], "refusal": None}
    assert merged([({"content": "x"}, None)]) == ({"content": "x"}, None, None)
