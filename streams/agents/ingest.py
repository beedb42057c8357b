"""The ingest stage: consume the contract topics in batches, validate, window, store.

Faust's per-event stream machinery costs ~100 µs an event here, so this stage is a
``mode.Service`` inside the Faust worker that reads raw bytes with aiokafka ``getmany``
(same consumer group semantics: partitions spread over the workers of one group) and hands
whole batches to the pure ``IngestProcessor``. Offsets are committed only once every row of
a batch has landed in ClickHouse (insert, then commit): a crash replays, never loses, and
the ReplacingMergeTree tables fold the replayed rows by event id.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from mode import Service

from schemas import topics
from schemas.dead_letters import DeadLetter
from schemas.errors import LogwardenError
from streams.agents.categorise import CategoriseStage
from streams.ingest import IngestProcessor, Output
from streams.runtime import Runtime

log = structlog.get_logger(__name__)

TABLE_OF = {"logs": "logs", "metrics": "metric_points", "changes": "changes",
            "feedback": "feedback", "dead_letters": "dead_letters"}
DEAD_LETTER_MIN_SAMPLE = 5000


class TooManyDeadLetters(LogwardenError):
    """Most input is being rejected: a bug or a misconfigured producer, not bad data."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: IngestService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.service.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions_assigned", stage="ingest",
                 partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
        if self.service.categorise is not None:  # template ids before the first line
            await self.service.categorise.load()


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
        self.consumer: AIOKafkaConsumer | None = None
        # (rows accepted per writer when the batch was queued, next offsets) awaiting commit
        self.pending: deque[tuple[dict[str, int], dict[TopicPartition, int]]] = deque()
        self.recent: deque[tuple[int, int]] = deque(maxlen=50)  # (records, dead letters)
        self.lag: dict[str, int] = {}
        self.batches = 0
        self.last_batch_s = 0.0

    async def on_start(self) -> None:
        s = self.rt.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka.bootstrap_servers(), group_id=self.group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20,
            max_poll_records=self.batch_size,
        )
        self.consumer.subscribe(list(topics.INGEST_TOPICS), listener=_Rebalance(self))
        await self.consumer.start()
        log.info("ingest_started", stage="ingest", group=self.group)

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        self.rt.publish_windows(self.processor.revoke(list(self.processor.windows)))
        if self.categorise is not None:
            await self.categorise.hand_over()
        await self._flush_and_commit()
        await self.consumer.stop()
        log.info("ingest_stopped", stage="ingest", **dict(self.processor.counts))

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=self.batch_size)
            if batch:
                if self.categorise is not None:  # template state restored first
                    await self.categorise.ready.wait()
                await self.handle(batch)
            await self._commit_landed()

    @Service.timer(1.0)
    async def _idle(self) -> None:
        self.rt.publish_windows(self.processor.flush_idle())
        if self.categorise is not None:
            self.categorise.tick()
        await self._update_lag()

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Process one ``getmany`` result and queue its rows; commit happens once they land."""
        started = time.perf_counter()
        records = [m for msgs in batch.values() for m in msgs]
        out = self.processor.process(records)
        await self._write(out)
        self.pending.append((
            {name: w.accepted for name, w in self.rt.writers.items()},
            {tp: msgs[-1].offset + 1 for tp, msgs in batch.items()},
        ))
        self.batches += 1
        self.last_batch_s = time.perf_counter() - started
        self._check_dead_letters(len(records), len(out.dead_letters))

    async def _write(self, out: Output) -> None:
        w = self.rt.writers
        for attr, table in TABLE_OF.items():
            rows = getattr(out, attr)
            if rows:
                await w[table].add_many_async(rows)
        for row in out.dead_letters:
            self.rt.send(topics.DEAD_LETTERS, dead_letter_message(row), key=row[1])
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

    async def _commit_landed(self) -> None:
        """Commit the offsets of every batch whose rows have all landed."""
        offsets: dict[TopicPartition, int] = {}
        writers = self.rt.writers
        while self.pending:
            targets, batch_offsets = self.pending[0]
            if any(writers[name].landed < n for name, n in targets.items()):
                break
            self.pending.popleft()
            offsets.update(batch_offsets)
        if offsets and self.consumer is not None:
            await self.consumer.commit(offsets)

    async def _flush_and_commit(self) -> None:
        await asyncio.gather(*(w.flush_async() for w in self.rt.writers.values()))
        await self._commit_landed()

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Hand-over: emit the windows of lost partitions, land every row, commit."""
        self.rt.publish_windows(self.processor.revoke((tp.topic, tp.partition)
                                                      for tp in revoked))
        if self.categorise is not None:  # the next owner resumes from these snapshots
            await self.categorise.hand_over()
        await self._flush_and_commit()

    async def _update_lag(self) -> None:
        """Messages behind the end of each assigned partition (highwater - position)."""
        if self.consumer is None:
            return
        lag: dict[str, int] = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = await asyncio.wait_for(self.consumer.position(tp), 1.0)
            except (TimeoutError, Exception):  # rebalancing: try again next tick
                continue
            lag[f"{tp.topic}:{tp.partition}"] = max(0, high - pos)
        self.lag = lag


def dead_letter_message(row: tuple[Any, ...]) -> bytes:
    """The dead-letter topic message for a ``dead_letters`` row (raw bytes in base64)."""
    received_ms, topic, partition, offset, stage, error, raw, size, key = row
    return DeadLetter(received_at=datetime.fromtimestamp(received_ms / 1000, tz=UTC),
                      topic=topic, partition=partition, offset=offset, stage=stage,
                      error=error, raw=raw, raw_size=size, key=key).to_json()
