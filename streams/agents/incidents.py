"""The incident stage: anomalies in, incidents (with their evidence packs) out to ClickHouse.

A Faust agent reads champion anomalies (``<app>.anomalies.v1``, group ``<app>``) and places
each as a signal (``incidents.engine``); a timer every ``tick_s`` builds the evidence packs
that are due from the store (pattern counts, resource gauges, changes, sample lines) and
writes every changed incident as a new version. A pack is built at the event time it
falls due, once the store holds the logs up to it (``IncidentStage.ready_ms``), so a replay
at full speed reads the windows a live run reads. State: the engine is restored at start
from the store's newest versions, and re-reads them each tick, so an acknowledgement
written by the API (``logwarden incidents ack``) is adopted, and a restart groups into the
same incidents. The store is reached from a worker thread (it is synchronous and shared).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import faust
import orjson
import structlog

from incidents.engine import IncidentEngine, IncidentSettings, signal_from_anomaly
from incidents.model import Incident
from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import incidents as q

log = structlog.get_logger(__name__)
RESTORE_MS = 24 * 3_600_000  # incidents of the last day are restored at start
EDGES_BEFORE_MS, EDGES_AFTER_MS = 600_000, 60_000  # the call graph read around a signal
EDGES_EVERY_MS = 10_000  # event time between two reads of the call graph
STORE_IDLE_S = 10.0  # a logs table with no new part this long holds all it is going to


class StoreTelemetry:
    """``incidents.evidence.Telemetry`` over ClickHouse."""

    def __init__(self, store: Store, db: str) -> None:
        self.store, self.db = store, db

    def pattern_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        return q.pattern_counts(self.store, self.db, since_ms, until_ms)

    def resource_rows(self, since_ms: int, until_ms: int, regex: str
                      ) -> Sequence[Mapping[str, Any]]:
        return q.resource_points(self.store, self.db, since_ms, until_ms, regex)

    def change_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        return q.changes_between(self.store, self.db, since_ms, until_ms)

    def samples(self, service: str, since_ms: int, until_ms: int) -> list[str]:
        return q.sample_lines(self.store, self.db, service, since_ms, until_ms)

    def users_affected(self, services: Sequence[str], since_ms: int, until_ms: int) -> int:
        return q.users_affected(self.store, self.db, services, since_ms, until_ms)


def save(store: Store, db: str, inc: Incident, wall_ms: int) -> Incident:
    """Write a new version (versions grow with wall time, so the newest writer wins)."""
    inc.version = max(inc.version + 1, wall_ms)
    q.save_incident(store, db, inc.model_dump(mode="json"), wall_ms)
    return inc


class IncidentStage:
    """The engine, its store and counters (shown by /metrics and tests)."""

    def __init__(self, store: Store, db: str, settings: IncidentSettings) -> None:
        self.store, self.db = store, db
        self.engine = IncidentEngine(settings)
        self.tel = StoreTelemetry(store, db)
        self.counts = {"signals": 0, "bad_inputs": 0, "opened": 0, "evidence": 0, "errors": 0}
        self.restored = False
        self.edges_at_ms: int | None = None  # the event time the call graph was read around
        self.store_idle_s = STORE_IDLE_S

    def restore(self, wall_ms: int) -> None:
        """Reload recent incidents and the call graph (at start; thread)."""
        docs = q.unresolved_incidents(self.store, self.db, wall_ms - RESTORE_MS)
        n = self.engine.restore(docs)
        self.learn_edges(self.engine.watermark_ms or wall_ms)
        self.restored = True
        log.info("incidents_restored", stage="incidents", incidents=n)

    def refresh(self) -> None:
        """Adopt versions newer than ours (an API action); learn the call graph."""
        wm = self.engine.watermark_ms
        for d in q.unresolved_incidents(self.store, self.db, wm - RESTORE_MS):
            mine = self.engine.state.incidents.get(d["id"])
            if mine is not None and int(d["version"]) > mine.version:
                self.engine.state.incidents[d["id"]] = Incident.model_validate(d)
        if wm:
            self.learn_edges(wm)

    def learn_edges(self, around_ms: int) -> None:
        """The call graph (caller, callee) of the ten minutes before ``around_ms``."""
        self.engine.edges.update(q.call_edges(self.store, self.db, around_ms - EDGES_BEFORE_MS,
                                              around_ms + EDGES_AFTER_MS))
        self.edges_at_ms = around_ms

    def _edges_for(self, ts_ms: int) -> None:
        """Read the call graph around a signal before placing it, unless it was read within
        ``EDGES_EVERY_MS`` of it: two services of one call that go bad in the same window
        must meet an edge that links them, whatever the tick timer has done."""
        if self.edges_at_ms is None or abs(ts_ms - self.edges_at_ms) > EDGES_EVERY_MS:
            self.learn_edges(ts_ms)

    def handle(self, raw: bytes, wall_ms: int) -> Incident | None:
        """One anomaly message: the incident to write, if any (thread)."""
        a = orjson.loads(raw)
        if a.get("variant", "champion") != "champion":
            return None
        sig = signal_from_anomaly(a)
        if sig.id not in self.engine.state.placed:
            self._edges_for(sig.ts)
        inc = self.engine.on_signal(sig, wall_ms)
        self.counts["signals"] += 1
        if inc is None:
            return None
        if len(inc.signal_ids) == 1:
            self.counts["opened"] += 1
            log.info("incident_opened", stage="incidents", incident=inc.id,
                     service=inc.services[0])
        return save(self.store, self.db, inc, wall_ms)

    def ready_ms(self, wall_ms: int) -> int | None:
        """How far in event time the store holds the logs the packs due now read: the newest
        stored row after the earliest one's time. None (all of it) when no pack is due or
        no logs were written for ``store_idle_s`` (a quiet stream, or a replay caught up).
        A replay at full speed runs the anomalies far ahead of the store's inserts: its
        packs wait for their windows to be stored instead of reading them half empty."""
        since = self.engine.first_due(wall_ms)
        if since is None:
            return None
        idle = q.seconds_since_logs_written(self.store, self.db)
        if idle is None or idle >= self.store_idle_s:
            return None
        newest = q.newest_log_ms(self.store, self.db, since)
        return since - 1 if newest is None else newest

    def tick(self, wall_ms: int) -> list[Incident]:
        """Evidence due: build, write (thread)."""
        if not self.restored:
            self.restore(wall_ms)
        self.refresh()
        out = []
        for inc in self.engine.tick(wall_ms, self.tel, self.ready_ms(wall_ms)):
            out.append(save(self.store, self.db, inc, wall_ms))
            self.counts["evidence"] += 1
            log.info("incident_evidence", stage="incidents", incident=inc.id,
                     root_cause=inc.root_cause[:3])
        return out


def register_incidents(app: faust.App, store: Store, db: str, anomalies_topic: str,
                       settings: IncidentSettings) -> IncidentStage:
    """Create the incident agent and its timer on ``app``."""
    stage = IncidentStage(store, db, settings)
    topic = app.topic(anomalies_topic, key_serializer="raw", value_serializer="raw")

    @app.agent(topic, name="incidents")
    async def incidents_agent(stream: faust.StreamT[bytes]) -> None:
        async for raw in stream:
            try:
                if not stage.restored:
                    await asyncio.to_thread(stage.restore, int(time.time() * 1000))
                await asyncio.to_thread(stage.handle, raw, int(time.time() * 1000))
            except (ValueError, KeyError, TypeError) as e:
                stage.counts["bad_inputs"] += 1
                log.warning("incident_input_refused", stage="incidents", error=str(e)[:300])
            except Exception:  # the stage boundary: the store may be down; go on
                stage.counts["errors"] += 1
                log.exception("incident_signal_failed", stage="incidents")

    @app.timer(settings.tick_s)  # type: ignore[untyped-decorator]
    async def incidents_tick() -> None:
        try:
            await asyncio.to_thread(stage.tick, int(time.time() * 1000))
        except Exception:  # retried next tick
            stage.counts["errors"] += 1
            log.exception("incident_tick_failed", stage="incidents")

    return stage
