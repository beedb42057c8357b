"""Reads of the pipeline itself: throughput, dead letters and usage.
"""

from __future__ import annotations

from typing import Any

from schemas.dead_letters import DeadLetter
from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import TS, Span, ident, query_rows, select


def recent_dead_letters(
    store: Store, limit: int = 100, *, stage: str | None = None, database: str = "logwarden"
) -> list[DeadLetter]:
    """The newest dead letters first, optionally for one stage."""
    where = "WHERE stage = {stage:String}" if stage is not None else ""
    sql = (
        "SELECT received_at, topic, partition, offset, stage, error, raw, raw_size, key "
        f"FROM {ident(database)}.dead_letters {where} "
        "ORDER BY received_at DESC LIMIT {limit:UInt32}"
    )
    params: dict[str, Any] = {"limit": limit}
    if stage is not None:
        params["stage"] = stage
    columns, rows = query_rows(store, sql, params, as_bytes=("raw",))
    return [DeadLetter(**dict(zip(columns, row, strict=True))) for row in rows]


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
