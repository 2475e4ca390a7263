"""Creating the streams, key-value buckets and object store ossabus needs, idempotently.

Run at every start by every process: creating what exists with the same configuration is a no-op,
and a changed configuration (say, a new retention) is applied as an update, so upgrades need no
migration step. Data survives restarts because everything is file-backed JetStream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from ossabus.contracts import subjects

log = logging.getLogger(__name__)

DAY = 24 * 3600
NO_SUITABLE_PEERS = 10005  # JetStream's "no suitable peers for placement": fewer nodes up than replicas
MANIFEST_HISTORY = 64  # the most JetStream KV keeps per key


@dataclass(frozen=True)
class Topology:
    """Sizes and replication of what we provision; replicas > 1 needs a JetStream cluster."""

    replicas: int = 1
    # Replicas of streams that exist already are left as they are unless asked for (`--replicas`):
    # a process started without the flag (an extra `serve executor`) must not shrink a cluster's
    # R3 streams to R1.
    keep_existing_replicas: bool = False
    events_max_age_s: int = DAY
    events_max_bytes: int = 1024**3
    tasks_max_age_s: int = 7 * DAY
    dedupe_window_s: int = 600


def topology_for(replicas: int | None) -> Topology:
    """The topology of a process started with `--replicas replicas` (None: not given)."""
    return Topology(replicas=replicas or 1, keep_existing_replicas=replicas is None)


def streams(t: Topology) -> list[StreamConfig]:
    def work_queue(name: str, subject: str, description: str) -> StreamConfig:
        """A durable work queue: each message is work that some consumer acknowledges when done."""
        return StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_age=t.tasks_max_age_s,
            duplicate_window=t.dedupe_window_s,
            num_replicas=t.replicas,
            description=description,
        )

    return [
        work_queue(
            subjects.TASKS_STREAM, subjects.TASKS_ALL, "Run requests; executors share one durable pull consumer."
        ),
        work_queue(
            subjects.WORKFLOWS_STREAM,
            subjects.WORKFLOWS_ALL,
            "Workflow runs waiting for (or carried by) a workflow runner.",
        ),
        StreamConfig(
            name=subjects.EXTERNAL_EVENTS_STREAM,
            subjects=[subjects.EXTERNAL_EVENTS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=DAY,
            duplicate_window=t.dedupe_window_s,
            num_replicas=t.replicas,
            description="Events from other systems; workflows with a matching event trigger start a run per event.",
        ),
        StreamConfig(
            name=subjects.INGEST_STREAM,
            subjects=[subjects.INGEST_ALL],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=t.dedupe_window_s,
            num_replicas=t.replicas,
            description="Files waiting to be indexed into vector stores; retrieval workers share one consumer.",
        ),
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[subjects.EVENTS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=t.events_max_age_s,
            max_bytes=t.events_max_bytes,
            discard=DiscardPolicy.OLD,
            duplicate_window=t.dedupe_window_s,  # a run's ending is published once (its message id)
            num_replicas=t.replicas,
            description="Run events, kept for replaying and resuming streams.",
        ),
        StreamConfig(
            name=subjects.REGISTRY_STREAM,
            subjects=[subjects.REGISTRY_CHANGES_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * DAY,
            max_msgs_per_subject=100,
            num_replicas=t.replicas,
            description="Manifest change events.",
        ),
        StreamConfig(
            name=subjects.USAGE_STREAM,
            subjects=[subjects.USAGE_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * DAY,
            duplicate_window=t.dedupe_window_s,
            num_replicas=t.replicas,
            description="Usage of every model call; the telemetry service adds it up in ossa_usage.",
        ),
    ]


def buckets(t: Topology) -> list[KeyValueConfig]:
    def kv(name: str, history: int, description: str) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=name,
            history=history,
            storage=StorageType.FILE,
            replicas=t.replicas,
            description=description,
        )

    return [
        kv(subjects.MANIFESTS_BUCKET, MANIFEST_HISTORY, "OSSA manifests; history holds their versions."),
        kv(subjects.THREADS_BUCKET, 1, "Threads."),
        kv(subjects.RUNS_BUCKET, 1, "Runs and their steps."),
        kv(subjects.MESSAGES_BUCKET, 1, "Thread messages."),
        kv(subjects.WORKFLOW_RUNS_BUCKET, 1, "Workflow runs with their steps' states and outputs; their leases."),
        kv(subjects.USAGE_BUCKET, 1, "Usage and cost counters."),
        kv(subjects.RESPONSES_BUCKET, 1, "Responses API records: each points at the run that carries it."),
        kv(subjects.VECTOR_STORES_BUCKET, 1, "Vector stores and the files in them."),
        kv(subjects.SANDBOX_SESSIONS_BUCKET, 1, "Code-interpreter sessions: the worker holding each kernel."),
        kv(
            subjects.FILE_RECORDS_BUCKET, 1, "Uploaded files' records (project, name, purpose); contents in ossa_files."
        ),
    ]


async def _update_stream(js: JetStreamContext, config: StreamConfig, t: Topology) -> None:
    """Apply what this version sets to an existing stream, leaving the rest as the server has it
    (fields the server filled in, such as a KV stream's `allow_msg_ttl`, cannot always be unset)."""
    existing = (await js.stream_info(config.name)).config
    ours = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if getattr(config, f.name) is not None}
    if t.keep_existing_replicas:
        ours["num_replicas"] = existing.num_replicas
    wanted = dataclasses.replace(existing, **ours)
    if wanted != existing:
        await js.update_stream(wanted)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, t: Topology) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != 10058:  # stream name already in use with a different configuration
            raise
        await _update_stream(js, config, t)


async def provision(js: JetStreamContext, topology: Topology | None = None) -> None:
    """Make sure every stream, bucket and store exists with the configuration of this version."""
    t = topology or Topology()
    for config in streams(t):
        await _ensure_stream(js, config, t)
    for config in buckets(t):
        try:
            await js.create_key_value(config)
        except BadRequestError as exc:
            if exc.err_code != 10058:
                raise
            await _update_stream(js, _kv_stream(config), t)
    try:
        await js.object_store(subjects.FILES_OBJECT_STORE)
    except NotFoundError:
        await js.create_object_store(
            subjects.FILES_OBJECT_STORE,
            ObjectStoreConfig(storage=StorageType.FILE, replicas=t.replicas, description="Uploaded files."),
        )


def _cluster_still_forming(exc: Exception) -> bool:
    """Errors a JetStream cluster gives while its nodes are still joining: deployments start ossabus
    and the NATS nodes together, so these mean "wait", not "misconfigured"."""
    if isinstance(exc, BadRequestError) and exc.err_code == NO_SUITABLE_PEERS:
        return True
    return isinstance(exc, ServiceUnavailableError | nats.errors.TimeoutError | nats.errors.NoRespondersError)


class ClusterNotReady(RuntimeError):
    """The JetStream cluster was still forming when startup's wait ran out."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, nats.errors.TimeoutError | nats.errors.NoRespondersError):
        return "JetStream did not answer (no meta leader yet?)"
    return str(exc)


async def provision_when_cluster_ready(js: JetStreamContext, topology: Topology, wait_s: float) -> None:
    """Provision, retrying while the cluster is still forming, for at most `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    warned = False
    while True:
        try:
            await provision(js, topology)
            return
        except Exception as exc:
            if not _cluster_still_forming(exc):
                raise
            if not warned:
                log.warning("JetStream cluster not ready yet (%s); waiting up to %.0f s", _describe(exc), wait_s)
                warned = True
            if time.monotonic() >= deadline:
                raise ClusterNotReady(f"the cluster was not ready after {wait_s:.0f} s: {_describe(exc)}") from None
            await asyncio.sleep(0.5)


def _kv_stream(config: KeyValueConfig) -> StreamConfig:
    return StreamConfig(
        name=f"KV_{config.bucket}",
        subjects=[f"$KV.{config.bucket}.>"],
        max_msgs_per_subject=config.history,
        num_replicas=config.replicas,
        description=config.description,
        storage=config.storage,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        discard=DiscardPolicy.NEW,
    )


async def missing(js: JetStreamContext) -> list[str]:
    """Names of expected streams that do not exist (empty when provisioned), for readiness."""
    expected = [c.name for c in streams(Topology())]
    expected += [f"KV_{c.bucket}" for c in buckets(Topology())]
    expected.append(f"OBJ_{subjects.FILES_OBJECT_STORE}")
    absent = []
    for name in expected:
        try:
            await js.stream_info(name)
        except NotFoundError:
            absent.append(name)
    return absent
