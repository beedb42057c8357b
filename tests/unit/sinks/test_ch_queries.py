from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ch_fakes import FakeResult, FakeStore

from sinks.clickhouse.queries.base import column_defaults, ident
from sinks.clickhouse.queries.telemetry import count_logs


def test_user_values_are_bound_not_formatted() -> None:
    store = FakeStore(result=FakeResult(["count()"], [(7,)]))
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert count_logs(store, since, service="x' OR 1=1 --", database="lw") == 7
    sql, params = store.queries[0]
    assert "OR 1=1" not in sql and "{service:String}" in sql and "FROM lw.logs FINAL" in sql
    assert params == {"since": since, "service": "x' OR 1=1 --"}


def test_database_name_is_checked() -> None:
    with pytest.raises(ValueError):
        ident("lw.logs; DROP")


def test_column_defaults_follow_types() -> None:
    described = [("ts", "DateTime64(3, 'UTC')"), ("service", "LowCardinality(String)"),
                 ("status", "UInt16"), ("ok", "Nullable(UInt8)"), ("labels", "Map(String, String)")]
    assert column_defaults(described) == {"service": "", "status": 0, "ok": None, "labels": {}}
