"""Typed reads: the API, dashboards and reports query ClickHouse only through these functions.

Values are always bound as ClickHouse query parameters (``{name:Type}``), never formatted
into the SQL; only the database name, checked to be a plain identifier, is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from schemas.dead_letters import DeadLetter
from sinks.clickhouse.client import Store

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """``name`` if it is a plain identifier (database, table), else ValueError."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain identifier")
    return name


def query_rows(
    store: Store,
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    as_bytes: Sequence[str] = (),
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` with ``{name:Type}`` placeholders bound from ``params``: (columns, rows).

    Columns named in ``as_bytes`` come back as ``bytes`` instead of decoded text.
    """
    formats: dict[str, str | dict[str, str]] = {name: "bytes" for name in as_bytes}
    result = store.query(sql, parameters=dict(params or {}), column_formats=formats or None)
    return list(result.column_names), [tuple(r) for r in result.result_rows]


def table_columns(store: Store, database: str, table: str) -> list[tuple[str, str]]:
    """(name, type) of a table's columns in insert order."""
    _, rows = query_rows(
        store,
        "SELECT name, type FROM system.columns WHERE database = {db:String} "
        "AND table = {table:String} ORDER BY position",
        {"db": database, "table": table},
    )
    return [(str(name), str(kind)) for name, kind in rows]


def column_default(kind: str) -> Any:
    """The value a missing optional field takes: '' for strings, 0, None, {}; dates have none."""
    if kind.startswith("Nullable("):
        return None
    inner = kind.removeprefix("LowCardinality(").rstrip(")") if kind.startswith("Low") else kind
    if inner in ("String", "UUID") or inner.startswith("FixedString"):
        return ""
    if inner.startswith(("UInt", "Int", "Float", "Decimal", "Bool")):
        return 0
    if inner.startswith("Map("):
        return {}
    if inner.startswith("Array("):
        return []
    raise KeyError(kind)  # DateTime and the like: the caller must give a value


def column_defaults(columns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Defaults for every column that has one (see ``column_default``)."""
    out: dict[str, Any] = {}
    for name, kind in columns:
        try:
            out[name] = column_default(kind)
        except KeyError:
            continue
    return out


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
