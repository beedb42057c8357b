"""Reads of the compliance report: access from the audit table, redaction counts,
retention per table, dead letters by stage, alert handling with severities."""

from __future__ import annotations

import re
from typing import Any

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import TS, Span, ident, select

_TTL = re.compile(r"toDateTime\((\w+)\)\s*\+\s*toIntervalDay\((\d+)\)")


def access(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Audited actions per actor, role and action: how many, how many refused (4xx/5xx or
    refused), first and last."""
    sql = ("SELECT actor, role, action, count() AS n, "
           "countIf(outcome NOT IN ('ok', 'loaded') AND NOT startsWith(outcome, '2')) "
           "AS refused, min(ts) AS first, max(ts) AS last "
           f"FROM {ident(db)}.audit WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
           "GROUP BY actor, role, action ORDER BY actor, role, n DESC")
    return select(store, sql, span.params())


def redactions(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Matches per privacy rule in ``span`` (every worker's counts added up)."""
    sql = ("SELECT rule, sum(count) AS matches, uniqExact(writer) AS workers "
           f"FROM {ident(db)}.redaction_counts FINAL WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}} GROUP BY rule ORDER BY matches DESC")
    return select(store, sql, span.params())


def retention(store: Store, db: str) -> list[dict[str, Any]]:
    """Per table: its TTL (days, on which column), rows kept, the oldest kept, and rows
    past the TTL still stored (they go at the next merge of their part)."""
    tables = select(store, "SELECT name, engine_full FROM system.tables WHERE database = "
                    "{db:String} AND engine LIKE '%MergeTree' ORDER BY name", {"db": db})
    out = []
    for t in tables:
        name = str(t["name"])
        m = _TTL.search(str(t["engine_full"]))
        row: dict[str, Any] = {"table": name, "ttl_days": int(m[2]) if m else None,
                               "column": m[1] if m else ""}
        if m:
            col = ident(m[1])
            got = select(store, f"SELECT count() AS rows, min({col}) AS oldest, "
                         f"countIf(toDateTime({col}) < now() - toIntervalDay({int(m[2])})) "
                         f"AS past_ttl FROM {ident(db)}.{ident(name)}", {})
            row.update(got[0] if got else {})
        else:
            got = select(store, f"SELECT count() AS rows FROM {ident(db)}.{ident(name)}", {})
            row.update({"rows": got[0]["rows"] if got else 0, "oldest": None, "past_ttl": 0})
        out.append(row)
    return out


def dead_letters_by_stage(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Dead letters per stage in ``span``: count, first, last and one error."""
    sql = ("SELECT stage, count() AS n, min(received_at) AS first, max(received_at) AS last, "
           "any(error) AS example_error "
           f"FROM {ident(db)}.dead_letters WHERE received_at >= {{since:{TS}}} "
           f"AND received_at < {{until:{TS}}} GROUP BY stage ORDER BY n DESC")
    return select(store, sql, span.params())


def alert_handling(store: Store, db: str, span: Span) -> list[dict[str, Any]]:
    """Per alert fired in ``span``: severity, rule, service, fired / acked / resolved."""
    sql = ("SELECT fingerprint, any(rule) AS rule, any(service) AS service, "
           "argMax(severity, ts) AS severity, minIf(ts, state = 'firing') AS fired_at, "
           "minIf(ts, state = 'acknowledged') AS acked_at, "
           "minIf(ts, state = 'resolved') AS resolved_at, max(suppressed) AS suppressed "
           f"FROM {ident(db)}.alerts FINAL WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
           "GROUP BY fingerprint HAVING countIf(state = 'firing') > 0 ORDER BY fired_at "
           "LIMIT 10000")
    return select(store, sql, span.params())
