"""The ingest stage: the contract topics in batches, validated, windowed, stored.

Runs on `streams.consumer.BatchConsumer` (batches of raw bytes, insert then commit,
hand-over on rebalance): a batch's offsets are committed only once every row it produced
has landed in ClickHouse, so a crash replays, never loses.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter, deque
from typing import Any

import structlog
from confluent_kafka import Message

from privacy.redact import Redactor
from schemas import topics
from schemas.dead_letters import dead_letter_message
from schemas.errors import LogwardenError
from sinks.clickhouse.offsets import landed_offsets
from sinks.clickhouse.rows import redaction_rows
from streams.agents.categorise import CategoriseStage
from streams.consumer import Barrier, BatchConsumer, Partition
from streams.ingest import IngestProcessor, Output
from streams.runtime import Runtime

log = structlog.get_logger(__name__)

TABLE_OF = {"logs": "logs", "metrics": "metric_points", "changes": "changes",
            "feedback": "feedback", "dead_letters": "dead_letters"}
DEAD_LETTER_MIN_SAMPLE = 5000
REDACTION_FLUSH_S = 10.0  # how often the per-rule redaction counts go to their table


class TooManyDeadLetters(LogwardenError):
    """Most input is being rejected: a bug or a misconfigured producer, not bad data."""


class IngestStage:
    """Validates a batch of contract messages, writes its rows, windows and dead letters."""

    name = "ingest"

    def __init__(self, runtime: Runtime, processor: IngestProcessor,
                 categorise: CategoriseStage | None = None,
                 redactor: Redactor | None = None) -> None:
        self.rt, self.processor, self.categorise = runtime, processor, categorise
        self.recent: deque[tuple[int, int]] = deque(maxlen=50)  # (records, dead letters)
        self.redactor = redactor
        self._redactions_sent: Counter[str] = Counter()  # counts already in the table
        self._redactions_at = time.monotonic()
        self._writer_id = f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"

    async def process(self, batch: list[Message]) -> Barrier:
        """Process one batch; its barrier holds once every row it queued has landed."""
        if self.categorise is not None:  # template state restored first
            await self.categorise.ready.wait()
        out = self.processor.process(batch)
        await self._write(out)
        if self.redactor is not None:
            self._redaction_counts(force=False)
        writers = self.rt.writers
        targets = {name: w.accepted for name, w in writers.items()}
        self._check_dead_letters(len(batch), len(out.dead_letters))
        return lambda: all(writers[name].landed >= n for name, n in targets.items())

    async def assigned(self, partitions: list[Partition],
                       committed: dict[Partition, int]) -> None:
        await self._skip_landed(committed)
        if self.categorise is not None:  # template ids before the first line
            await self.categorise.load()

    async def _skip_landed(self, committed: dict[Partition, int]) -> None:
        """Rows that landed past the committed offsets before a crash are not written again
        by the replay (``sinks.clickhouse.offsets``)."""
        db = self.rt.settings.clickhouse.database
        try:
            landed = await asyncio.to_thread(
                landed_offsets, self.rt.store, db,
                [(t, p, o) for (t, p), o in committed.items()])
        except Exception as exc:  # the replay then writes them again (folded by event id)
            log.warning("landed_offsets_failed", stage="ingest", error=str(exc)[:300])
            return
        skipped = {f"{t}:{p}": len(o) for (t, p), o in landed.items() if o}
        if skipped:
            log.info("replay_skips_landed_rows", stage="ingest", offsets=skipped,
                     committed={f"{t}:{p}": o for (t, p), o in committed.items()
                                if t == topics.LOGS})
        self.processor.skip_landed(landed)

    async def revoked(self, partitions: list[Partition]) -> None:
        """Emit the partitions' windows, snapshot the template state, land every row."""
        self.rt.publish_windows(self.processor.revoke(partitions))
        if self.categorise is not None:  # the next owner resumes from these snapshots
            await self.categorise.hand_over()
        if self.redactor is not None:
            self._redaction_counts(force=True)
        await asyncio.gather(*(w.flush_async() for w in self.rt.writers.values()))

    async def idle(self) -> None:
        self.rt.publish_windows(self.processor.flush_idle())
        if self.categorise is not None:
            self.categorise.tick()

    def _redaction_counts(self, force: bool) -> None:
        """Queue the matches per rule counted since the last rows (every 10 s, at most)."""
        assert self.redactor is not None
        if not force and time.monotonic() - self._redactions_at < REDACTION_FLUSH_S:
            return
        self._redactions_at = time.monotonic()
        delta = self.redactor.counts - self._redactions_sent
        if delta:
            self._redactions_sent.update(delta)
            self.rt.writers["redaction_counts"].add_many(redaction_rows(
                int(time.time() * 1000), self._writer_id, dict(delta)))

    async def _write(self, out: Output) -> None:
        w = self.rt.writers
        for attr, table in TABLE_OF.items():
            rows = getattr(out, attr)
            if rows:
                await w[table].add_many_async(rows)
        for row in out.dead_letters:
            self.rt.send(self.rt.topics.dead_letters, dead_letter_message(row), key=row[1])
        self.rt.publish_windows(out.windows)
        for service, doc in out.auth_events:  # for the security detectors
            self.rt.send(self.rt.topics.auth_events, doc, key=service)
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


class IngestService(BatchConsumer):
    """The ingest stage on its consumer (group ``<app_id>-ingest``, the contract topics)."""

    def __init__(self, runtime: Runtime, processor: IngestProcessor,
                 categorise: CategoriseStage | None = None, redactor: Redactor | None = None,
                 **kwargs: Any) -> None:
        s = runtime.settings
        self.rt, self.processor, self.redactor = runtime, processor, redactor
        super().__init__(IngestStage(runtime, processor, categorise, redactor),
                         topics.INGEST_TOPICS,
                         s.kafka, group=f"{s.stream.app_id}-ingest",
                         batch_size=s.stream.batch_size,
                         stop_timeout_s=s.stream.stop_timeout_s, **kwargs)
