"""The ingest stage as a pure object: Kafka records in, table rows and closed windows out.

No Kafka client here: ``streams/agents/ingest.py`` feeds it batches from the consumer and
writes what it returns. Each input partition has its own window state (the key is the
service, so a service's events stay on one partition and one worker).

Bad input never stops a batch: whatever fails to decode, validate or process (including an
unexpected error of this stage) becomes a dead-letter row with its original bytes, the
error, the stage and its source offset. Event time is bounded by arrival time: a log line
or metric point more than ``max_future_s`` ahead of the clock, or older than its table's
retention, is dead-lettered (it would blind its service's windows, or be dropped by the TTL
at the next merge), and no event moves a watermark past the clock. Series a producer
creates are capped (``streams.cardinality``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from schemas import auth_events, topics
from schemas.base import decode, validate
from schemas.changes import Change, Feedback
from schemas.common import MAX_MESSAGE_BYTES
from schemas.errors import InvalidEvent
from schemas.fastpath import fast_log, normalise_log
from schemas.logs import LogEvent
from schemas.metrics import MetricPoint, series_key
from schemas.windows import WindowStats
from sinks.clickhouse import rows
from sinks.clickhouse.settings import ClickHouseSettings
from streams.cardinality import OTHER, CardinalityCaps
from streams.windows import WindowAggregator

# A normalised log event redacted in place (privacy.redact.Redactor.event), and the raw
# bytes of a dead letter redacted (Redactor.raw): None = no redaction.
Redact = Callable[[dict[str, Any]], None]
RedactRaw = Callable[[bytes], bytes]

# (service, message, level, ts_ms, http_status, peer_ok, user_outcome, label)
#   -> (template_id, category, severity); streams.categorise.Categoriser is one.
Categoriser = Callable[
    [str, str, str, int, int | None, bool | None, str | None, dict[str, Any] | None],
    tuple[str, str, str]]


class Message(Protocol):
    """What the processor reads of a consumed message (confluent-kafka's Message fits)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


class StreamBounds(Protocol):
    """What the processor reads of ``streams.settings.StreamSettings`` (no import cycle)."""

    @property
    def window_grace_s(self) -> float: ...
    @property
    def max_future_s(self) -> float: ...
    @property
    def max_services(self) -> int: ...
    @property
    def max_routes_per_service(self) -> int: ...
    @property
    def max_routes(self) -> int: ...
    @property
    def max_series_per_service(self) -> int: ...
    @property
    def max_series(self) -> int: ...
    @property
    def max_instances_per_service(self) -> int: ...


class Record:
    """One Kafka message, for tests and offline use (reads like confluent-kafka's Message)."""

    __slots__ = ("_key", "_offset", "_partition", "_topic", "_value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value = key, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


@dataclass
class Output:
    """What one batch produced, by destination."""

    logs: list[tuple[Any, ...]] = field(default_factory=list)
    metrics: list[tuple[Any, ...]] = field(default_factory=list)
    changes: list[tuple[Any, ...]] = field(default_factory=list)
    feedback: list[tuple[Any, ...]] = field(default_factory=list)
    dead_letters: list[tuple[Any, ...]] = field(default_factory=list)  # dead_letters rows
    windows: list[WindowStats] = field(default_factory=list)
    feedback_events: list[Feedback] = field(default_factory=list)
    auth_events: list[tuple[str, bytes]] = field(default_factory=list)  # (service, document)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # next, by partition


def _source_id(r: Message) -> str:
    """The event id of a message that carries none: where it sits in Kafka (replay-stable)."""
    return f"{r.topic()}:{r.partition()}:{r.offset()}"


class SeenIds:
    """A bounded memory of recent event ids, to drop duplicates before they are counted.

    Two generations of sets: ids go into the young one, which becomes the old one when it
    holds ``capacity / 2`` (the previous old one is forgotten). So the latest
    ``capacity / 2`` ids at least, and ``capacity`` at most, are remembered.
    """

    def __init__(self, capacity: int = 500_000) -> None:
        self._half = max(1, capacity // 2)
        self._young: set[str] = set()
        self._old: set[str] = set()

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` was seen recently; remembers it otherwise."""
        young = self._young
        if event_id in young or event_id in self._old:
            return True
        young.add(event_id)
        if len(young) >= self._half:
            self._old, self._young = young, set()
        return False


class IngestProcessor:
    """Validates, deduplicates, categorises and windows the ingest topics."""

    def __init__(self, *, grace_s: float = 30.0, base_s: int = 10,
                 rollups_s: Iterable[int] = (60,), idle_s: float | None = None,
                 categorise: Categoriser | None = None,
                 clock: Callable[[], float] = time.time,
                 max_future_s: float | None = None,
                 retention_s: Mapping[str, float] | None = None,
                 caps: CardinalityCaps | None = None,
                 redact: Redact | None = None, redact_raw: RedactRaw | None = None) -> None:
        """``redact``: applied to every valid log event before anything else reads it
        (rows, windows, templates); ``redact_raw`` to the bytes of a dead letter.
        ``max_future_s``: how far ahead of ``clock`` an event time may be (None: only the
        contract's one day; offline replays drive ``clock`` from the data). ``retention_s``:
        by topic, how old an event may be (None: no bound)."""
        self.grace_s, self.base_s, self.rollups_s = grace_s, base_s, tuple(rollups_s)
        self.idle_s = grace_s if idle_s is None else idle_s
        self.categorise = categorise
        self.clock = clock
        self.max_future_s = max_future_s
        self._future_ms = -1 if max_future_s is None else int(max_future_s * 1000)
        self.retention_s = dict(retention_s or {})
        self._retention_ms = {t: int(v * 1000) for t, v in self.retention_s.items()}
        self.caps = CardinalityCaps() if caps is None else caps
        self.redact, self.redact_raw = redact, redact_raw
        # (service, route) -> their series names, for pairs under every cap (so bounded)
        self._series: dict[tuple[str, str], tuple[str, str]] = {}
        self._ts_hi = 1 << 62  # per batch: the latest and earliest event time accepted
        self._ts_lo: dict[str, int] = {}
        # offsets whose rows already landed in ClickHouse, by partition, with their largest:
        # set after a crash (see ``skip_landed``), so a replay does not write them again
        self.landed: dict[tuple[str, int], tuple[dict[int, str], int]] = {}
        self._now = clock()  # wall clock of the batch being processed
        self.windows: dict[tuple[str, int], WindowAggregator] = {}
        self.seen = SeenIds()
        self._routes: dict[tuple[str | None, str], str] = {}  # (method, path) -> route
        self.counts: Counter[str] = Counter()  # in.<topic>, dead_letter.<stage>, duplicate, ...

    def _agg(self, topic: str, partition: int) -> WindowAggregator:
        key = (topic, partition)
        agg = self.windows.get(key)
        if agg is None:
            agg = self.windows[key] = WindowAggregator(self.base_s, self.rollups_s, self.grace_s)
            agg.source = f"{topic}:{partition}"
            agg.now = self._now
            agg.ceiling_ms = int(self._now * 1000)
        return agg

    def skip_landed(self, landed: Mapping[tuple[str, int], Mapping[int, str]]) -> None:
        """Remember, by partition, the {offset: event id} of rows in ClickHouse already:
        replayed after a crash, they are windowed and categorised again but not written
        twice (a message whose event id differs from the stored one is written)."""
        for part, offsets in landed.items():
            if offsets:
                self.landed[part] = (dict(offsets), max(offsets))
            else:
                self.landed.pop(part, None)

    def _landed(self, topic: str, partition: int, offset: int, event_id: str) -> bool:
        got = self.landed.get((topic, partition))
        if got is None or got[0].get(offset) != event_id:
            return False
        self.counts["replayed_landed"] += 1
        return True

    def process(self, records: Iterable[Message]) -> Output:
        """Turn a batch of records into rows and the windows it closed."""
        out = Output()
        now = self.clock()
        now_ms = int(now * 1000)
        touched: set[tuple[str, int]] = set()
        counts = self.counts
        self._now = now
        for agg in self.windows.values():
            agg.now = now
            agg.ceiling_ms = now_ms  # no watermark passes the arrival clock
        self._ts_hi = now_ms + self._future_ms if self._future_ms >= 0 else 1 << 62
        self._ts_lo = {t: now_ms - ms for t, ms in self._retention_ms.items()}
        logs_lo = self._ts_lo.get(topics.LOGS, -(1 << 62))
        part: tuple[str, int] | None = None  # records come in runs of one partition
        last: Message | None = None
        logs = 0
        for r in records:
            topic, partition = r.topic() or "", r.partition() or 0
            if part is None or part[1] != partition or part[0] != topic:
                if last is not None:
                    self._next_offset(out, part, last)
                part = (topic, partition)
                touched.add(part)
            last = r
            try:
                if topic == topics.LOGS:
                    logs += 1
                    self._log(r, partition, out, now_ms, logs_lo)
                else:
                    counts["in." + topic] += 1
                    self._other(r, topic, partition, out, now_ms)
            except InvalidEvent as exc:
                self._dead_letter(out, r, now_ms, exc.stage, exc.reason)
            except Exception as exc:  # the stage boundary: one message never stops a batch
                counts["error.internal"] += 1
                self._dead_letter(out, r, now_ms, "ingest.internal",
                                  f"{type(exc).__name__}: {str(exc)[:500]}")
            if self.caps.sample is not None:  # set by a fold: a sample of the folded input
                self._dead_letter(out, r, now_ms, "ingest.cardinality", self.caps.sample)
                self.caps.sample = None
        if last is not None:
            self._next_offset(out, part, last)
        if self.landed:
            for key, next_offset in out.offsets.items():
                got = self.landed.get(key)
                if got is not None and next_offset > got[1]:
                    del self.landed[key]  # the replay is past every landed offset
        counts["in." + topics.LOGS] += logs
        for key in touched:
            touched_agg = self.windows.get(key)
            if touched_agg is not None:
                out.windows.extend(touched_agg.advance())
                counts["late_dropped"] += touched_agg.late_dropped
                touched_agg.late_dropped = 0
        counts["windows"] += len(out.windows)
        return out

    def _dead_letter(self, out: Output, r: Message, now_ms: int, stage: str,
                     reason: str) -> None:
        self.counts["dead_letter." + stage] += 1
        raw = r.value() or b""
        size = len(raw)  # what arrived, whatever redaction keeps of it
        if self.redact_raw is not None and raw:
            raw = self.redact_raw(raw)
        out.dead_letters.append(rows.dead_letter_row(
            now_ms, r.topic() or "", r.partition() or 0, r.offset() or 0, stage, reason,
            raw, r.key(), size))

    def _check_time(self, ts_ms: int, topic: str, now_ms: int, stage: str) -> None:
        """Refuse an event time too far ahead of arrival, or older than the retention."""
        if ts_ms > self._ts_hi:
            raise InvalidEvent(
                f"ts is {(ts_ms - now_ms) / 1000:.0f} s ahead of arrival, over the "
                f"{self.max_future_s:g} s bound (stream.max_future_s): producer clock?",
                stage=stage)
        if ts_ms < self._ts_lo.get(topic, -(1 << 62)):
            raise InvalidEvent(
                f"ts is {(now_ms - ts_ms) / 86_400_000:.1f} days old, past the "
                f"{self.retention_s[topic] / 86_400:g}-day retention of its table", stage=stage)

    def _route(self, method: str | None, path: str) -> str:
        """The route series name of a request ("GET /items/{id}"), remembered: one string
        object per route, its hash computed once."""
        if len(self._routes) >= 100_000:
            self._routes.clear()  # cheap bound; hot routes come back at once
        route = self._routes[method, path] = f"{method or ''} {path}".lstrip()
        return route

    @staticmethod
    def _next_offset(out: Output, part: tuple[str, int] | None, last: Message) -> None:
        if part is not None:
            offset = (last.offset() or 0) + 1
            if offset > out.offsets.get(part, -1):
                out.offsets[part] = offset

    def _log(self, r: Message, partition: int, out: Output, now_ms: int, lo_ms: int) -> None:
        """One log event: validate, drop if a duplicate, window, categorise, row."""
        e = self._decode_log(r.value(), now_ms)
        if self.redact is not None:
            self.redact(e)
        ts = e["ts"]
        if ts > self._ts_hi or ts < lo_ms:
            self._check_time(ts, topics.LOGS, now_ms, "ingest.logs")  # raises with the bound
        event_id = e.get("event_id") or _source_id(r)
        if self.seen.seen(event_id):
            self.counts["duplicate"] += 1
            return
        h = e.get("http")
        route = ""
        dur = status = None
        if h is not None:
            dur, status = h.get("duration_ms"), h.get("status")
            path = h.get("route")
            if path:
                method = h.get("method")
                route = self._routes.get((method, path)) or self._route(method, path)
        service, level = e["service"], e["level"]
        names = self._series.get((service, route)) or self._capped(service, route)
        agg = self._agg(topics.LOGS, partition)
        agg.add_log(names[0], names[1], ts, level, dur)
        host = e.get("host")
        if dur is not None and host and self.caps.instance(names[0], host, ts):
            agg.add_instance(names[0], host, ts, dur)
        p = e.get("peer")
        if type(p) is dict and p.get("service"):  # an outbound call: its dependency edge
            pd = p.get("duration_ms")
            agg.add_edge(names[0], self.caps.service(str(p["service"])), ts,
                         p.get("ok") is not False,
                         float(pd) if isinstance(pd, (int, float)) else None)
        if e.get("user") is not None or status in auth_events.AUTH_STATUSES or route:
            doc = auth_events.auth_event(e, route, status, event_id)
            if doc is not None:  # the security detectors drop replayed ids themselves
                out.auth_events.append((service, auth_events.encode(doc)))
        offset = r.offset() or 0
        if self.landed and self._landed(topics.LOGS, partition, offset, event_id):
            if self.categorise is not None:  # its template counts go on as before the crash
                self._categorise(e, service, level, ts, status)
            return
        if self.categorise is None:
            out.logs.append(rows.log_row(e, event_id, partition, offset, now_ms))
            return
        out.logs.append(rows.log_row(e, event_id, partition, offset, now_ms,
                                     *self._categorise(e, service, level, ts, status)))

    def _capped(self, service: str, route: str) -> tuple[str, str]:
        """The series names of a (service, route) under the caps; remembered when admitted."""
        caps = self.caps
        series_service = caps.service(service)
        capped = caps.route(series_service, route) if route else route
        names = (series_service, capped)
        if series_service == service and capped == route:
            if len(self._series) >= 2 * (caps.max_routes + caps.max_services):
                self._series.clear()  # a bound of its own; admitted pairs come back at once
            self._series[service, route] = names
        return names

    def _categorise(self, e: dict[str, Any], service: str, level: str, ts: int,
                    status: int | None) -> tuple[str, str, str]:
        assert self.categorise is not None
        p, u, label = e.get("peer"), e.get("user"), e["attrs"].get("label")
        return self.categorise(
            service, e["message"], level, ts, status, p.get("ok") if p else None,
            u.get("outcome") if u else None, label if type(label) is dict else None)

    def _other(self, r: Message, topic: str, partition: int, out: Output,
               now_ms: int) -> None:
        value = r.value()
        if value is None:
            raise InvalidEvent("empty message (null value)", stage="ingest")
        if topic == topics.METRICS:
            m = decode(MetricPoint, value, stage="ingest.metrics")
            series = m.series
            ts_ms = int(m.ts.timestamp() * 1000)
            self._check_time(ts_ms, topic, now_ms, "ingest.metrics")
            event_id = f"{series}@{ts_ms}"  # one point per series and instant
            if self.seen.seen(event_id):
                self.counts["duplicate"] += 1
                return
            caps = self.caps
            service = caps.service(m.service)
            if service != m.service:  # the folded service's series
                series = series_key(service, m.name, m.labels)
            capped = caps.series(service, series)
            name = m.name if capped == series else OTHER
            self._agg(topic, partition).add_metric(capped, service, name, ts_ms, m.value)
            offset = r.offset() or 0
            if self.landed and self._landed(topic, partition, offset, event_id):
                return
            out.metrics.append(rows.metric_row(m, event_id, now_ms, partition, offset))
        elif topic == topics.CHANGES:
            c = decode(Change, value, stage="ingest.changes")
            out.changes.append(rows.change_row(c, c.event_id or _source_id(r)))
        elif topic == topics.FEEDBACK:
            f = decode(Feedback, value, stage="ingest.feedback")
            out.feedback.append(rows.feedback_row(f, f.event_id or _source_id(r)))
            out.feedback_events.append(f)
        else:
            raise InvalidEvent(f"no ingest stage for topic {topic!r}", stage="ingest")

    @staticmethod
    def _decode_log(raw: bytes | None, now_ms: int) -> dict[str, Any]:
        """Decode and validate a log event: the fast path, else pydantic (which words errors)."""
        if raw is None:
            raise InvalidEvent("empty message (null value)", stage="ingest")
        if len(raw) > MAX_MESSAGE_BYTES:
            decode(LogEvent, raw, stage="ingest.logs")  # raises with the size error
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"not valid UTF-8 JSON: {exc}", stage="ingest.logs") from None
        if type(data) is dict:
            fast = fast_log(data, now_ms)
            if fast is not None:
                return fast
            return normalise_log(validate(LogEvent, data, stage="ingest.logs"))
        raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}",
                           stage="ingest.logs")

    def flush_idle(self) -> list[WindowStats]:
        """Emit the open windows of services that have been quiet for ``idle_s``."""
        now = self.clock()
        out: list[WindowStats] = []
        for agg in self.windows.values():
            idle = agg.idle_services(now, self.idle_s)
            if idle:
                out.extend(agg.flush(idle))
        return out

    def revoke(self, partitions: Iterable[tuple[str, int]]) -> list[WindowStats]:
        """Emit and forget the windows of partitions this worker no longer owns."""
        out: list[WindowStats] = []
        for key in partitions:
            agg = self.windows.pop(key, None)
            if agg is not None:
                out.extend(agg.flush())
        return out


def ingest_processor(stream: StreamBounds, clickhouse: ClickHouseSettings,
                     categorise: Categoriser | None = None, redact: Redact | None = None,
                     redact_raw: RedactRaw | None = None) -> IngestProcessor:
    """The processor a worker runs: grace, time bounds and caps from its settings."""
    return IngestProcessor(
        grace_s=stream.window_grace_s, categorise=categorise, redact=redact,
        redact_raw=redact_raw,
        max_future_s=stream.max_future_s,
        retention_s={topics.LOGS: clickhouse.ttl_logs_days * 86_400.0,
                     topics.METRICS: clickhouse.ttl_metrics_days * 86_400.0},
        caps=CardinalityCaps(
            max_services=stream.max_services,
            max_routes_per_service=stream.max_routes_per_service,
            max_routes=stream.max_routes, max_series_per_service=stream.max_series_per_service,
            max_series=stream.max_series,
            max_instances_per_service=stream.max_instances_per_service))
