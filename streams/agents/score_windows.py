"""The scoring stage: windows in, anomalies out; model state on a compacted topic.

Windows arrive about once per series per 10 s; at 100k series that is 10k messages/s, too
many for Faust's per-event machinery, so this stage runs on `streams.consumer.BatchConsumer`
(group ``<app_id>-detect``) and hands whole batches to the pure ``WindowScorer``. Model state
works like a Faust table's changelog, kept by hand: every ``snapshot_s`` the changed series
are written to ``logwarden.detector-state.v1`` (compacted, keyed by series like the windows);
a batch's offsets are committed once a snapshot taken after it is acknowledged; on
assignment the topic is read back, so a restarted or rebalanced worker resumes without a
new warm-up. Changes and feedback are read
by every worker (no group): changes feed the ``ChangeLog``, anomaly feedback moves the
threshold of the series it names if this worker owns it, and writes ``detector_quality``.
Every ``budget.every_s`` each worker reads the verdict history back from ClickHouse and
steers the detector-wide thresholds to the false-alert budget (``detectors.alert_budget``):
the same history gives every worker the same thresholds.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import structlog
from confluent_kafka import Message
from mode import Service
from pydantic import ValidationError

from detectors.alert_budget import Verdict, steer
from detectors.feedback import Calibrator, ChangeLog, Quality, figures
from detectors.scoring import STEERED, WindowScorer
from schemas import topics
from schemas.anomalies import AnomalyEvent
from schemas.base import decode
from schemas.changes import Change, Feedback
from schemas.common import to_epoch_ms
from schemas.errors import InvalidEvent
from schemas.windows import WindowStats
from sinks.clickhouse import rows
from sinks.clickhouse.queries.quality import verdict_history
from streams.consumer import Barrier, BatchConsumer, Partition, always
from streams.runtime import Runtime
from streams.state import read_compacted
from streams.topics import STATE_TOPIC_CONFIG, ensure_topics, topic_config

log = structlog.get_logger(__name__)


class DetectStage:
    """The stage without Kafka consumers: score windows, publish, learn from feedback."""

    def __init__(self, runtime: Runtime, state_topic: str | None = None) -> None:
        self.rt = runtime
        d = runtime.settings.detect
        self.scorer = WindowScorer(d, ChangeLog())
        self.calibrator = Calibrator(d.calibrate_raise_q, d.calibrate_lower_q,
                                     d.calibrate_max_q)
        self.quality = Quality()
        self.state_topic = state_topic or runtime.topics.detector_state
        self.recent: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self.counts = {"windows": 0, "anomalies": 0, "bad_windows": 0, "feedback": 0}
        self.partition_of: dict[str, int] = {}  # series -> windows partition it came on

    def on_windows(self, raws: list[bytes], partitions: list[int] | None = None
                   ) -> list[AnomalyEvent]:
        """Decode and score a batch of windows (``partitions``: the windows-topic partition
        each came from); anomalies go to the topic and the table."""
        windows = []
        for k, raw in enumerate(raws):
            try:
                w = WindowStats.from_json(raw)
            except (ValueError, ValidationError):
                self.counts["bad_windows"] += 1
                continue
            windows.append(w)
            if partitions is not None:
                self.partition_of[w.series] = partitions[k]
        self.counts["windows"] += len(windows)
        return self.publish(self.scorer.score_batch(windows))

    def publish(self, found: list[AnomalyEvent]) -> list[AnomalyEvent]:
        """Anomalies to the topic (champion) and the table (all variants)."""
        now_ms = int(time.time() * 1000)
        for a in found:
            self.recent[a.id] = (a.series, a.detector, a.variant)
            if a.variant == "champion":  # the challenger is stored, not published
                self.rt.send(self.rt.topics.anomalies, a.to_json(), key=a.series)
        while len(self.recent) > 200_000:
            self.recent.popitem(last=False)
        if found:
            self.rt.writers["anomalies"].add_many([rows.anomaly_row(a, now_ms) for a in found])
            self.counts["anomalies"] += len(found)
            log.info("anomalies_found", stage="detect", count=len(found),
                     champion=sum(a.variant == "champion" for a in found))
        return found

    def on_side(self, topic: str, raw: bytes) -> None:
        """A message of the changes or feedback topic (bad ones are ingest's to dead-letter)."""
        try:
            if topic == topics.CHANGES:
                c = decode(Change, raw, stage="detect")
                self.scorer.changes.add(to_epoch_ms(c.ts), c.service, c.kind, c.description)
            else:
                f = decode(Feedback, raw, stage="detect")
                if f.target_kind == "anomaly":
                    self.on_feedback(f.target_id, f.verdict)
        except InvalidEvent:
            return

    def on_feedback(self, anomaly: str, verdict: str) -> bool:
        """Apply a verdict to the anomaly's series (if owned here); True when applied."""
        target = self.recent.get(anomaly)
        if target is None:
            return False
        series, detector, variant = target
        st = self.scorer.states.get(series)
        if st is None:
            return False
        adj = st.adj[variant] = self.calibrator.apply(st.adj.get(variant, 0.0), verdict)
        self.scorer.dirty.add(series)
        figures = self.quality.add(detector, variant, series, verdict)
        self.rt.writers["detector_quality"].add_many([rows.quality_row(
            int(time.time() * 1000), detector, variant, series, figures, adj)])
        self.counts["feedback"] += 1
        log.info("anomaly_feedback", stage="detect", series=series, verdict=verdict,
                 threshold_adj=adj, precision=figures["precision"])
        return True

    def calibrate(self, history: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
        """Steer the detector-wide thresholds from the verdict history (oldest first); a
        changed offset is logged and written to ``detector_quality`` (series ``*``)."""
        keys = [(d, variant) for variant, _ in self.scorer.variants for d in STEERED]
        states = steer((Verdict(int(r["ts_ms"]), r["detector"], r["variant"], r["verdict"])
                        for r in history), self.rt.settings.detect.budget, keys)
        before, now_ms = self.scorer.offsets, int(time.time() * 1000)
        self.scorer.offsets = {(variant, d): s.offset for (d, variant), s in states.items()}
        for (d, variant), st in states.items():
            if self.scorer.offsets[(variant, d)] == before.get((variant, d), 0.0):
                continue
            self.rt.writers["detector_quality"].add_many([rows.quality_row(
                now_ms, d, variant, "*", figures(st.judged - st.false, st.false, 0),
                st.offset)])
            log.info("threshold_steered", stage="detect", detector=d, variant=variant,
                     offset=round(st.offset, 3), false_alert_rate=round(st.rate, 4),
                     judged=st.judged, missed=st.missed)
        return self.scorer.offsets

    def save(self) -> int:
        """Write the changed series' state to the state topic; returns how many. The
        anomalies the scorer holds go out first: the snapshot ends their windows' replay."""
        self.publish(self.scorer.release())
        snap = self.scorer.snapshot()
        for series, raw in snap.items():
            self.rt.send(self.state_topic, raw, key=series)
        return len(snap)

    def hand_over(self, kept: set[int]) -> int:
        """Forget every series not seen on a partition in ``kept`` (after ``save``); returns
        how many. Another worker scores them now: kept here, they would be scored as gone
        silent, and if their partitions came back, their stale state would win over the
        state topic's."""
        keep = {s for s, p in self.partition_of.items() if p in kept}
        gone = len(self.scorer.states.keys() - keep)
        self.scorer.forget(keep)
        self.partition_of = {s: p for s, p in self.partition_of.items() if p in kept}
        return gone

    def load(self, latest: dict[str, bytes]) -> int:
        """Restore states read from the state topic (newer in-memory ones are kept)."""
        n = 0
        for series, raw in latest.items():
            if series not in self.scorer.states:
                try:
                    self.scorer.restore(series, raw)
                    n += 1
                except (ValueError, KeyError, IndexError) as exc:
                    log.error("detector_state_unreadable", stage="detect", series=series,
                              error=str(exc))
        return n


class ScoreStage:
    """Windows in batches: scored; model state snapshotted every ``snapshot_s``. A batch is
    durable once a snapshot taken after it is acknowledged by the broker."""

    name = "detect"

    def __init__(self, runtime: Runtime, stage: DetectStage, group: str) -> None:
        self.rt, self.stage, self.group = runtime, stage, group
        self.windows_topic = runtime.topics.windows
        self.mine: set[int] = set()  # windows partitions owned here
        self.next_checkpoint = 1  # the id of the next snapshot to start
        self.checkpointed = 0  # the id of the last snapshot acknowledged
        self.last_save = time.monotonic()

    async def process(self, batch: list[Message]) -> Barrier:
        raws = [(m.partition() or 0, v) for m in batch if (v := m.value())]
        if raws:
            self.stage.on_windows([v for _, v in raws], [p for p, _ in raws])
        target = self.next_checkpoint
        return lambda: self.checkpointed >= target

    async def idle(self) -> None:
        if time.monotonic() - self.last_save >= self.rt.settings.detect.snapshot_s:
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Snapshot changed series and wait for the broker to acknowledge them."""
        self.last_save = time.monotonic()
        ident, self.next_checkpoint = self.next_checkpoint, self.next_checkpoint + 1
        saved = self.stage.save()
        await asyncio.to_thread(self.rt.producer.flush, 30.0)
        self.checkpointed = ident
        if saved:
            log.info("detector_state_saved", stage="detect", series=saved)

    async def assigned(self, partitions: list[Partition],
                       committed: dict[Partition, int]) -> None:
        """Read the state of the assigned partitions back before scoring them. The state
        topic has the windows topic's partitions and keys, so a series' state is on the
        partition number its windows are on."""
        self.mine = {p for t, p in partitions if t == self.windows_topic}
        latest = await asyncio.to_thread(read_compacted, self.rt.settings.kafka,
                                         self.stage.state_topic, f"{self.group}-state",
                                         60.0, self.mine, stage="detect")
        n = self.stage.load(latest)
        log.info("detector_state_loaded", stage="detect", series=n,
                 partitions=sorted(self.mine))

    async def revoked(self, partitions: list[Partition]) -> None:
        """Save, then forget the series of the revoked windows partitions."""
        await self.checkpoint()
        gone = {p for t, p in partitions if t == self.windows_topic}
        self.mine -= gone
        n = self.stage.hand_over(self.mine)
        log.info("detector_state_handed_over", stage="detect", series=n,
                 partitions=sorted(gone))


class SideStage:
    """Changes and feedback, read by every scoring worker from the end (no group)."""

    name = "detect-side"

    def __init__(self, stage: DetectStage) -> None:
        self.stage = stage

    async def process(self, batch: list[Message]) -> Barrier:
        for m in batch:
            if v := m.value():
                self.stage.on_side(m.topic() or "", v)
        return always

    async def assigned(self, partitions: list[Partition],
                       committed: dict[Partition, int]) -> None:
        return None

    async def revoked(self, partitions: list[Partition]) -> None:
        return None

    async def idle(self) -> None:
        return None


class ScoreService(BatchConsumer):
    """Consumes windows (group ``<app_id>-detect``) plus changes and feedback (every worker);
    steers the thresholds to the false-alert budget."""

    def __init__(self, runtime: Runtime, state_topic: str | None = None,
                 **kwargs: Any) -> None:
        s = runtime.settings
        self.rt = runtime
        self.detect = DetectStage(runtime, state_topic)
        group = f"{s.stream.app_id}-detect"
        self.score = ScoreStage(runtime, self.detect, group)
        super().__init__(self.score, [runtime.topics.windows], s.kafka, group=group,
                         batch_size=s.stream.batch_size,
                         stop_timeout_s=s.stream.stop_timeout_s, **kwargs)
        self.side = BatchConsumer(SideStage(self.detect), [topics.CHANGES, topics.FEEDBACK],
                                  s.kafka, group=None, batch_size=s.stream.batch_size,
                                  stop_timeout_s=s.stream.stop_timeout_s, **kwargs)

    async def on_start(self) -> None:
        s = self.rt.settings
        await asyncio.to_thread(ensure_topics, s.kafka.bootstrap_servers(),
                                {self.detect.state_topic: s.kafka.partitions},
                                topic_config(s, STATE_TOPIC_CONFIG), s.kafka.replicas,
                                security=s.kafka.librdkafka())
        await super().on_start()
        await self.add_runtime_dependency(self.side)

    @Service.task
    async def _calibrate(self) -> None:
        budget, db = self.rt.settings.detect.budget, self.rt.settings.clickhouse.database
        while budget.enabled and not self.should_stop:
            try:
                history = await asyncio.to_thread(verdict_history, self.rt.store, db,
                                                  budget.history)
                self.detect.calibrate(history)
            except Exception as exc:  # the store is down: keep the thresholds, try again
                log.warning("threshold_steering_failed", stage="detect", error=str(exc))
            await self.sleep(budget.every_s)
