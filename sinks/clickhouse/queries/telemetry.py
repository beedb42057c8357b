"""Reads of what the fleet sent: logs, windows, services, routes, dependencies, templates,
anomalies and changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import (
    MAX_LIMIT,
    TS,
    Page,
    Span,
    filters,
    ident,
    paged,
    query_rows,
    select,
)


def count_logs(
    store: Store,
    since: datetime,
    until: datetime | None = None,
    *,
    service: str | None = None,
    level: str | None = None,
    database: str = "logwarden",
) -> int:
    """Number of distinct log events in [since, until), optionally for one service or level."""
    where = ["ts >= {since:DateTime64(3, 'UTC')}"]
    params: dict[str, Any] = {"since": since}
    if until is not None:
        where.append("ts < {until:DateTime64(3, 'UTC')}")
        params["until"] = until
    if service is not None:
        where.append("service = {service:String}")
        params["service"] = service
    if level is not None:
        where.append("level = {level:String}")
        params["level"] = level
    sql = f"SELECT count() FROM {ident(database)}.logs FINAL WHERE " + " AND ".join(where)
    _, rows = query_rows(store, sql, params)
    return int(rows[0][0])


def windows_for(
    store: Store, series: str, window_s: int, since: datetime, *, database: str = "logwarden"
) -> list[dict[str, Any]]:
    """The latest revision of each window of a series starting at or after ``since``, by start."""
    sql = (
        f"SELECT * FROM {ident(database)}.windows FINAL WHERE series = {{series:String}} "
        "AND window_s = {window_s:UInt32} AND start >= {since:DateTime64(3, 'UTC')} "
        "ORDER BY start"
    )
    columns, rows = query_rows(
        store, sql, {"series": series, "window_s": window_s, "since": since}
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def latest_time(store: Store, db: str) -> datetime | None:
    """End of the newest window: "now" in event time (a replayed demo may lag the clock)."""
    rows = select(store, f"SELECT max(end) AS t, count() AS n FROM {ident(db)}.windows", {})
    return rows[0]["t"] if rows and rows[0]["n"] else None


def services(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Per service over ``span``: requests, errors, error rate, mean rate/s, p95, last seen."""
    sql = (f"SELECT service, sum(count) AS events, sum(error_count) AS errors, "
           "if(events = 0, 0, toFloat64(errors) / events) AS error_rate, "
           "toFloat64(events) / greatest(1, dateDiff('second', min(start), max(end))) "
           "AS rate_per_s, "
           "quantile(0.95)(p95) AS p95_ms, max(end) AS last_seen "
           f"FROM {ident(db)}.windows FINAL WHERE scope = 'service' AND window_s = 60 "
           f"AND start >= {{since:{TS}}} AND start < {{until:{TS}}} "
           "GROUP BY service ORDER BY service")
    return select(store, sql, span.params())


def service_series(store: Store, db: str, span: Span, service: str | None = None
                   ) -> list[dict[str, Any]]:
    """60 s windows of every service (or one): start, count, error rate, rate/s, p95."""
    where, extra = filters({"service": ("service = {service:String}", service)})
    sql = ("SELECT service, start, count, error_count, error_rate, rate_per_s, p95 "
           f"FROM {ident(db)}.windows FINAL WHERE scope = 'service' AND window_s = 60 "
           f"AND start >= {{since:{TS}}} AND start < {{until:{TS}}}{where} "
           "ORDER BY service, start")
    return select(store, sql, {**span.params(), **extra})


def routes(store: Store, db: str, span: Span, service: str) -> list[dict[str, Any]]:
    """Routes of one service over ``span``: requests, errors, error rate, p95 (worst first)."""
    sql = ("SELECT route, sum(count) AS requests, sum(error_count) AS errors, "
           "if(requests = 0, 0, toFloat64(errors) / requests) AS error_rate, max(p95) AS p95_ms "
           f"FROM {ident(db)}.windows FINAL WHERE scope = 'route' AND window_s = 60 "
           f"AND service = {{service:String}} AND start >= {{since:{TS}}} "
           f"AND start < {{until:{TS}}} GROUP BY route ORDER BY p95_ms DESC LIMIT 200")
    return select(store, sql, {**span.params(), "service": service})


def route_latency(store: Store, db: str, span: Span, service: str | None = None
                  ) -> list[dict[str, Any]]:
    """Per route: p95 in the first and the second half of ``span`` (latency regressions)."""
    mid = span.since + (span.until - span.since) / 2
    where, extra = filters({"service": ("service = {service:String}", service)})
    sql = ("SELECT service, route, sum(count) AS requests, "
           f"quantileIf(0.5)(p95, start < {{mid:{TS}}}) AS p95_before, "
           f"quantileIf(0.5)(p95, start >= {{mid:{TS}}}) AS p95_after "
           f"FROM {ident(db)}.windows FINAL WHERE scope = 'route' AND window_s = 60 "
           f"AND start >= {{since:{TS}}} AND start < {{until:{TS}}}{where} "
           "GROUP BY service, route ORDER BY p95_after DESC LIMIT 50")
    return select(store, sql, {**span.params(), "mid": mid, **extra})


def dependencies(store: Store, db: str, span: Span, service: str | None = None
                 ) -> list[dict[str, Any]]:
    """Call graph edges (caller -> callee) with calls, error rate and p95 latency."""
    where, extra = filters({"service": ("(service = {service:String} OR "
                                         "peer_service = {service:String})", service)})
    sql = ("SELECT service AS caller, peer_service AS callee, count() AS calls, "
           "toFloat64(countIf(peer_ok = 0)) / calls AS error_rate, "
           "quantile(0.95)(peer_duration_ms) AS p95_ms "
           f"FROM {ident(db)}.logs WHERE peer_service != '' AND ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} GROUP BY caller, callee ORDER BY calls DESC "
           "LIMIT 500")
    return select(store, sql, {**span.params(), **extra})


LOG_COLUMNS = ("ts, service, level, message, host, http_route, http_status, "
               "http_duration_ms, template_id, category, severity, trace_id, event_id")


# Security logs (readable by the security and admin roles only, web/access.py): lines
# categorised security, and events with a user action (logins, resets, role changes).
SECURITY_LOGS = "(category = 'security' OR user_action != '')"


def search_logs(store: Store, db: str, span: Span, page: Page, *, service: str | None = None,
                level: str | None = None, template_id: str | None = None,
                text: str | None = None, hide_security: bool = False) -> dict[str, Any]:
    """Log lines in ``span``, newest first, filtered by service, level, template and text
    (``hide_security``: without the security logs)."""
    where, extra = filters({
        "service": ("service = {service:String}", service),
        "level": ("level = {level:String}", level.upper() if level else level),
        "template_id": ("template_id = {template_id:String}", template_id),
        "text": ("positionCaseInsensitive(message, {text:String}) > 0", text),
    })
    where += f" AND NOT {SECURITY_LOGS}" if hide_security else ""
    sql = (f"SELECT {LOG_COLUMNS} FROM {ident(db)}.logs WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def logs_by_template(store: Store, db: str, span: Span, page: Page, *,
                     service: str | None = None, level: str | None = None,
                     text: str | None = None, hide_security: bool = False) -> dict[str, Any]:
    """The search grouped by template: count, levels, first/last seen, one example."""
    where, extra = filters({
        "service": ("service = {service:String}", service),
        "level": ("level = {level:String}", level.upper() if level else level),
        "text": ("positionCaseInsensitive(message, {text:String}) > 0", text),
    })
    where += f" AND NOT {SECURITY_LOGS}" if hide_security else ""
    sql = ("SELECT service, template_id, count() AS lines, groupUniqArray(level) AS levels, "
           "min(ts) AS first_seen, max(ts) AS last_seen, any(message) AS example "
           f"FROM {ident(db)}.logs WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}}{where} "
           "GROUP BY service, template_id ORDER BY lines DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def templates(store: Store, db: str, page: Page, *, service: str | None = None
              ) -> dict[str, Any]:
    """Known templates (latest revision), most frequent first."""
    where, extra = filters({"service": ("service = {service:String}", service)})
    sql = ("SELECT service, template_id, template, category, priority, team, first_seen, "
           f"last_seen, count FROM {ident(db)}.templates FINAL WHERE 1{where} "
           "ORDER BY count DESC, template_id")
    return paged(store, sql, extra, page)


def template_events(store: Store, db: str, span: Span, page: Page, *,
                    service: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """New / spiking / vanished templates and explosions in ``span``, newest first."""
    where, extra = filters({"service": ("service = {service:String}", service),
                             "kind": ("kind = {kind:String}", kind)})
    sql = ("SELECT ts, service, template_id, kind, template, value, baseline "
           f"FROM {ident(db)}.template_events FINAL WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def top_error_templates(store: Store, db: str, span: Span, limit: int = 10
                        ) -> list[dict[str, Any]]:
    """Templates with the most ERROR+ lines in ``span``, with counts per half (the trend)."""
    mid = span.since + (span.until - span.since) / 2
    sql = ("SELECT service, template_id, count() AS lines, any(message) AS example, "
           f"countIf(ts < {{mid:{TS}}}) AS first_half, countIf(ts >= {{mid:{TS}}}) "
           f"AS second_half FROM {ident(db)}.logs WHERE ts >= {{since:{TS}}} AND "
           f"ts < {{until:{TS}}} AND level IN ('ERROR', 'CRITICAL', 'FATAL') "
           "GROUP BY service, template_id ORDER BY lines DESC LIMIT {n:UInt32}")
    return select(store, sql, {**span.params(), "mid": mid, "n": min(limit, MAX_LIMIT)})


def anomalies(store: Store, db: str, span: Span, page: Page, *, service: str | None = None,
              variant: str | None = None) -> dict[str, Any]:
    """Anomalies in ``span``, newest first, with the expected value and band."""
    where, extra = filters({"service": ("service = {service:String}", service),
                             "variant": ("variant = {variant:String}", variant)})
    sql = ("SELECT event_id, ts, series, service, route, scope, feature, observed, expected, "
           "lo, hi, score, severity, detector, variant "
           f"FROM {ident(db)}.anomalies FINAL WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def changes(store: Store, db: str, span: Span, page: Page, *, service: str | None = None
            ) -> dict[str, Any]:
    """Deploys, config changes and the like in ``span``, newest first."""
    where, extra = filters({"service": ("service = {service:String}", service)})
    sql = (f"SELECT ts, service, kind, description, event_id FROM {ident(db)}.changes FINAL "
           f"WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)
