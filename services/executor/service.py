"""The executor service: takes runs from the work queue and chat completions from their subjects.

Ack policy, on purpose: MANUAL. A run message is acknowledged only when the run is terminal or
parked in `requires_action`; while it works the executor sends `in_progress` so the server does
not redeliver a long run; when it fails unexpectedly the message is nak'ed with a delay and
redelivered (to any executor), up to `MAX_DELIVER` times, after which the run is marked `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import orjson
from faststream.nats.annotations import NatsMessage
from nats.aio.msg import Msg
from pydantic import ValidationError

from ossabus.contracts import subjects
from ossabus.contracts.bus import (
    BusError,
    ChatRequest,
    EmbeddingRequest,
    Embeddings,
    ManifestChanged,
    Reply,
    RunAnswer,
    RunRequest,
    TaskMessage,
    TaskResult,
    TokenCount,
    TokenCountRequest,
)
from ossabus.contracts.openai_objects import Run
from ossabus.contracts.tools import ToolAnnouncement
from ossabus.executor import llm, local_embeddings, openai_wire
from ossabus.executor.answers import answer_run
from ossabus.executor.chat import ChatCompletions, bus_error
from ossabus.executor.chat_tools import model_form
from ossabus.executor.credentials_check import warn_missing_credentials
from ossabus.executor.embeddings import embed
from ossabus.executor.llm import LLMError
from ossabus.executor.runner import Runner
from ossabus.executor.tasks import TaskRejected, Tasks, derived_id, task_ids
from ossabus.runtime.admission import admit, keep_in_progress, work_queue
from ossabus.runtime.agents import AgentDirectory
from ossabus.runtime.bus import BusClient, BusFailure, endpoint, validation_failure
from ossabus.runtime.carriers import Carriers, Stop, cancel_all
from ossabus.runtime.direct_subscription import DirectHandler
from ossabus.runtime.resilient_fetch import keep_fetching
from ossabus.runtime.service import Service
from ossabus.runtime.tool_directory import ToolDirectory
from ossabus.store.leases import LeaseLost, Leases, fenced, keep_lease
from ossabus.store.state import State

log = logging.getLogger(__name__)
NAME = "executor"
MAX_DELIVER = 5
Settle = Callable[[], Awaitable[object]]
DEFAULT_MAX_RUNS = 64


class ExecutorService(Service):
    name = NAME

    def __init__(self, settings):
        super().__init__(settings)
        self.max_runs = settings.max_runs or DEFAULT_MAX_RUNS
        self.runner: Runner | None = None
        self.chat: ChatCompletions | None = None
        self.tasks: Tasks | None = None
        self.leases: Leases | None = None
        self.agents: AgentDirectory | None = None
        self.carriers = Carriers()
        self.chat_streams = Carriers()  # chat completion id -> the task streaming it
        self.tools = ToolDirectory()
        self.slots = asyncio.Semaphore(self.max_runs)
        self.inflight: set[asyncio.Task] = set()
        self.credentials_check: asyncio.Task | None = None
        self.work_queue = None

    def register(self) -> None:
        sub = self.broker.subscriber
        self.work_queue = work_queue(
            self.broker,
            subjects.TASKS_ALL,
            subjects.TASKS_STREAM,
            subjects.EXECUTOR_CONSUMER,
            self.settings.ack_wait_s,
            MAX_DELIVER,
            max_ack_pending=self.settings.max_ack_pending,
        )
        self.work_queue(self.on_task)
        sub(subjects.ASK_ALL, queue=subjects.ASK_QUEUE, max_workers=self.max_runs)(self.on_ask)
        sub(subjects.RUN_CANCEL_ALL)(self.on_cancel)
        sub(subjects.CHAT_CANCEL_ALL)(self.on_chat_cancel)
        sub(subjects.RUN_ANSWER, queue=subjects.ASK_QUEUE)(endpoint(RunAnswer, NAME)(self.on_answer))
        sub(subjects.TOKEN_COUNT, queue=subjects.CHAT_QUEUE)(endpoint(TokenCountRequest, NAME)(self.on_token_count))
        sub(subjects.EMBEDDINGS, queue=subjects.CHAT_QUEUE, max_workers=self.max_runs)(
            endpoint(EmbeddingRequest, NAME)(self.on_embeddings)
        )
        sub(subjects.REGISTRY_CHANGES_ALL)(self.on_registry_change)
        sub(subjects.TOOL_ANNOUNCEMENTS_ALL)(self.on_tool_announcement)

    def direct_handlers(self) -> list[DirectHandler]:
        return [DirectHandler(subjects.CHAT_ALL, subjects.CHAT_QUEUE, self.on_chat, self.max_runs)]

    async def started(self) -> None:
        keep_fetching(self.work_queue, "the work queue")
        nc = self.broker.connection
        self.agents = AgentDirectory(BusClient(self.broker, self.settings.request_timeout_s))
        self.runner = Runner(nc, await State.open(nc.jetstream()), self.agents, self.tools)
        self.chat = ChatCompletions(nc, self.agents, self.tools, self.runner.mcp_listings)
        self.tasks = Tasks(nc, self.runner.state, self.agents)
        await nc.publish(subjects.TOOL_ROLL_CALL, b"")  # workers answer with their tools
        self.leases = Leases(self.runner.state.runs_kv, self.settings.ack_wait_s)
        self.credentials_check = asyncio.create_task(warn_missing_credentials(self.agents.bus))
        self.model_preload = asyncio.create_task(local_embeddings.preload_if_chosen())

    # --- runs ------------------------------------------------------------------------------------------

    async def on_task(self, msg: NatsMessage) -> None:
        """Admit one work-queue message: wait for a free run slot (runtime/admission.py), then carry
        it in its own task. Messages are fetched one at a time and only when a slot is free."""
        await admit(self.slots, msg.raw_message, self.settings.ack_wait_s, lambda: self._handle(msg), self.inflight)

    async def _handle(self, msg: NatsMessage) -> None:
        """A run the relay queued, or a task message from another system."""
        keepalive = asyncio.create_task(keep_in_progress(msg.raw_message, self.settings.ack_wait_s / 3))
        try:
            if self.runner is None or self.tasks is None:
                await msg.raw_message.nak(delay=1)
                return
            try:
                request = RunRequest.model_validate_json(msg.body)
            except ValidationError:
                await self._task_message(msg)
                return
            await self._carry(msg, request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not handle work-queue message %s", msg.raw_message.subject)
            with contextlib.suppress(Exception):
                await msg.raw_message.nak(delay=self.settings.redelivery_base_s)
        finally:
            keepalive.cancel()

    async def stopping(self) -> None:
        """Runs still in flight are abandoned unacknowledged: the work queue gives them to another executor."""
        if self.credentials_check is not None:
            self.credentials_check.cancel()
        await cancel_all(list(self.inflight))
        await openai_wire.POOL.close()

    async def _carry(self, msg: NatsMessage, request: RunRequest, before_ack: Settle | None = None) -> bool:
        """Carry a run for this delivery; ack when it is terminal or parked, nak (to be redelivered)
        when something unexpected failed or another executor holds its lease. True when acked.

        `before_ack` runs first (a task's result is announced): should it fail, the message is not
        acknowledged, so a redelivery announces it, instead of an acknowledged task that nobody hears of."""
        assert self.runner is not None
        assert self.leases is not None
        raw = msg.raw_message
        ended = await self.runner.state.get_run(request.thread_id, request.run_id)
        if ended is not None and ended.terminal:
            # Announcing an ending needs no lease (its message id makes it once): a delivery that only
            # finds the run ended must not queue behind a lease and burn the message's last deliveries.
            await self.runner.announce_ending(ended)
            await self._settle(msg, before_ack)
            return True
        fence = await self.leases.acquire(request.run_id)
        if fence is None:
            # Alive elsewhere (or in this process, from an earlier delivery), or a dead executor's lease
            # not yet lapsed: look again just after it ends (not a whole ack wait later, which doubled
            # the time a killed executor's runs waited).
            await raw.nak(delay=self.leases.expires_in() + 0.5)
            return False
        task = asyncio.current_task()
        assert task is not None
        self.carriers.carry(request.run_id, task)
        renewal = asyncio.create_task(
            keep_lease(fence, self.settings.ack_wait_s / 3, lambda: self.carriers.stop(request.run_id, Stop.LEASE_LOST))
        )
        try:
            with fenced(fence):
                await self.runner.carry(request)
            await self._settle(msg, before_ack)
            return True
        except LeaseLost:
            # Another carrier has the run: it acknowledges the message when it is done. Acking this
            # delivery would ack theirs too, and a crash of theirs would then lose the run.
            log.warning("run %s: another carrier took it over; stopped here without writing", request.run_id)
            return False
        except asyncio.CancelledError:
            why = self.carriers.took(request.run_id)
            if why is Stop.LEASE_LOST:
                return False  # the lease holder carries it; this delivery is redelivered and finds it done
            if why is None:
                raise  # shutting down: not acked, so another executor takes the run over
            await self.runner.cancelled(request)
            await self._settle(msg, before_ack)
            return True
        except Exception:
            attempts = raw.metadata.num_delivered
            log.exception("run %s failed on delivery %d/%d", request.run_id, attempts, MAX_DELIVER)
            if attempts >= MAX_DELIVER:
                await self.runner.fail(request, "the run failed repeatedly inside ossabus; see the executor log")
                await self._settle(msg, before_ack)
                return True
            await raw.nak(delay=min(self.settings.redelivery_base_s * 2 ** (attempts - 1), 30))
            return False
        finally:
            renewal.cancel()
            with contextlib.suppress(Exception):
                await fence.release()
            self.carriers.done(request.run_id)

    @staticmethod
    async def _settle(msg: NatsMessage, before_ack: Settle | None) -> None:
        if before_ack is not None:
            await before_ack()
        await msg.ack()

    async def _task_message(self, msg: NatsMessage) -> None:
        """A task from another system: start its run (once), carry it, announce the result."""
        assert self.tasks is not None
        raw = msg.raw_message
        agent = raw.subject.split(".", 2)[2]
        seed = (raw.headers or {}).get("Nats-Msg-Id") or f"{subjects.TASKS_STREAM}:{raw.metadata.sequence.stream}"
        thread_id, run_id = derived_id("thread", seed), derived_id("run", seed)
        try:
            task = TaskMessage.model_validate_json(msg.body)
            thread_id, run_id = task_ids(task, seed)
            published_ms = int(raw.metadata.timestamp.timestamp() * 1000)  # the same for every delivery
            started = await self.tasks.start(agent, task, thread_id, run_id, published_ms)
        except ValidationError as exc:
            error = validation_failure(exc).error
            await self.tasks.reject(
                thread_id, run_id, TaskRejected(error.code, error.message, error.param), raw.subject
            )
            await msg.reject()
            return
        except TaskRejected as error:
            await self.tasks.reject(thread_id, run_id, error, raw.subject)
            await msg.reject()
            return
        if started is None:  # the conversation is busy with another run: this task waits its turn
            await raw.nak(delay=1)
            return
        run, record = started
        request = RunRequest(
            run_id=run.id, thread_id=run.thread_id, agent=record.name, agent_version=record.version, principal="nats"
        )
        await self._carry(msg, request, before_ack=lambda: self._announce(record, run))

    async def _announce(self, record, run) -> TaskResult | None:
        assert self.tasks is not None
        assert self.runner is not None
        final = await self.runner.state.get_run(run.thread_id, run.id)
        if final is None:
            return None
        return await self.tasks.result(record, final)

    async def on_ask(self, msg: NatsMessage) -> dict:
        """`ossa.ask.<agent>`: run a task now and reply with its result (no durability: the caller waits)."""
        if self.tasks is None or self.runner is None:
            return Reply.failure(BusError(code="unavailable", message="the executor is starting")).model_dump()
        agent = msg.raw_message.subject.split(".", 2)[2]
        try:
            task = TaskMessage.model_validate_json(msg.body)
            thread_id, run_id = task_ids(task, None)
            started = await self.tasks.start(agent, task, thread_id, run_id)
        except ValidationError as exc:
            return Reply.failure(validation_failure(exc).error).model_dump(mode="json")
        except TaskRejected as rejected:
            error = BusError(code=rejected.code, message=rejected.message, param=rejected.param)  # type: ignore[arg-type]
            return Reply.failure(error).model_dump(mode="json")
        if started is None:
            error = BusError(
                code="conflict", message=f"thread {thread_id} already has an active run", param="thread_id"
            )
            return Reply.failure(error).model_dump(mode="json")
        run, record = started
        await self.runner.carry(
            RunRequest(run_id=run.id, thread_id=run.thread_id, agent=record.name, agent_version=record.version)
        )
        result = await self._announce(record, run)
        return Reply.success(result).model_dump(mode="json")

    async def on_answer(self, answer: RunAnswer) -> Run:
        """Tool outputs or approvals for a parked run, from a system that started it over the bus."""
        assert self.runner is not None
        assert self.agents is not None
        return await answer_run(self.broker.connection, self.runner.state, self.agents, answer)

    async def on_cancel(self, msg: NatsMessage) -> None:
        run_id, _ = subjects.control_target(msg.raw_message.subject)
        self.carriers.stop(run_id, Stop.CANCEL)

    async def _stream_chat(self, request: ChatRequest, inbox: str) -> None:
        """The stream, stopped (the model call closed, nothing more published) when the relay says
        its client left: a model would otherwise go on generating, and billing, for nobody."""
        assert self.chat is not None
        self.chat_streams.carry(request.id, asyncio.current_task())
        try:
            await self.chat.stream(request, inbox)
        except asyncio.CancelledError:
            if self.chat_streams.took(request.id) is None:
                raise  # this process is stopping
            log.info("chat completion %s: its client left; the model call was stopped", request.id)
        finally:
            self.chat_streams.done(request.id)

    async def on_chat_cancel(self, msg: NatsMessage) -> None:
        chat_id, _ = subjects.control_target(msg.raw_message.subject)
        self.chat_streams.stop(chat_id, Stop.CANCEL)

    async def on_tool_announcement(self, msg: NatsMessage) -> None:
        with contextlib.suppress(ValidationError):
            self.tools.saw(ToolAnnouncement.model_validate_json(msg.body))

    async def on_registry_change(self, msg: NatsMessage) -> None:
        if self.agents is not None:
            with contextlib.suppress(ValidationError):
                self.agents.forget(ManifestChanged.model_validate_json(msg.body))

    # --- chat completions --------------------------------------------------------------------------------

    async def on_embeddings(self, request: EmbeddingRequest) -> Embeddings:
        return await embed(self.broker.connection, request)

    async def on_token_count(self, request: TokenCountRequest) -> TokenCount:
        """Input tokens as the model would be sent them: the agent's prompt and tools included."""
        messages, tools, model = list(request.messages), list(request.tools or []), request.model
        if request.agent and self.agents is not None:
            definition = await self.agents.definition(name=request.agent)
            if definition.system_prompt:
                messages.insert(0, {"role": "system", "content": definition.system_prompt})
            tools += [model_form(t) for t in definition.tools if t.kind not in ("code_interpreter", "file_search")]
            model = llm.resolve_model(definition, None)
        counted = llm.count_tokens(model, messages)
        if tools:
            counted += llm.count_tokens(model, [{"role": "system", "content": json.dumps(tools)}])
        return TokenCount(input_tokens=counted)

    async def on_chat(self, msg: Msg) -> bytes | None:
        """A chat completion of an agent or a provider model: the completion as the reply, or its
        chunks on `stream_subject` when it streams."""
        # served on a plain subscription and serialized here (orjson): this runs per request
        try:
            request = ChatRequest.from_relay(msg.data)
        except (ValueError, TypeError) as exc:
            return Reply.failure(BusError(code="invalid_request", message=str(exc))).model_dump_json().encode()
        assert self.chat is not None
        if request.stream_subject:
            await self._stream_chat(request, request.stream_subject)
            return None
        try:
            return orjson.dumps({"ok": True, "result": await self.chat.complete(request)})
        except LLMError as error:
            return Reply.failure(bus_error(error)).model_dump_json().encode()
        except BusFailure as exc:
            return Reply.failure(exc.error).model_dump_json().encode()
