"""Reads of how well detection and triage do: verdicts, detector quality, categorisation
accuracy and feedback.
"""

from __future__ import annotations

from typing import Any

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import TS, Page, Span, filters, ident, paged, select

# Each judged anomaly once: a person's last verdict on it, when it was given, and the
# detector and variant that raised it (and incident verdicts below). A verdict on an alert
# that an anomaly rule fired
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

# A verdict on an incident counts for every anomaly the incident holds (its signal ids, in
# its newest version).
_INCIDENT_VERDICTS = (
    "SELECT arrayJoin(JSONExtract(inc.doc, 'signal_ids', 'Array(String)')) AS target_id, "
    "f.verdict AS verdict, f.ts AS ts "
    "FROM (SELECT target_id, verdict, ts FROM {db}.feedback FINAL "
    "WHERE target_kind = 'incident' AND verdict IN ('true', 'false')) AS f "
    "INNER JOIN (SELECT id, argMax(doc, version) AS doc FROM {db}.incidents GROUP BY id) "
    "AS inc ON inc.id = f.target_id"
)


_JUDGED_ANOMALIES = (
    "SELECT v.judged_at AS ts, a.detector AS detector, a.variant AS variant, "
    "v.last_verdict AS verdict "
    "FROM (SELECT target_id, argMax(verdict, ts) AS last_verdict, max(ts) AS judged_at "
    "FROM (SELECT target_id, verdict, ts FROM {db}.feedback FINAL "
    "WHERE target_kind = 'anomaly' UNION ALL " + _ALERT_VERDICTS + " UNION ALL "
    + _INCIDENT_VERDICTS + ") GROUP BY target_id) AS v "
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


def feedback(store: Store, db: str, span: Span, page: Page, *,
             target_kind: str | None = None) -> dict[str, Any]:
    """Verdicts people gave on alerts, anomalies and categories, newest first."""
    where, extra = filters({"kind": ("target_kind = {kind:String}", target_kind)})
    sql = ("SELECT ts, target_kind, target_id, verdict, user, comment "
           f"FROM {ident(db)}.feedback FINAL WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def feedback_volume(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Feedback per hour and verdict."""
    sql = ("SELECT toStartOfHour(ts) AS hour, verdict, count() AS n "
           f"FROM {ident(db)}.feedback FINAL WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}} GROUP BY hour, verdict ORDER BY hour")
    return select(store, sql, span.params())
