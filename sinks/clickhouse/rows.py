"""Rows for the core tables, as tuples in each table's column order (one place for layouts).

Timestamps are epoch milliseconds (DateTime64(3) ticks): no per-value conversion on insert.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from schemas.changes import Change, Feedback
from schemas.common import to_epoch_ms
from schemas.metrics import MetricPoint
from schemas.windows import WindowStats
from sinks.clickhouse.writer import truncate_raw

LOGS_COLUMNS = (
    "ts", "service", "level", "message", "host", "logger", "env", "trace_id", "span_id",
    "event_id", "http_method", "http_route", "http_status", "http_duration_ms",
    "peer_service", "peer_operation", "peer_duration_ms", "peer_ok", "user_id", "user_ip",
    "user_action", "user_outcome", "attrs", "template_id", "category", "severity",
    "kafka_partition", "kafka_offset", "ingested_at",
)
METRIC_COLUMNS = ("ts", "service", "name", "value", "kind", "unit", "labels", "series",
                  "event_id", "ingested_at")
WINDOW_COLUMNS = (
    "series", "service", "scope", "route", "name", "window_s", "start", "end", "count",
    "error_count", "level_counts", "error_rate", "rate_per_s", "p50", "p95", "p99", "min",
    "max", "mean", "last", "sum", "revision", "emitted_at",
)
DEAD_LETTER_COLUMNS = ("received_at", "topic", "partition", "offset", "stage", "error", "raw",
                       "raw_size", "key")
CHANGE_COLUMNS = ("ts", "service", "kind", "description", "attrs", "event_id")
FEEDBACK_COLUMNS = ("ts", "target_kind", "target_id", "verdict", "user", "comment", "attrs",
                    "event_id")

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "logs": LOGS_COLUMNS, "metric_points": METRIC_COLUMNS, "windows": WINDOW_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS, "changes": CHANGE_COLUMNS,
    "feedback": FEEDBACK_COLUMNS,
}


_EMPTY: dict[str, Any] = {}


def _json(d: dict[str, Any]) -> str:
    return orjson.dumps(d).decode() if d else ""


def log_row(e: dict[str, Any], event_id: str, partition: int, offset: int, now_ms: int,
            template_id: str = "", category: str = "", severity: str = "") -> tuple[Any, ...]:
    """A ``logs`` row from a normalised event (``schemas.fastpath``: ts in epoch ms)."""
    h, p, u = e.get("http") or _EMPTY, e.get("peer") or _EMPTY, e.get("user") or _EMPTY
    ok = p.get("ok")
    return (
        e["ts"], e["service"], e["level"], e["message"], e.get("host") or "",
        e.get("logger") or "", e.get("env") or "", e.get("trace_id") or "",
        e.get("span_id") or "", event_id, h.get("method") or "", h.get("route") or "",
        h.get("status") or 0, h.get("duration_ms"), p.get("service") or "",
        p.get("operation") or "", p.get("duration_ms"), None if ok is None else int(ok),
        u.get("id") or "", u.get("ip") or "", u.get("action") or "", u.get("outcome") or "",
        _json(e.get("attrs") or _EMPTY), template_id, category, severity, partition, offset,
        now_ms,
    )


def metric_row(m: MetricPoint, event_id: str, now_ms: int) -> tuple[Any, ...]:
    """A ``metric_points`` row."""
    return (to_epoch_ms(m.ts), m.service, m.name, m.value, m.kind, m.unit or "", m.labels,
            m.series, event_id, now_ms)


def change_row(c: Change, event_id: str) -> tuple[Any, ...]:
    """A ``changes`` row."""
    return (to_epoch_ms(c.ts), c.service, c.kind, c.description, _json(c.attrs), event_id)


def feedback_row(f: Feedback, event_id: str) -> tuple[Any, ...]:
    """A ``feedback`` row; corrections (category, priority) travel in ``attrs``."""
    attrs = dict(f.attrs)
    if f.category:
        attrs["category"] = f.category
    if f.priority:
        attrs["priority"] = f.priority
    return (to_epoch_ms(f.ts), f.target_kind, f.target_id, f.verdict, f.user, f.comment,
            _json(attrs), event_id)


def window_row(w: WindowStats, now_ms: int) -> tuple[Any, ...]:
    """A ``windows`` row (NaN stays NaN: ClickHouse Float64 keeps it)."""
    return (
        w.series, w.service, w.scope, w.route, w.name, w.window_s, to_epoch_ms(w.start),
        to_epoch_ms(w.end), w.count, w.error_count, w.level_counts, w.error_rate,
        w.rate_per_s, w.p50, w.p95, w.p99, w.min, w.max, w.mean, w.last,
        w.sum if math.isfinite(w.sum) else 0.0, w.revision, now_ms,
    )


def dead_letter_row(received_ms: int, topic: str, partition: int, offset: int, stage: str,
                    error: str, raw: bytes, key: bytes | None) -> tuple[Any, ...]:
    """A ``dead_letters`` row: the original bytes (cut to 1 MiB) and their full size."""
    kept, size = truncate_raw(raw)
    return (received_ms, topic, partition, offset, stage, error, kept, size,
            (key or b"").decode("utf-8", "replace")[:256])
