"""Reads of alerting state: alerts, their history, silences and notifications.
"""

from __future__ import annotations

from typing import Any

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import TS, Page, Span, filters, ident, paged, select

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
    where, extra = filters({"state": ("state = {state:String}", state),
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
    where, extra = filters({"fp": ("fingerprint = {fp:String}", fingerprint)})
    sql = ("SELECT ts, fingerprint, receiver, channel, kind, status, outcome, attempt, "
           "latency_ms, error "
           f"FROM {ident(db)}.notifications FINAL WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)
