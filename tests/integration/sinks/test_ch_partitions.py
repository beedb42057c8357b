"""Regression (#11): 150 log lines over 150 past days in one insert met ClickHouse's
"too many partitions for single INSERT block" (code 252), which the writer retried forever,
so the offsets never committed. Against real chDB: the block is split and every row lands."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from sinks.clickhouse import rows
from sinks.clickhouse.client import Client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.settings import ClickHouseSettings
from sinks.clickhouse.writer import BatchWriter

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(chdb_store: Client) -> Iterator[ClickHouseSettings]:
    # a year of retention: the 150 days are all kept (the ingest stage refuses lines older
    # than the retention; the writer must cope with any block anyway)
    s = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:8]}", ttl_logs_days=365)
    migrate(chdb_store, s)
    yield s
    chdb_store.command(f"DROP DATABASE IF EXISTS {s.database}")


def test_150_days_in_one_block_land_without_a_retry(chdb_store: Client,
                                                     settings: ClickHouseSettings) -> None:
    now_ms = int(time.time() * 1000)
    batch = [rows.log_row({"ts": now_ms - d * 86_400_000, "service": "old", "level": "INFO",
                           "message": f"day {d}", "attrs": {}}, f"old-{d}", 0, d, now_ms)
             for d in range(150)]
    rejected: list[object] = []
    w = BatchWriter(chdb_store, settings.database, "logs", rows.LOGS_COLUMNS,
                    batch_rows=1000, batch_seconds=60, json_rows=True,
                    on_rejected=lambda r, e: rejected.append((r, e)))
    try:
        w.add_many(batch)
        assert w.wait_flushed(0) is False  # not due yet: one block of 150 rows
        w.flush(timeout=60)
        stats = w.stats
    finally:
        w.close()
    assert rejected == [] and stats.retries == 0 and stats.rows_written == 150
    got = chdb_store.query(f"SELECT count(), uniqExact(toDate(ts)) FROM {settings.database}.logs"
                           ).result_rows[0]
    assert tuple(got) == (150, 150)
