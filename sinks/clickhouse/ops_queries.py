"""Typed reads of alerting, detector quality and pipeline tables for the API and reports.

Same rules as ``web_queries``: bound parameters only, missing tables read as no rows.
"""

from __future__ import annotations

from typing import Any

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import ident
from sinks.clickhouse.web_queries import TS, Page, Span, _filters, paged, select

# The alerts table keeps every state change; an alert is its newest row.
_CURRENT_ALERTS = (
    "SELECT fingerprint, argMax(rule, (ts, version)) AS rule, "
    "argMax(state, (ts, version)) AS state, argMax(severity, (ts, version)) AS severity, "
    "argMax(service, (ts, version)) AS service, argMax(summary, (ts, version)) AS summary, "
    "argMax(value, (ts, version)) AS value, argMax(starts_at, (ts, version)) AS starts_at, "
    "argMax(ends_at, (ts, version)) AS ends_at, argMax(acked_by, (ts, version)) AS acked_by, "
    "argMax(suppressed, (ts, version)) AS suppressed, "
    "argMax(flapping, (ts, version)) AS flapping, argMax(labels, (ts, version)) AS labels, "
    "max(ts) AS updated_at FROM {db}.alerts FINAL GROUP BY fingerprint"
)


def alerts(store: Store, db: str, page: Page, *, state: str | None = None,
           service: str | None = None) -> dict[str, Any]:
    """Alerts in their current state (firing, acknowledged, resolved), newest change first."""
    where, extra = _filters({"state": ("state = {state:String}", state),
                             "service": ("service = {service:String}", service)})
    sql = (f"SELECT * FROM ({_CURRENT_ALERTS.format(db=ident(db))}) WHERE 1{where} "
           "ORDER BY updated_at DESC")
    return paged(store, sql, extra, page)


def open_alert_counts(store: Store, db: str) -> dict[str, int]:
    """Firing or acknowledged alerts per service."""
    sql = (f"SELECT service, count() AS n FROM ({_CURRENT_ALERTS.format(db=ident(db))}) "
           "WHERE state IN ('firing', 'acknowledged') GROUP BY service")
    return {r["service"]: int(r["n"]) for r in select(store, sql, {})}


def alert_history(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Per fingerprint in ``span``: first firing, first ack, resolution and noise facts."""
    sql = ("SELECT fingerprint, any(rule) AS rule, any(service) AS service, "
           "minIf(ts, state = 'firing') AS fired_at, min(trigger_ts) AS trigger_at, "
           "minIf(ts, state = 'acknowledged') AS acked_at, "
           "minIf(ts, state = 'resolved') AS resolved_at, "
           "countIf(state = 'acknowledged') > 0 AS acked, max(flapping) AS flapping, "
           "max(suppressed) AS suppressed "
           f"FROM {ident(db)}.alerts FINAL WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
           "GROUP BY fingerprint ORDER BY fired_at LIMIT 10000")
    return select(store, sql, span.params())


def silences(store: Store, db: str, page: Page, *, active_only: bool = True
             ) -> dict[str, Any]:
    """Silences at their latest version (not deleted), newest first."""
    now = "(ends_at IS NULL OR ends_at > now64(3))" if active_only else "1"
    sql = ("SELECT id, argMax(matchers, ts) AS matchers, argMax(starts_at, ts) AS starts_at, "
           "argMax(ends_at, ts) AS ends_at, argMax(created_by, ts) AS created_by, "
           "argMax(comment, ts) AS comment, argMax(deleted, ts) AS deleted "
           f"FROM {ident(db)}.silences FINAL GROUP BY id HAVING NOT deleted AND {now} "
           "ORDER BY starts_at DESC")
    return paged(store, sql, {}, page)


def notifications(store: Store, db: str, span: Span, page: Page, *,
                  fingerprint: str | None = None) -> dict[str, Any]:
    """Notification attempts (email, Slack, SMS; escalations), newest first."""
    where, extra = _filters({"fp": ("fingerprint = {fp:String}", fingerprint)})
    sql = ("SELECT ts, fingerprint, receiver, channel, kind, status, outcome, attempt, "
           "latency_ms, error "
           f"FROM {ident(db)}.notifications FINAL WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


# Each judged anomaly once: a person's last verdict on it, when it was given, and the
# detector and variant that raised it. A verdict on an alert that an anomaly rule fired
# counts for that anomaly (the ``anomaly_id`` of the alert's evidence in its newest row
# before the verdict).
_ALERT_VERDICTS = (
    "SELECT argMax(al.anomaly_id, al.alert_ts) AS target_id, f.verdict AS verdict, f.ts AS ts "
    "FROM (SELECT target_id, verdict, ts FROM {db}.feedback FINAL "
    "WHERE target_kind = 'alert') AS f "
    "INNER JOIN (SELECT fingerprint, ts AS alert_ts, "
    "JSONExtractString(evidence, 'anomaly_id') AS anomaly_id FROM {db}.alerts FINAL "
    "WHERE anomaly_id != '') AS al ON al.fingerprint = f.target_id "
    "WHERE al.alert_ts <= f.ts GROUP BY f.target_id, f.verdict, f.ts"
)
_JUDGED_ANOMALIES = (
    "SELECT v.judged_at AS ts, a.detector AS detector, a.variant AS variant, "
    "v.last_verdict AS verdict "
    "FROM (SELECT target_id, argMax(verdict, ts) AS last_verdict, max(ts) AS judged_at "
    "FROM (SELECT target_id, verdict, ts FROM {db}.feedback FINAL "
    "WHERE target_kind = 'anomaly' UNION ALL " + _ALERT_VERDICTS + ") GROUP BY target_id) AS v "
    "INNER JOIN (SELECT event_id, any(detector) AS detector, any(variant) AS variant "
    "FROM {db}.anomalies GROUP BY event_id) AS a ON a.event_id = v.target_id"
)
# Each incident reported missed once, when it was first reported.
_MISSED_INCIDENTS = (
    "SELECT min(ts) AS reported_at, target_id FROM {db}.feedback FINAL "
    "WHERE target_kind = 'incident' AND verdict = 'missed' GROUP BY target_id"
)


def detector_quality_by_day(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Per day, detector and variant: the verdicts on its anomalies (a person's last verdict
    on each, dated by it), precision, false-alert rate, and recall against the incidents
    reported missed that day."""
    sql = ("SELECT toStartOfDay(ts) AS day, detector, variant, "
           "countIf(verdict = 'true') AS true_alerts, "
           "countIf(verdict = 'false') AS false_alerts, "
           "countIf(verdict = 'unsure') AS unsure "
           f"FROM ({_JUDGED_ANOMALIES.format(db=ident(db))}) "
           f"WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
           "GROUP BY day, detector, variant ORDER BY day, detector, variant")
    missed = {r["day"]: int(r["n"]) for r in select(
        store, f"SELECT toStartOfDay(reported_at) AS day, count() AS n FROM "
        f"({_MISSED_INCIDENTS.format(db=ident(db))}) "
        f"WHERE reported_at >= {{since:{TS}}} AND reported_at < {{until:{TS}}} GROUP BY day",
        span.params())}
    rows = select(store, sql, span.params())
    for r in rows:
        _rates(r, missed.get(r["day"], 0))
    return rows


def _rates(r: dict[str, Any], missed: int) -> None:
    """Add precision, false-alert rate and recall (None without verdicts) to a row of
    ``true_alerts`` and ``false_alerts``."""
    found, false = int(r["true_alerts"]), int(r["false_alerts"])
    r["precision"] = found / (found + false) if found + false else None
    r["false_alert_rate"] = false / (found + false) if found + false else None
    r["recall"] = found / (found + missed) if found + missed else None


def verdict_history(store: Store, db: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` verdicts on anomalies and reports of missed incidents, oldest
    first: what the false-alert budget (``detectors.alert_budget``) replays."""
    sql = (f"SELECT toUnixTimestamp64Milli(ts) AS ts_ms, detector, variant, verdict FROM "
           f"({_JUDGED_ANOMALIES.format(db=ident(db))} UNION ALL SELECT reported_at, "
           "'' AS detector, '' AS variant, 'missed' AS verdict FROM "
           f"({_MISSED_INCIDENTS.format(db=ident(db))})) "
           "ORDER BY ts_ms DESC, detector, variant LIMIT {limit:UInt32}")
    return select(store, sql, {"limit": limit})[::-1]


def detector_quality(store: Store, db: str) -> list[dict[str, Any]]:
    """Per detector variant, over every judged anomaly (``_JUDGED_ANOMALIES``, as per day and
    for the false-alert budget): verdict counts, precision, false-alert rate, recall against
    the incidents reported missed, and the threshold offset the budget has set (the
    ``detector_quality`` rows of series ``*``)."""
    sql = ("SELECT detector, variant, countIf(verdict = 'true') AS true_alerts, "
           "countIf(verdict = 'false') AS false_alerts, countIf(verdict = 'unsure') AS unsure "
           f"FROM ({_JUDGED_ANOMALIES.format(db=ident(db))}) GROUP BY detector, variant")
    offsets = select(store, "SELECT detector, variant, threshold_adj AS threshold_offset "
                     f"FROM {ident(db)}.detector_quality FINAL WHERE series = '*'", {})
    missed = select(store, "SELECT count() AS n FROM "
                    f"({_MISSED_INCIDENTS.format(db=ident(db))})", {})
    n_missed = int(missed[0]["n"]) if missed else 0
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in select(store, sql, {}) + offsets:
        row = rows.setdefault((r["detector"], r["variant"]), {
            "detector": r["detector"], "variant": r["variant"], "true_alerts": 0,
            "false_alerts": 0, "unsure": 0, "threshold_offset": 0.0})
        row.update(r)
    for r in rows.values():
        _rates(r, n_missed)
    return [rows[k] for k in sorted(rows)]


def categorisation_accuracy(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Categorisation accuracy per service and period in ``span``."""
    sql = ("SELECT period_start, service, lines, unknown_fraction, category_accuracy, "
           "priority_accuracy, category_verdicts, templates, template_growth "
           f"FROM {ident(db)}.categorisation_accuracy FINAL "
           f"WHERE period_start >= {{since:{TS}}} AND period_start < {{until:{TS}}} "
           "ORDER BY period_start, service LIMIT 1000")
    return select(store, sql, span.params())


def throughput(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Per minute of ingest time: log lines stored and mean sink latency (ingested - ts)."""
    sql = ("SELECT toStartOfMinute(ingested_at) AS minute, count() AS lines, "
           "avg(dateDiff('millisecond', ts, ingested_at)) AS sink_latency_ms "
           f"FROM {ident(db)}.logs WHERE ingested_at >= {{since:{TS}}} "
           f"AND ingested_at < {{until:{TS}}} GROUP BY minute ORDER BY minute")
    return select(store, sql, span.params())


def dead_letter_counts(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Dead letters per minute and stage."""
    sql = ("SELECT toStartOfMinute(received_at) AS minute, stage, count() AS n "
           f"FROM {ident(db)}.dead_letters WHERE received_at >= {{since:{TS}}} "
           f"AND received_at < {{until:{TS}}} GROUP BY minute, stage ORDER BY minute")
    return select(store, sql, span.params())


def usage(store: Store, db: str, span: Span, bucket: str = "day") -> list[dict[str, Any]]:
    """Events per service per hour or day (usage growth, capacity trend)."""
    fn = {"hour": "toStartOfHour", "day": "toStartOfDay"}[bucket]
    sql = (f"SELECT service, {fn}(start) AS bucket, sum(count) AS events, "
           "max(rate_per_s) AS peak_rate_per_s "
           f"FROM {ident(db)}.windows FINAL WHERE scope = 'service' AND window_s = 60 "
           f"AND start >= {{since:{TS}}} AND start < {{until:{TS}}} "
           "GROUP BY service, bucket ORDER BY service, bucket")
    return select(store, sql, span.params())
