"""One way for every stage to consume Kafka: a batch in, processed, written, then committed.

A stage is a small class with four coroutines (`Stage`); `BatchConsumer` does the rest:

- **Batches.** confluent-kafka's ``Consumer.consume`` fetches up to ``batch_size`` raw
  messages (librdkafka fetches and decompresses in its own threads, outside the GIL). The
  next batch is fetched while the stage processes this one. Faust's per-event stream
  machinery would cost about 100 µs an event, so the ingest and scoring stages use this
  instead; Faust stays where its tables pay (alerting state).
- **Insert, then commit.** ``process`` returns a *barrier*: a function that says whether the
  batch's results are durable (rows landed in ClickHouse, state snapshots acknowledged).
  Offsets are committed only for the oldest batches whose barriers hold, in order, so a
  crash replays, never loses; sinks fold replays (insert deduplication tokens, replacing
  tables).
- **Hand-over.** When partitions are revoked (a rebalance or a stop), the stage's
  ``revoked`` makes everything durable (windows out, snapshots flushed), then the landed
  offsets are committed synchronously before the partitions move on. ``assigned`` runs
  before the first message of new partitions is processed (state is read back first).
- **Threads.** The consumer is used from one thread of its own only: ``consume`` blocks,
  and a rebalance callback runs inside it and waits on the event loop for the stage's
  coroutine. Commits are queued by the loop and made by that thread.
- **Progress.** ``progress()`` tells whether the stage is stuck: batches whose results have
  not become durable for ``stall_after_s``, or messages waiting while nothing is processed.
  ``/api/health`` turns not-ok on it.
- **Stopping.** A stop hands over with a deadline (``stop_timeout_s``): when the store is
  down the rows are not committed and replay on the next start; the worker still exits.

Without a group (``group=None``) every worker reads the topics from their end and never
commits (changes and feedback, which every scoring worker needs).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from mode import Service

from streams.settings import KafkaSettings, client_id

log = structlog.get_logger(__name__)

POLL_S = 0.2
T = TypeVar("T")
Barrier = Callable[[], bool]
Partition = tuple[str, int]  # (topic, partition)


def always() -> bool:
    """The barrier of a batch with nothing to wait for."""
    return True


class Stage(Protocol):
    """What a stage implements; `BatchConsumer` drives it."""

    name: str

    async def process(self, batch: list[Message]) -> Barrier:
        """Handle one batch; the returned barrier holds once its results are durable."""

    async def assigned(self, partitions: list[Partition],
                       committed: dict[Partition, int]) -> None:
        """New partitions (and the group's committed offset of each, -1 for none): restore
        their state before their first message."""

    async def revoked(self, partitions: list[Partition]) -> None:
        """Partitions leave (or the worker stops): make every result durable."""

    async def idle(self) -> None:
        """Called about once a second: timers, periodic snapshots."""


def kafka_client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The librdkafka settings every client of ours shares (address, security)."""
    return kafka.client_config()


@dataclass(frozen=True)
class Progress:
    """Whether a consumer is making progress, and why not."""

    ok: bool
    reason: str = ""
    oldest_pending_s: float = 0.0
    idle_with_lag_s: float = 0.0


class BatchConsumer(Service):
    """Consumes ``topics`` in batches for one ``stage`` (see the module docstring)."""

    def __init__(self, stage: Stage, topics: Sequence[str], kafka: KafkaSettings, *,
                 group: str | None, batch_size: int = 2000,
                 stall_after_s: float = 120.0, stop_timeout_s: float = 20.0,
                 config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage, self.topics, self.kafka = stage, list(topics), kafka
        self.group, self.batch_size = group, batch_size
        self.stall_after_s, self.stop_timeout_s = stall_after_s, stop_timeout_s
        self.extra_config = config or {}
        self.consumer: Consumer | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"{stage.name}-consumer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        # (barrier, next offsets, queued at) of processed batches, oldest first
        self.pending: deque[tuple[Barrier, dict[Partition, int], float]] = deque()
        self._to_commit: deque[list[TopicPartition]] = deque()  # for the consumer thread
        self.assigned: frozenset[Partition] = frozenset()
        # next offset to process, by partition, for the lag (librdkafka's position() is not
        # kept by consume()); a partition handed over keeps its entry
        self.position: dict[Partition, int] = {}
        self.lag: dict[str, int] = {}  # measured by the consumer thread, once a second
        self._lag_due = 0.0
        self.batches = self.messages = 0
        self.last_batch_s = 0.0
        self.last_progress = time.monotonic()  # a batch processed or nothing waiting

    # -- start and stop ---------------------------------------------------------------

    async def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        conf: dict[str, Any] = {
            **kafka_client_config(self.kafka),
            "group.id": self.group or f"{self.stage.name}-{uuid.uuid4().hex[:12]}",
            "client.id": client_id(self.group or "logwarden", self.stage.name),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if self.group else "latest",
            "max.partition.fetch.bytes": 4 << 20, "fetch.max.bytes": 64 << 20,
            # a crashed worker's partitions move on after 10 s, not librdkafka's 45 s
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 3_000,
            "error_cb": self._kafka_error,
            **self.extra_config,
        }
        self.consumer = Consumer(conf)
        self.consumer.subscribe(self.topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke)
        log.info("consumer_started", stage=self.stage.name, group=self.group,
                 topics=self.topics)

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        self._closing = True  # no poll after close()
        loop = asyncio.get_running_loop()
        try:
            landed = await asyncio.wait_for(self._hand_over(sorted(self.assigned)),
                                            self.stop_timeout_s)
            await loop.run_in_executor(
                self._thread, lambda: self._commit_queued(landed, asynchronous=False))
        except TimeoutError:  # the store is down: nothing committed, the rows replay
            log.error("stop_hand_over_timed_out", stage=self.stage.name,
                      timeout_s=self.stop_timeout_s, pending_batches=len(self.pending))
        # close() waits for a poll in flight (one thread), then leaves the group: the revoke
        # it triggers finds nothing left to hand over.
        close = loop.run_in_executor(self._thread, self.consumer.close)
        try:
            await asyncio.wait_for(close, self.stop_timeout_s)
        except TimeoutError:
            log.error("consumer_close_timed_out", stage=self.stage.name)
        self._thread.shutdown(wait=False)
        log.info("consumer_stopped", stage=self.stage.name, batches=self.batches,
                 messages=self.messages)

    # -- the consumer thread ----------------------------------------------------------

    def _poll(self) -> list[Message]:
        if self._closing or self.consumer is None:
            return []
        self._commit_queued(asynchronous=True)
        now = time.monotonic()
        if now >= self._lag_due:
            self._lag_due = now + 1.0
            self.lag = self._measure_lag()
        msgs = self.consumer.consume(self.batch_size, POLL_S)
        good = [m for m in msgs if m.error() is None]
        if len(good) < len(msgs):
            for m in msgs:
                err = m.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume_error", stage=self.stage.name, error=str(err))
        return good

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the event loop from the consumer thread and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        new = [(tp.topic, tp.partition) for tp in partitions]
        self.assigned = frozenset(new)
        log.info("partitions_assigned", stage=self.stage.name,
                 partitions=sorted(f"{t}:{p}" for t, p in new))
        committed: dict[Partition, int] = {}
        if self.group is not None and partitions:
            try:
                committed = {(tp.topic, tp.partition): tp.offset
                             for tp in consumer.committed(partitions, timeout=10)}
            except KafkaException as exc:  # the stage then treats them as never committed
                log.warning("committed_offsets_unknown", stage=self.stage.name, error=str(exc))
        self._on_loop(self.stage.assigned(new, committed))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = [(tp.topic, tp.partition) for tp in partitions]
        self.assigned -= set(gone)
        if self._closing:  # on_stop handed everything over already
            return
        landed = self._on_loop(self._hand_over(gone))
        # before the partitions move on: the next owner starts after them
        self._commit_queued(landed, asynchronous=False)

    def _commit_queued(self, more: Iterable[TopicPartition] = (), *,
                       asynchronous: bool) -> None:
        """Commit what the loop queued, and ``more``: the latest offset of each partition."""
        latest: dict[Partition, TopicPartition] = {}
        while self._to_commit:
            for tp in self._to_commit.popleft():
                latest[tp.topic, tp.partition] = tp
        for tp in more:
            latest[tp.topic, tp.partition] = tp
        if not latest or self.group is None or self.consumer is None:
            return
        offsets = list(latest.values())
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # a rebalance raced it: the rows replay, folded
            log.warning("commit_failed", stage=self.stage.name, error=str(exc))

    def _measure_lag(self) -> dict[str, int]:
        """Messages behind the end of each partition read so far (high watermark - next)."""
        assert self.consumer is not None
        positions = dict(self.position)
        lag: dict[str, int] = {}
        for tp in self.consumer.assignment():
            pos = positions.get((tp.topic, tp.partition))
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if pos is not None and high >= 0:
                lag[f"{tp.topic}:{tp.partition}"] = max(0, high - pos)
        return lag

    def _kafka_error(self, err: KafkaError) -> None:
        log.warning("kafka_error", stage=self.stage.name, error=str(err))

    # -- the event loop ---------------------------------------------------------------

    @Service.task
    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        polling = loop.run_in_executor(self._thread, self._poll)
        while not self.should_stop and not self._closing:
            batch = await polling
            # The next batch is fetched while this one is processed. A rebalance callback
            # in that poll waits on the loop for the hand-over, so it runs after this batch.
            polling = loop.run_in_executor(self._thread, self._poll)
            if batch:
                await self.handle(batch)
            self.commit_landed()

    @Service.timer(1.0)
    async def _idle(self) -> None:
        await self.stage.idle()
        self.commit_landed()

    async def handle(self, batch: list[Message]) -> None:
        """Process one batch and queue its offsets behind its barrier."""
        started = time.perf_counter()
        barrier = await self.stage.process(batch)
        offsets: dict[Partition, int] = {}
        for m in batch:
            tp = (m.topic() or "", m.partition() or 0)
            offsets[tp] = max(offsets.get(tp, 0), (m.offset() or 0) + 1)
        self.pending.append((barrier, offsets, time.monotonic()))
        self.position.update(offsets)
        self.batches += 1
        self.messages += len(batch)
        self.last_batch_s = time.perf_counter() - started
        self.last_progress = time.monotonic()

    def landed(self) -> list[TopicPartition]:
        """The offsets past every batch whose barrier holds, oldest first (then forgotten)."""
        offsets: dict[Partition, int] = {}
        while self.pending and self.pending[0][0]():
            offsets.update(self.pending.popleft()[1])
        return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]

    def commit_landed(self) -> None:
        """Have the consumer thread commit the offsets of every batch that is durable."""
        offsets = self.landed()
        if offsets:
            self._to_commit.append(offsets)

    async def _hand_over(self, partitions: list[Partition]) -> list[TopicPartition]:
        """The stage makes its results durable; the offsets that may then be committed."""
        await self.stage.revoked(partitions)
        return self.landed()

    def progress(self, now: float | None = None) -> Progress:
        """Whether this consumer is stuck (see the module docstring)."""
        now = time.monotonic() if now is None else now
        oldest = now - self.pending[0][2] if self.pending else 0.0
        if not any(self.lag.values()):
            self.last_progress = now  # nothing waiting: idle is not stuck
        idle = now - self.last_progress
        if oldest > self.stall_after_s:
            return Progress(False, f"{self.stage.name}: results of a batch not durable for "
                            f"{oldest:.0f} s (is ClickHouse reachable?)", oldest, idle)
        if idle > self.stall_after_s:
            return Progress(False, f"{self.stage.name}: {sum(self.lag.values())} messages "
                            f"waiting, none processed for {idle:.0f} s", oldest, idle)
        return Progress(True, "", oldest, idle)
