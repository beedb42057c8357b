"""Typed reads behind the API, dashboards and reports (split from ``queries.py`` for size).

Every value is bound as a ClickHouse parameter (``{name:Type}``); only the database name,
checked by ``ident``, is formatted in. Tables that other stages create later (alerts,
anomalies, ...) may be missing: a read of one returns no rows instead of failing, so a
page shows "no data yet" rather than an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import ident, query_rows

MAX_LIMIT = 1000
MAX_OFFSET = 100_000
TS = "DateTime64(3, 'UTC')"
# Divisions convert to Float64 first: chDB 4 returned no rows at all for an aggregate
# divided by an integer (``sum(count) / 60``).
# Unknown table/database/column: a stage that has not run (or migrated) yet.
_MISSING = re.compile(r"UNKNOWN_TABLE|UNKNOWN_DATABASE|UNKNOWN_IDENTIFIER|NO_SUCH_COLUMN|"
                      r"Code: (60|81|47|16)\b")


@dataclass(frozen=True)
class Page:
    """A slice of a list: at most ``limit`` (1..1000) rows after skipping ``offset``."""

    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise ValueError(f"offset must be between 0 and {MAX_OFFSET}")

    def params(self) -> dict[str, int]:
        """Bound values for ``LIMIT {limit:UInt32} OFFSET {offset:UInt32}`` (one row extra)."""
        return {"limit": self.limit + 1, "offset": self.offset}


PAGE_SQL = " LIMIT {limit:UInt32} OFFSET {offset:UInt32}"


@dataclass(frozen=True)
class Span:
    """A time range [since, until) in UTC."""

    since: datetime
    until: datetime

    def params(self) -> dict[str, datetime]:
        """Bound values for the ``{since:...}`` / ``{until:...}`` placeholders."""
        return {"since": self.since, "until": self.until}


def missing_table(exc: Exception) -> bool:
    """True when ``exc`` says a table, database or column does not exist (yet)."""
    return isinstance(exc, DatabaseError) and bool(_MISSING.search(str(exc)))


def select(store: Store, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``sql`` as dicts; ``[]`` when a table it reads does not exist yet."""
    try:
        columns, rows = query_rows(store, sql, params)
    except DatabaseError as exc:
        if missing_table(exc):
            return []
        raise
    return [dict(zip(columns, row, strict=True)) for row in rows]


def paged(store: Store, sql: str, params: Mapping[str, Any], page: Page) -> dict[str, Any]:
    """``{"items", "limit", "offset", "next_offset"}``: one page of ``sql`` (no LIMIT in it)."""
    rows = select(store, sql + PAGE_SQL, {**params, **page.params()})
    more = len(rows) > page.limit
    return {"items": rows[:page.limit], "limit": page.limit, "offset": page.offset,
            "next_offset": page.offset + page.limit if more else None}


def _filters(conds: dict[str, tuple[str, Any]]) -> tuple[str, dict[str, Any]]:
    """`` AND col = {name:Type}`` for each given (not None/empty) filter value."""
    sql, params = "", {}
    for name, (clause, value) in conds.items():
        if value not in (None, ""):
            sql += f" AND {clause}"
            params[name] = value
    return sql, params


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
    where, extra = _filters({"service": ("service = {service:String}", service)})
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
    where, extra = _filters({"service": ("service = {service:String}", service)})
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
    where, extra = _filters({"service": ("(service = {service:String} OR "
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


def search_logs(store: Store, db: str, span: Span, page: Page, *, service: str | None = None,
                level: str | None = None, template_id: str | None = None,
                text: str | None = None) -> dict[str, Any]:
    """Log lines in ``span``, newest first, filtered by service, level, template and text."""
    where, extra = _filters({
        "service": ("service = {service:String}", service),
        "level": ("level = {level:String}", level.upper() if level else level),
        "template_id": ("template_id = {template_id:String}", template_id),
        "text": ("positionCaseInsensitive(message, {text:String}) > 0", text),
    })
    sql = (f"SELECT {LOG_COLUMNS} FROM {ident(db)}.logs WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def logs_by_template(store: Store, db: str, span: Span, page: Page, *,
                     service: str | None = None, level: str | None = None,
                     text: str | None = None) -> dict[str, Any]:
    """The search grouped by template: count, levels, first/last seen, one example."""
    where, extra = _filters({
        "service": ("service = {service:String}", service),
        "level": ("level = {level:String}", level.upper() if level else level),
        "text": ("positionCaseInsensitive(message, {text:String}) > 0", text),
    })
    sql = ("SELECT service, template_id, count() AS lines, groupUniqArray(level) AS levels, "
           "min(ts) AS first_seen, max(ts) AS last_seen, any(message) AS example "
           f"FROM {ident(db)}.logs WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}}{where} "
           "GROUP BY service, template_id ORDER BY lines DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def templates(store: Store, db: str, page: Page, *, service: str | None = None
              ) -> dict[str, Any]:
    """Known templates (latest revision), most frequent first."""
    where, extra = _filters({"service": ("service = {service:String}", service)})
    sql = ("SELECT service, template_id, template, category, priority, team, first_seen, "
           f"last_seen, count FROM {ident(db)}.templates FINAL WHERE 1{where} "
           "ORDER BY count DESC, template_id")
    return paged(store, sql, extra, page)


def template_events(store: Store, db: str, span: Span, page: Page, *,
                    service: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """New / spiking / vanished templates and explosions in ``span``, newest first."""
    where, extra = _filters({"service": ("service = {service:String}", service),
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
    where, extra = _filters({"service": ("service = {service:String}", service),
                             "variant": ("variant = {variant:String}", variant)})
    sql = ("SELECT event_id, ts, series, service, route, scope, feature, observed, expected, "
           "lo, hi, score, severity, detector, variant "
           f"FROM {ident(db)}.anomalies FINAL WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def changes(store: Store, db: str, span: Span, page: Page, *, service: str | None = None
            ) -> dict[str, Any]:
    """Deploys, config changes and the like in ``span``, newest first."""
    where, extra = _filters({"service": ("service = {service:String}", service)})
    sql = (f"SELECT ts, service, kind, description, event_id FROM {ident(db)}.changes FINAL "
           f"WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}}{where} ORDER BY ts DESC")
    return paged(store, sql, {**span.params(), **extra}, page)


def feedback(store: Store, db: str, span: Span, page: Page, *,
             target_kind: str | None = None) -> dict[str, Any]:
    """Verdicts people gave on alerts, anomalies and categories, newest first."""
    where, extra = _filters({"kind": ("target_kind = {kind:String}", target_kind)})
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
