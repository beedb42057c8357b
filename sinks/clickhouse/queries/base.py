"""Query foundations: identifiers, bound parameters, pages, time spans, missing tables.

Values are always bound as ClickHouse query parameters (``{name:Type}``), never formatted
into the SQL; only the database name, checked by ``ident``, is. Tables that other stages
create later (alerts, anomalies, ...) may be missing: a read of one returns no rows instead
of failing, so a page shows "no data yet" rather than an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError

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


def filters(conds: dict[str, tuple[str, Any]]) -> tuple[str, dict[str, Any]]:
    """`` AND col = {name:Type}`` for each given (not None/empty) filter value."""
    sql, params = "", {}
    for name, (clause, value) in conds.items():
        if value not in (None, ""):
            sql += f" AND {clause}"
            params[name] = value
    return sql, params
