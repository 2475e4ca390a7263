"""A run's carrier lists its steps and its thread's messages from the store once, then keeps them
(store/state.py `carrying`): what it writes shows at once, what a caller changes on a copy does not,
and nobody else's listing is served from it."""

import nats

from ossabus.contracts.ids import new_id
from ossabus.contracts.openai_objects import Message, MessageCreationDetails, RunStep
from ossabus.runtime.provision import provision
from ossabus.store.state import State, carrying


def step(thread_id: str, run_id: str) -> RunStep:
    return RunStep(
        id=new_id("step"),
        created_at=1,
        assistant_id="asst_x",
        thread_id=thread_id,
        run_id=run_id,
        type="message_creation",
        step_details=MessageCreationDetails(message_creation={"message_id": "msg_x"}),
    )


def message(thread_id: str) -> Message:
    return Message(id=new_id("msg"), created_at=1, thread_id=thread_id, role="user")


async def test_a_carried_run_lists_once_and_sees_its_own_writes(clean_bus):
    nc = await nats.connect(clean_bus)
    try:
        js = nc.jetstream()
        await provision(js)
        state = await State.open(js)
        thread_id, run_id = new_id("thread"), new_id("run")
        first, said = step(thread_id, run_id), message(thread_id)
        await state.put_step(first)
        await state.put_message(said)

        with carrying(thread_id, run_id) as carried:
            assert [s.id for s in await state.list_steps(thread_id, run_id)] == [first.id]
            assert [m.id for m in await state.list_messages(thread_id)] == [said.id]
            second, answer = step(thread_id, run_id), message(thread_id)
            await state.put_step(second)
            await state.put_message(answer)
            listed = await state.list_steps(thread_id, run_id)
            assert [s.id for s in listed] == [first.id, second.id]
            listed[0].status = "failed"  # a change to a copy, never written
            assert (await state.list_steps(thread_id, run_id))[0].status == "in_progress"
            await state.delete_step(thread_id, run_id, second.id)
            assert [s.id for s in await state.list_steps(thread_id, run_id)] == [first.id]
            await state.update_message(thread_id, answer.id, lambda m: m.model_copy(update={"metadata": {"k": "v"}}))
            messages = await state.list_messages(thread_id)
            assert [(m.id, m.metadata) for m in messages] == [(said.id, {}), (answer.id, {"k": "v"})]
            assert carried.listed == 2  # one listing of steps, one of messages, from the store
            assert await state.list_steps(thread_id, new_id("run")) == []  # another run: the store's answer

        # what the carrier kept is what the store holds
        stored_steps = await state.list_steps(thread_id, run_id)
        assert [(s.id, s.status) for s in stored_steps] == [(first.id, "in_progress")]
        assert [(m.id, m.metadata) for m in await state.list_messages(thread_id)] == [
            (said.id, {}),
            (answer.id, {"k": "v"}),
        ]
    finally:
        await nc.close()
