"""The ingest stage: consume the contract topics in batches, validate, window, store.

Faust's per-event stream machinery costs ~100 µs an event here, so this stage is a
``mode.Service`` inside the Faust worker that reads raw bytes with confluent-kafka's
``Consumer.consume`` (librdkafka fetches and unpacks in its own threads, outside the GIL;
same consumer-group semantics: partitions spread over the workers of one group) and hands
whole batches to the pure ``IngestProcessor``. The consumer is used from one thread of its
own only (``consume`` blocks, and a call from the loop during a rebalance callback, which
waits on the loop, would deadlock); the batch is processed on the event loop. Offsets are committed
only once every row of a batch has landed in ClickHouse (insert, then commit): a crash
replays, never loses, and the ReplacingMergeTree tables fold the replayed rows by event id.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from mode import Service

from schemas import topics
from schemas.dead_letters import DeadLetter
from schemas.errors import LogwardenError
from sinks.clickhouse.offsets import landed_offsets
from streams.agents.categorise import CategoriseStage
from streams.ingest import IngestProcessor, Output
from streams.runtime import Runtime

log = structlog.get_logger(__name__)

TABLE_OF = {"logs": "logs", "metrics": "metric_points", "changes": "changes",
            "feedback": "feedback", "dead_letters": "dead_letters"}
DEAD_LETTER_MIN_SAMPLE = 5000
POLL_S = 0.2
T = TypeVar("T")


class TooManyDeadLetters(LogwardenError):
    """Most input is being rejected: a bug or a misconfigured producer, not bad data."""


class IngestService(Service):
    """Consumes logs, metrics, changes and feedback; writes rows, windows, dead letters."""

    def __init__(self, runtime: Runtime, processor: IngestProcessor,
                 categorise: CategoriseStage | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rt = runtime
        self.processor = processor
        self.categorise = categorise
        s = runtime.settings
        self.batch_size = s.stream.batch_size
        self.group = f"{s.stream.app_id}-ingest"
        self.consumer: Consumer | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ingest-consumer")
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # (rows accepted per writer when the batch was queued, next offsets) awaiting commit
        self.pending: deque[tuple[dict[str, int], dict[tuple[str, int], int]]] = deque()
        self.recent: deque[tuple[int, int]] = deque(maxlen=50)  # (records, dead letters)
        self.assigned: frozenset[tuple[str, int]] = frozenset()  # (topic, partition) owned
        self.lag: dict[str, int] = {}  # measured by the consumer thread, once a second
        self._lag_due = 0.0
        # next offset to process, by partition, for the lag (librdkafka's position() is not
        # kept by consume()); a partition handed over keeps its entry: if it comes back, its
        # committed offset is this one
        self._position: dict[tuple[str, int], int] = {}
        self._to_commit: deque[list[TopicPartition]] = deque()  # for the consumer thread
        self.batches = 0
        self.last_batch_s = 0.0

    async def on_start(self) -> None:
        s = self.rt.settings
        self._loop = asyncio.get_running_loop()
        self.consumer = Consumer({
            "bootstrap.servers": s.kafka.bootstrap_servers(), "group.id": self.group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "max.partition.fetch.bytes": 4 << 20, "fetch.max.bytes": 64 << 20,
            # a crashed worker's partitions move on after 10 s, not librdkafka's 45 s
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 3_000,
            "error_cb": _kafka_error,
        })
        self.consumer.subscribe(list(topics.INGEST_TOPICS), on_assign=self._assigned,
                                on_revoke=self._revoked)
        log.info("ingest_started", stage="ingest", group=self.group)

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        self._closing = True  # no poll after close()
        await self._hand_over_all()
        # close() waits for a poll in flight (one thread), then leaves the group: the revoke
        # it triggers finds nothing left to hand over.
        await asyncio.get_running_loop().run_in_executor(self._thread, self.consumer.close)
        self._thread.shutdown(wait=False)
        log.info("ingest_stopped", stage="ingest", **dict(self.processor.counts))

    async def _hand_over_all(self) -> None:
        landed = await self._hand_over(list(self.processor.windows))
        await asyncio.get_running_loop().run_in_executor(
            self._thread, lambda: self._commit_queued(landed, asynchronous=False))

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
                    log.warning("consume_error", stage="ingest", error=str(err))
        return good

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the event loop from the consumer thread and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = frozenset((tp.topic, tp.partition) for tp in partitions)
        log.info("partitions_assigned", stage="ingest",
                 partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in partitions))
        self._skip_landed(partitions)
        if self.categorise is not None:  # template ids before the first line
            self._on_loop(self.categorise.load())

    def _skip_landed(self, partitions: list[TopicPartition]) -> None:
        """Rows that landed past the committed offsets before a crash are not written again
        by the replay (``sinks.clickhouse.offsets``)."""
        assert self.consumer is not None
        try:
            committed = self.consumer.committed(partitions, timeout=10)
            landed = landed_offsets(self.rt.store, self.rt.settings.clickhouse.database,
                                    [(tp.topic, tp.partition, tp.offset) for tp in committed])
        except Exception as exc:  # the replay then writes them again (folded by event id)
            log.warning("landed_offsets_failed", stage="ingest", error=str(exc)[:300])
            return
        skipped = {f"{t}:{p}": len(o) for (t, p), o in landed.items() if o}
        if skipped:
            log.info("replay_skips_landed_rows", stage="ingest", offsets=skipped,
                     committed={f"{tp.topic}:{tp.partition}": tp.offset for tp in committed
                                if tp.topic == topics.LOGS})

        async def hand() -> None:
            self.processor.skip_landed(landed)

        self._on_loop(hand())

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned -= {(tp.topic, tp.partition) for tp in partitions}
        landed = self._on_loop(self.on_revoked(partitions))
        # before the partitions move on: the next owner starts after them
        self._commit_queued(landed, asynchronous=False)

    def _commit_queued(self, more: Iterable[TopicPartition] = (), *,
                       asynchronous: bool) -> None:
        """Commit what the loop queued, and ``more``: the latest offset of each partition."""
        latest: dict[tuple[str, int], TopicPartition] = {}
        while self._to_commit:
            for tp in self._to_commit.popleft():
                latest[tp.topic, tp.partition] = tp
        for tp in more:
            latest[tp.topic, tp.partition] = tp
        if latest:
            self._commit(list(latest.values()), asynchronous=asynchronous)

    def _commit(self, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
        c = self.consumer
        assert c is not None
        try:
            if asynchronous:
                c.commit(offsets=offsets, asynchronous=True)
            else:
                c.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # a rebalance raced it: the rows replay, folded by id
            log.warning("commit_failed", stage="ingest", error=str(exc))

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
                if self.categorise is not None:  # template state restored first
                    await self.categorise.ready.wait()
                await self.handle(batch)
            self._commit_landed()

    @Service.timer(1.0)
    async def _idle(self) -> None:
        self.rt.publish_windows(self.processor.flush_idle())
        if self.categorise is not None:
            self.categorise.tick()

    async def handle(self, batch: list[Message]) -> None:
        """Process one ``consume`` result and queue its rows; commit happens once they land."""
        started = time.perf_counter()
        out = self.processor.process(batch)
        await self._write(out)
        self.pending.append(({name: w.accepted for name, w in self.rt.writers.items()},
                             out.offsets))
        self._position.update(out.offsets)
        self.batches += 1
        self.last_batch_s = time.perf_counter() - started
        self._check_dead_letters(len(batch), len(out.dead_letters))

    async def _write(self, out: Output) -> None:
        w = self.rt.writers
        for attr, table in TABLE_OF.items():
            rows = getattr(out, attr)
            if rows:
                await w[table].add_many_async(rows)
        for row in out.dead_letters:
            self.rt.send(self.rt.topics.dead_letters, dead_letter_message(row), key=row[1])
        self.rt.publish_windows(out.windows)
        for f in out.feedback_events:
            log.info("feedback_received", stage="ingest", target=f.target_id, verdict=f.verdict)
        if self.categorise is not None:
            self.categorise.after_batch(out.feedback_events)

    def _check_dead_letters(self, n: int, bad: int) -> None:
        self.recent.append((n, bad))
        total = sum(r[0] for r in self.recent)
        rejected = sum(r[1] for r in self.recent)
        limit = self.rt.settings.stream.max_dead_letter_ratio
        if total >= DEAD_LETTER_MIN_SAMPLE and rejected / total > limit:
            raise TooManyDeadLetters(
                f"{rejected} of the last {total} messages were dead-lettered (limit "
                f"{limit:.0%}): stopping; check the producers and the dead_letters table")

    def _landed(self) -> list[TopicPartition]:
        """The offsets past every batch whose rows have all landed (forgotten once read)."""
        offsets: dict[tuple[str, int], int] = {}
        writers = self.rt.writers
        while self.pending:
            targets, batch_offsets = self.pending[0]
            if any(writers[name].landed < n for name, n in targets.items()):
                break
            self.pending.popleft()
            offsets.update(batch_offsets)
        return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]

    def _commit_landed(self) -> None:
        """Have the consumer thread commit the offsets of every batch whose rows landed."""
        offsets = self._landed()
        if offsets:
            self._to_commit.append(offsets)

    async def _flush_landed(self) -> list[TopicPartition]:
        await asyncio.gather(*(w.flush_async() for w in self.rt.writers.values()))
        return self._landed()

    async def on_revoked(self, revoked: list[TopicPartition]) -> list[TopicPartition]:
        """Hand-over of lost partitions; the offsets to commit before they move."""
        return await self._hand_over([(tp.topic, tp.partition) for tp in revoked])

    async def _hand_over(self, partitions: list[tuple[str, int]]) -> list[TopicPartition]:
        """Emit the partitions' windows, snapshot the template state, land every row."""
        self.rt.publish_windows(self.processor.revoke(partitions))
        if self.categorise is not None:  # the next owner resumes from these snapshots
            await self.categorise.hand_over()
        return await self._flush_landed()

    def _measure_lag(self) -> dict[str, int]:
        """Messages behind the end of each partition read so far (high watermark - next)."""
        assert self.consumer is not None
        positions = dict(self._position)
        lag: dict[str, int] = {}
        for tp in self.consumer.assignment():
            pos = positions.get((tp.topic, tp.partition))
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if pos is not None and high >= 0:
                lag[f"{tp.topic}:{tp.partition}"] = max(0, high - pos)
        return lag


def _kafka_error(err: KafkaError) -> None:
    log.warning("kafka_error", stage="ingest", error=str(err))


def dead_letter_message(row: tuple[Any, ...]) -> bytes:
    """The dead-letter topic message for a ``dead_letters`` row (raw bytes in base64)."""
    received_ms, topic, partition, offset, stage, error, raw, size, key = row
    return DeadLetter(received_at=datetime.fromtimestamp(received_ms / 1000, tz=UTC),
                      topic=topic, partition=partition, offset=offset, stage=stage,
                      error=error, raw=raw, raw_size=size, key=key).to_json()
