"""Reads for the security page, the detectors' address book and ``rules test``: the
authentication events in the logs table, classified as ``schemas/auth_events.py`` does.

An auth event is a log row with a user id or address, or an http 401/403/429. A failure is
an outcome among the failure words, or no outcome and 401/403; a success an outcome among
the success words, or no outcome and 2xx/3xx.
"""

from __future__ import annotations

from typing import Any

from schemas.auth_events import (
    AUTH_STATUSES,
    FAILURE_WORDS,
    SUCCESS_WORDS,
    kind_pattern,
    kinds_before,
)
from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import TS, Span, ident, select


def _words(words: frozenset[str]) -> str:
    return ", ".join(f"'{w}'" for w in sorted(words))  # our own constants, no user input


_STATUSES = ", ".join(str(s) for s in sorted(AUTH_STATUSES))
IS_AUTH = f"(user_id != '' OR user_ip != '' OR http_status IN ({_STATUSES}))"
IS_FAILURE = (f"(lower(user_outcome) IN ({_words(FAILURE_WORDS)}) OR (user_outcome = '' AND "
              "http_status IN (401, 403)))")
IS_SUCCESS = (f"(lower(user_outcome) IN ({_words(SUCCESS_WORDS)}) OR (user_outcome = '' AND "
              "http_status BETWEEN 200 AND 399))")
IS_PRIVILEGE = f"match(user_action, '{kind_pattern('privilege_change')}')"
_ACTION = "if(user_action != '', user_action, http_route)"
IS_LOGIN = "(" + " AND ".join(
    [f"NOT match({_ACTION}, '{kind_pattern(k)}')" for k in kinds_before("login")]
    + [f"match({_ACTION}, '{kind_pattern('login')}')"]) + ")"
_SPAN = f"ts >= {{since:{TS}}} AND ts < {{until:{TS}}}"


def failures_by_address(store: Store, db: str, span: Span, limit: int = 50
                        ) -> list[dict[str, Any]]:
    """Addresses with the most failed logins in ``span``: failures, distinct users, last."""
    sql = ("SELECT user_ip AS ip, count() AS failures, uniqExact(user_id) AS users, "
           "groupUniqArray(5)(user_id) AS sample_users, max(ts) AS last "
           f"FROM {ident(db)}.logs WHERE {_SPAN} AND user_ip != '' AND {IS_FAILURE} "
           f"AND {IS_LOGIN} GROUP BY ip ORDER BY failures DESC, ip LIMIT {int(limit)}")
    return select(store, sql, span.params())


def failures_by_user(store: Store, db: str, span: Span, limit: int = 50
                     ) -> list[dict[str, Any]]:
    """Users with the most failed logins in ``span``: failures, distinct addresses, last."""
    sql = ("SELECT user_id AS user, count() AS failures, uniqExact(user_ip) AS addresses, "
           "groupUniqArray(5)(user_ip) AS sample_addresses, max(ts) AS last "
           f"FROM {ident(db)}.logs WHERE {_SPAN} AND user_id != '' AND {IS_FAILURE} "
           f"AND {IS_LOGIN} GROUP BY user ORDER BY failures DESC, user LIMIT {int(limit)}")
    return select(store, sql, span.params())


def new_addresses(store: Store, db: str, span: Span, history_days: int = 30,
                  limit: int = 100) -> list[dict[str, Any]]:
    """(user, address) pairs whose first successful login in ``history_days`` is in ``span``."""
    sql = ("SELECT user_id AS user, user_ip AS ip, min(ts) AS first_seen, count() AS logins "
           f"FROM {ident(db)}.logs WHERE ts >= {{until:{TS}}} - toIntervalDay({int(history_days)}) "
           f"AND ts < {{until:{TS}}} AND user_id != '' AND user_ip != '' AND {IS_SUCCESS} "
           f"AND {IS_LOGIN} GROUP BY user, ip HAVING first_seen >= {{since:{TS}}} "
           f"ORDER BY first_seen DESC LIMIT {int(limit)}")
    return select(store, sql, span.params())


def privilege_changes(store: Store, db: str, span: Span, limit: int = 100
                      ) -> list[dict[str, Any]]:
    """Role and permission changes in ``span``, newest first."""
    sql = ("SELECT ts, service, user_id AS user, user_ip AS ip, user_action AS action, "
           "user_outcome AS outcome, message "
           f"FROM {ident(db)}.logs WHERE {_SPAN} AND {IS_PRIVILEGE} "
           f"ORDER BY ts DESC LIMIT {int(limit)}")
    return select(store, sql, span.params())


def open_security_alerts(store: Store, db: str, limit: int = 200) -> list[dict[str, Any]]:
    """Firing or acknowledged alerts labelled ``category: security``, newest first."""
    current = ("SELECT fingerprint, argMax(rule, (ts, version)) AS rule, "
               "argMax(state, (ts, version)) AS state, "
               "argMax(severity, (ts, version)) AS severity, "
               "argMax(service, (ts, version)) AS service, "
               "argMax(summary, (ts, version)) AS summary, "
               "argMax(labels, (ts, version)) AS labels, "
               "argMax(evidence, (ts, version)) AS evidence, "
               "argMax(starts_at, (ts, version)) AS starts_at, max(ts) AS updated_at "
               f"FROM {ident(db)}.alerts FINAL GROUP BY fingerprint")
    sql = (f"SELECT * FROM ({current}) WHERE state IN ('firing', 'acknowledged') "
           f"AND labels['category'] = 'security' ORDER BY starts_at DESC LIMIT {int(limit)}")
    return select(store, sql, {})


def known_addresses(store: Store, db: str, days: int = 30, limit: int = 1_000_000
                    ) -> list[tuple[str, str, int]]:
    """(user, address, last ms) of successful logins in the last ``days``: the detectors'
    address book at start."""
    sql = ("SELECT user_id AS user, user_ip AS ip, toUnixTimestamp64Milli(max(ts)) AS last "
           f"FROM {ident(db)}.logs WHERE ts >= now64(3) - toIntervalDay({int(days)}) "
           f"AND user_id != '' AND user_ip != '' AND {IS_SUCCESS} AND {IS_LOGIN} "
           f"GROUP BY user, ip ORDER BY last DESC LIMIT {int(limit)}")
    return [(str(r["user"]), str(r["ip"]), int(r["last"])) for r in select(store, sql, {})]


AUTH_EVENT_SQL = (
    "SELECT toUnixTimestamp64Milli(ts) AS ts, service, event_id, user_id, user_ip, "
    "user_action, user_outcome, http_method, http_route, http_status, message "
    "FROM {db}.logs WHERE ts >= now64(3) - toIntervalSecond({{since:UInt64}}) AND "
    + IS_AUTH.replace("{", "{{").replace("}", "}}") + " ORDER BY ts")


def auth_log_event(row: dict[str, Any]) -> tuple[dict[str, Any], str, int]:
    """A row of ``AUTH_EVENT_SQL`` as (normalised log event, route, status) for
    ``schemas.auth_events.auth_event``."""
    user = {k: str(row[c]) for k, c in (("id", "user_id"), ("ip", "user_ip"),
                                        ("action", "user_action"), ("outcome", "user_outcome"))
            if row.get(c)}
    e: dict[str, Any] = {"ts": int(row["ts"]), "service": str(row["service"]),
                         "message": str(row.get("message", ""))}
    if user:
        e["user"] = user
    route = f"{row.get('http_method') or ''} {row.get('http_route') or ''}".strip() \
        if row.get("http_route") else ""
    return e, route, int(row.get("http_status") or 0)
