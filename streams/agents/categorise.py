"""Categorisation in the worker; template state on ``logwarden.template-state.v1``.

Keys: ``svc/<service>`` holds the latest snapshot of one service's miner and template
metadata (zlib-compressed JSON); ``fix/<template id>`` holds the latest correction learnt
from feedback. Compaction keeps the latest value per key, so the topic is the changelog of
`streams.categorise.Categoriser` and the only thing a worker needs to resume.

On every partition assignment a worker reads the *whole* topic to its high watermarks and
restores every service and correction in it (state is small: kilobytes per service). This
needs no agreement between the partitioners of the SDK (which keys log events by service),
of the state producer, or on partition counts, and corrections reach every worker.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import orjson
import structlog

from schemas.changes import Feedback
from sinks.clickhouse import rows
from streams.categorise import Categoriser
from streams.runtime import Runtime
from streams.state import read_compacted

log = structlog.get_logger(__name__)

SERVICE_PREFIX = "svc/"
CORRECTION_PREFIX = "fix/"


class TemplateState:
    """Saves a categoriser's dirty services to the state topic; loads the topic back."""

    def __init__(self, runtime: Runtime, categoriser: Categoriser,
                 topic: str | None = None) -> None:
        self.rt, self.cat = runtime, categoriser
        self.topic = topic or runtime.topics.template_state
        self.saved = self.loaded = 0

    def save_dirty(self) -> int:
        """Produce a snapshot of every service changed since its last one; returns how many."""
        services = list(self.cat.dirty_services)
        for service in services:
            data = self.cat.snapshot(service)
            if data is not None:
                self.rt.send(self.topic, zlib.compress(data, 1), key=SERVICE_PREFIX + service)
        self.saved += len(services)
        return len(services)

    def save_correction(self, template_id: str, record: bytes) -> None:
        """Persist one correction (``Categoriser.apply_feedback``'s result)."""
        self.rt.send(self.topic, record, key=CORRECTION_PREFIX + template_id)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every produced snapshot is acknowledged (before a hand-over)."""
        self.rt.producer.flush(timeout)

    def read(self, timeout: float = 60.0) -> dict[str, bytes]:
        """The latest value of every key of the state topic (blocking: run it in a thread)."""
        return read_compacted(self.rt.settings.kafka, self.topic,
                              f"{self.rt.settings.stream.app_id}-template-state", timeout,
                              stage="categorise")

    def restore(self, latest: dict[str, bytes]) -> int:
        """Restore every service and correction of a `read`; returns the keys seen."""
        fixes = []
        for key, value in latest.items():
            try:
                if key.startswith(SERVICE_PREFIX):
                    self.cat.restore(key[len(SERVICE_PREFIX):], zlib.decompress(value))
                    self.loaded += 1
                elif key.startswith(CORRECTION_PREFIX):
                    fixes.append(value)
            except (ValueError, KeyError, TypeError, zlib.error) as exc:
                log.error("template_state_unreadable", stage="categorise", key=key,
                          error=str(exc))
        self.cat.restore_corrections(fixes)
        log.info("template_state_loaded", stage="categorise", services=self.loaded,
                 corrections=len(fixes))
        return len(latest)


class CategoriseStage:
    """The worker side of categorisation, driven by ``IngestService``: after each batch
    (feedback, events), on its 1 s timer (rows, snapshots, accuracy) and on hand-over."""

    def __init__(self, runtime: Runtime, categoriser: Categoriser,
                 clock: Any = time.time) -> None:
        self.rt, self.cat, self.clock = runtime, categoriser, clock
        self.state = TemplateState(runtime, categoriser)
        s = runtime.settings.categorise
        now = clock()
        self.next_snapshot = now + s.snapshot_interval_s
        self.next_report = now + s.report_interval_s
        self.next_accuracy = now + s.accuracy_period_s
        self.events = 0
        # Set once the state topic is restored for the current assignment; batches wait for
        # it (a batch fetched ahead may be in hand while a new assignment loads).
        self.ready = asyncio.Event()

    def after_batch(self, feedback: list[Feedback]) -> None:
        """Learn from the batch's feedback; publish the template events it raised."""
        for f in feedback:
            record = self.cat.apply_feedback(f)
            if record is not None:
                self.state.save_correction(f.target_id, record)
                log.info("category_corrected", stage="categorise", template=f.target_id,
                         category=f.category, priority=f.priority)
        self.publish_events()

    def publish_events(self) -> None:
        """Template events to their topic (for detectors and alerting) and table."""
        events = self.cat.drain_events()
        if not events:
            return
        for row in events:
            doc = dict(zip(rows.TEMPLATE_EVENT_COLUMNS, row, strict=True))
            if doc["kind"] == "explosion":
                log.warning("template_explosion", stage="categorise", service=doc["service"],
                            templates=doc["baseline"], new_in_window=doc["value"])
            self.rt.send(self.rt.topics.template_events, orjson.dumps(doc), key=doc["service"])
        self.rt.writers["template_events"].add_many(events)
        self.events += len(events)

    def tick(self, force: bool = False) -> None:
        """Timer work, each at its own interval: rate windows, rows, snapshots, accuracy."""
        s, now = self.rt.settings.categorise, self.clock()
        self.cat.tick(now)
        self.publish_events()
        if force or now >= self.next_report:
            self.next_report = now + s.report_interval_s
            changed = self.cat.template_rows(now)
            if changed:
                self.rt.writers["templates"].add_many(changed)
        if force or now >= self.next_snapshot:
            self.next_snapshot = now + s.snapshot_interval_s
            self.state.save_dirty()
        if now >= self.next_accuracy:
            self.next_accuracy = now + s.accuracy_period_s
            acc = self.cat.accuracy_rows(now)
            if acc:
                self.rt.writers["categorisation_accuracy"].add_many(acc)

    async def hand_over(self) -> None:
        """Before partitions move or the worker stops: every row out, every snapshot acked."""
        self.ready.clear()
        self.tick(force=True)
        await asyncio.to_thread(self.state.flush)

    async def load(self) -> None:
        """On assignment: restore the state topic before the first line is processed."""
        self.ready.clear()
        try:
            self.state.restore(await asyncio.to_thread(self.state.read))
        except Exception:  # the broker hiccuped: go on with what we have, ids may drift
            log.exception("template_state_load_failed", stage="categorise")
        finally:
            self.ready.set()
