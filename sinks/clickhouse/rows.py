"""Rows for the core tables, as tuples in each table's column order (one place for layouts).

The high-volume tables (``JSON_TABLES``: logs, metric points) are written as one
JSONCompactEachRow block per batch, so their rows are JSON values: timestamps in float
seconds. The others go through clickhouse-connect's native insert with timestamps as
DateTime64(3) ticks (epoch milliseconds) and may hold bytes and NaN.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from schemas.anomalies import AnomalyEvent
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
                  "event_id", "ingested_at", "kafka_partition", "kafka_offset")
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
TEMPLATE_COLUMNS = ("service", "template_id", "template", "category", "priority", "team",
                    "first_seen", "last_seen", "count", "example", "updated_at")
TEMPLATE_EVENT_COLUMNS = ("ts", "service", "template_id", "kind", "template", "value",
                          "baseline", "details")
ACCURACY_COLUMNS = (
    "period_start", "period_end", "service", "lines", "unknown_lines", "unknown_fraction",
    "category_verdicts", "category_correct", "category_accuracy", "priority_verdicts",
    "priority_correct", "priority_accuracy", "templates", "template_growth",
    "labelled_lines", "grouping_accuracy", "labelled_category_accuracy",
    "labelled_priority_accuracy",
)

JSON_TABLES = frozenset({"logs", "metric_points"})
ANOMALY_COLUMNS = (
    "event_id", "ts", "series", "service", "route", "scope", "feature", "window_s",
    "observed", "expected", "lo", "hi", "score", "threshold", "direction", "severity",
    "detector", "version", "variant", "contributing", "changes", "created_at",
)
QUALITY_COLUMNS = ("ts", "detector", "variant", "series", "true_count", "false_count",
                   "unsure_count", "precision", "false_alert_rate", "threshold_adj", "event_id")
ALERT_COLUMNS = (
    "ts", "fingerprint", "rule", "labels", "state", "severity", "service", "summary", "value",
    "starts_at", "ends_at", "trigger_ts", "acked_by", "suppressed", "suppressed_reason",
    "flapping", "evidence", "version", "event_id",
)
NOTIFICATION_COLUMNS = (
    "ts", "message_id", "fingerprint", "receiver", "channel", "kind", "status", "outcome",
    "attempt", "provider_id", "latency_ms", "delay_s", "error", "event_id",
)
SILENCE_COLUMNS = ("ts", "id", "matchers", "starts_at", "ends_at", "created_by", "comment",
                   "recurring", "deleted", "event_id")
REDACTION_COLUMNS = ("ts", "writer", "rule", "count", "event_id")

ACTION_COLUMNS = ("ts", "action_id", "incident_id", "alert_key", "fingerprint", "rule",
                  "runbook", "step", "kind", "outcome", "by", "plan", "detail", "duration_ms",
                  "version", "event_id")

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "logs": LOGS_COLUMNS, "metric_points": METRIC_COLUMNS, "windows": WINDOW_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS, "changes": CHANGE_COLUMNS,
    "feedback": FEEDBACK_COLUMNS,
    "templates": TEMPLATE_COLUMNS, "template_events": TEMPLATE_EVENT_COLUMNS,
    "categorisation_accuracy": ACCURACY_COLUMNS,
    "anomalies": ANOMALY_COLUMNS, "detector_quality": QUALITY_COLUMNS,
    "alerts": ALERT_COLUMNS, "notifications": NOTIFICATION_COLUMNS,
    "silences": SILENCE_COLUMNS,
    "actions": ACTION_COLUMNS,
    "redaction_counts": REDACTION_COLUMNS,
}


def _json(d: dict[str, Any] | None) -> str:
    return orjson.dumps(d).decode() if d else ""


_NO_HTTP = ("", "", 0, None)
_NO_PEER = ("", "", None, None)
_NO_USER = ("", "", "", "")


def log_row(e: dict[str, Any], event_id: str, partition: int, offset: int, now_ms: int,
            template_id: str = "", category: str = "", severity: str = "") -> tuple[Any, ...]:
    """A ``logs`` row from a normalised event (``schemas.fastpath``: ts in epoch ms)."""
    g = e.get
    h, p, u, attrs = g("http"), g("peer"), g("user"), g("attrs")
    hm, hr, hs, hd = _NO_HTTP if h is None else (
        h.get("method") or "", h.get("route") or "", h.get("status") or 0, h.get("duration_ms"))
    if p is None:
        ps, po, pd, pok = _NO_PEER
    else:
        ok = p.get("ok")
        ps, po, pd, pok = (p.get("service") or "", p.get("operation") or "",
                           p.get("duration_ms"), None if ok is None else int(ok))
    ui, uip, ua, uo = _NO_USER if u is None else (
        u.get("id") or "", u.get("ip") or "", u.get("action") or "", u.get("outcome") or "")
    return (
        e["ts"] / 1000, e["service"], e["level"], e["message"], g("host") or "",
        g("logger") or "", g("env") or "", g("trace_id") or "", g("span_id") or "", event_id,
        hm, hr, hs, hd, ps, po, pd, pok, ui, uip, ua, uo, _json(attrs), template_id, category,
        severity, partition, offset, now_ms / 1000,
    )


def redaction_rows(now_ms: int, writer: str, counts: dict[str, int]) -> list[tuple[Any, ...]]:
    """``redaction_counts`` rows: matches per privacy rule since ``writer``'s last rows."""
    return [(now_ms, writer, rule, n, f"{writer}@{now_ms}:{rule}")
            for rule, n in sorted(counts.items())]


def metric_row(m: MetricPoint, event_id: str, now_ms: int, partition: int = 0,
               offset: int = 0) -> tuple[Any, ...]:
    """A ``metric_points`` row (with the Kafka partition and offset it came from)."""
    return (m.ts.timestamp(), m.service, m.name, m.value, m.kind, m.unit or "", m.labels,
            m.series, event_id, now_ms / 1000, partition, offset)


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
                    error: str, raw: bytes, key: bytes | None, size: int = -1
                    ) -> tuple[Any, ...]:
    """A ``dead_letters`` row: the bytes (cut to 1 MiB) and the full size of the message as
    it arrived (``size``, when ``raw`` is a redacted copy; else ``len(raw)``)."""
    kept, whole = truncate_raw(raw)
    return (received_ms, topic, partition, offset, stage, error, kept,
            whole if size < 0 else size,
            (key or b"").decode("utf-8", "replace")[:256])


def template_row(service: str, template_id: str, template: str, category: str, priority: str,
                 team: str, first_seen_ms: int, last_seen_ms: int, count: int, example: str,
                 now_ms: int) -> tuple[Any, ...]:
    """A ``templates`` row (the latest ``updated_at`` of a template wins)."""
    return (service, template_id, template, category, priority, team, first_seen_ms,
            last_seen_ms, count, example, now_ms)


def template_event_row(ts_ms: int, service: str, template_id: str, kind: str, template: str,
                       value: float, baseline: float, details: dict[str, Any]) -> tuple[Any, ...]:
    """A ``template_events`` row: new, spike, vanished, explosion or merged (``template_id``
    absorbed into ``details.into``)."""
    return (ts_ms, service, template_id, kind, template, value, baseline, _json(details))


def accuracy_row(r: dict[str, Any]) -> tuple[Any, ...]:
    """A ``categorisation_accuracy`` row from ``AccuracyTracker.to_rows``."""
    return tuple(r[c] for c in ACCURACY_COLUMNS)


def anomaly_row(a: AnomalyEvent, now_ms: int) -> tuple[Any, ...]:
    """An ``anomalies`` row (the anomaly id is its ``event_id``)."""
    changes = orjson.dumps([c.model_dump() for c in a.changes]).decode() if a.changes else ""
    return (a.id, a.ts, a.series, a.service, a.route, a.scope, a.feature, a.window_s,
            a.observed, a.expected, a.lo, a.hi, a.score, a.threshold, a.direction, a.severity,
            a.detector, a.version, a.variant, a.contributing, changes, now_ms)


def quality_row(now_ms: int, detector: str, variant: str, series: str, figures: dict[str, float],
                threshold_adj: float) -> tuple[Any, ...]:
    """A ``detector_quality`` row: verdict counts and precision after a feedback."""
    return (now_ms, detector, variant, series, int(figures["true"]), int(figures["false"]),
            int(figures["unsure"]), figures["precision"], figures["false_alert_rate"],
            threshold_adj, f"{detector}|{variant}|{series}|{now_ms}")


def alert_row(a: dict[str, Any], now_ms: int, suppressed_reason: str = "") -> tuple[Any, ...]:
    """An ``alerts`` row from an alert's JSON dump (one per state change; epoch-s fields)."""
    labels, ann = a.get("labels", {}), a.get("annotations", {})
    version = int(a["updated_at"] * 1000)
    ends = a.get("ends_at")
    return (now_ms, a["fingerprint"], a["rule"], labels, a["state"],
            labels.get("severity", ""), labels.get("service", ""),
            ann.get("summary", ""), float(a.get("value", 0.0)), int(a["starts_at"] * 1000),
            int(ends * 1000) if ends is not None else None, int(a["trigger_ts"] * 1000),
            a.get("acked_by", ""), bool(suppressed_reason), suppressed_reason,
            bool(a.get("flapping", False)), orjson.dumps(a.get("evidence", {})).decode(),
            version, f"{a['fingerprint']}|{a['state']}|{version}")


def notification_row(r: dict[str, Any], receiver: str, status: str) -> tuple[Any, ...]:
    """A ``notifications`` row from a DeliveryRecord's dump (one per attempt)."""
    return (int(r["started_at"] * 1000), r["message_id"], r["fingerprint"], receiver,
            r["channel"], r["kind"], status, r["outcome"], int(r["attempt"]),
            r.get("provider_id", ""), float(r["latency_ms"]), r.get("delay_s"),
            r.get("error", ""), f"{r['message_id']}|{r['channel']}|{r['attempt']}")


def silence_row(s: dict[str, Any], now_ms: int, deleted: bool = False) -> tuple[Any, ...]:
    """A ``silences`` row from a Silence's dump (matchers as text)."""
    ends = s.get("ends_at")
    matchers = [f'{m["name"]}{m["op"]}"{m["value"]}"' for m in s.get("matchers", [])]
    rec = s.get("recurring")
    return (now_ms, s["id"], matchers, int(s["starts_at"] * 1000),
            int(ends * 1000) if ends is not None else None, s.get("created_by", ""),
            s.get("comment", ""), orjson.dumps(rec).decode() if rec else "", deleted,
            f"{s['id']}|{now_ms}|{deleted}")


def action_row(a: dict[str, Any]) -> tuple[Any, ...]:
    """An ``actions`` row from a runbook action's state (``alerting.actions.ActionState``):
    one row per state change, ``event_id`` = action id and version."""
    return (int(a["updated_at"] * 1000), a["id"], a["incident_id"], a["key"], a["fingerprint"],
            a["rule"], a["source"], a["step"], a["kind"], a["status"], a["by"],
            a["plan"][:4000], a["detail"][:8000], float(a["duration_ms"]), int(a["version"]),
            f"{a['id']}:{a['version']}")
