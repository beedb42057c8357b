"""The ClickHouse sink against real chDB. chDB hosts one data directory per process, so all
tests share one module-scoped directory and each test gets its own database."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from sinks.clickhouse.client import Client
from sinks.clickhouse.migrate import load_migrations, migrate
from sinks.clickhouse.queries.base import query_rows, table_columns
from sinks.clickhouse.queries.pipeline import recent_dead_letters
from sinks.clickhouse.queries.telemetry import count_logs, windows_for
from sinks.clickhouse.settings import ClickHouseSettings
from sinks.clickhouse.writer import RetryPolicy, TableInserter, open_writer, truncate_raw

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def data_dir(chdb_dir: Path) -> Path:
    return chdb_dir


@pytest.fixture
def client(chdb_store: Client) -> Client:
    return chdb_store


@pytest.fixture
def settings(client: Client) -> Iterator[ClickHouseSettings]:
    s = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:10]}", batch_rows=1000)
    migrate(client, s)
    yield s
    client.command(f"DROP DATABASE IF EXISTS {s.database}")


def log_row(i: int, **over: Any) -> dict[str, Any]:
    row = {"ts": NOW + timedelta(milliseconds=i), "service": f"svc{i % 3}", "level": "INFO",
           "message": f"line {i}", "event_id": f"ev{i}", "ingested_at": NOW, "kafka_offset": i}
    return row | over


def raw_count(client: Client, db: str, table: str = "logs") -> int:
    return int(client.query(f"SELECT count() FROM {db}.{table}").result_rows[0][0])


def logs_inserter(client: Any, s: ClickHouseSettings, **kw: Any) -> tuple[TableInserter, Any]:
    described = table_columns(client, s.database, "logs")
    from sinks.clickhouse.queries.base import column_defaults

    defaults = column_defaults(described)
    names = [n for n, _ in described]
    ins = TableInserter(client, s.database, "logs", names, **kw)
    return ins, lambda d: tuple(d.get(c, defaults.get(c)) for c in names)


def test_migrate_twice_is_a_no_op(client: Client, settings: ClickHouseSettings) -> None:
    assert migrate(client, settings) == []
    _, rows = query_rows(client, "SELECT name FROM system.tables WHERE database = {db:String}",
                         {"db": settings.database})
    assert {"logs", "metric_points", "windows", "dead_letters", "changes", "feedback",
            "schema_migrations"} <= {r[0] for r in rows}
    # one row per migration file, each applied once
    assert raw_count(client, settings.database, "schema_migrations") == len(load_migrations())


def test_same_batch_twice_with_same_token_keeps_one_copy(
    client: Client, settings: ClickHouseSettings
) -> None:
    ins, tup = logs_inserter(client, settings)
    batch = [tup(log_row(i)) for i in range(50)]
    assert ins.write(batch) == 50
    assert ins.write(batch) == 50  # ClickHouse acknowledges and drops the repeat
    assert raw_count(client, settings.database) == 50


def test_duplicate_event_ids_collapse_with_final(
    client: Client, settings: ClickHouseSettings
) -> None:
    ins, tup = logs_inserter(client, settings)
    ins.write([tup(log_row(i)) for i in range(0, 20)])
    ins.write([tup(log_row(i)) for i in range(10, 30)])  # other batch, ten repeated events
    assert raw_count(client, settings.database) == 40
    assert count_logs(client, NOW - timedelta(seconds=1), database=settings.database) == 30


def test_bad_row_is_split_out_to_on_rejected(client: Client, settings: ClickHouseSettings) -> None:
    rejected: list[tuple[Any, ...]] = []
    ins, tup = logs_inserter(client, settings, on_rejected=lambda rs, e: rejected.extend(rs))
    batch = [tup(log_row(i)) for i in range(64)]
    batch[17] = tup(log_row(17, http_status=70000))  # does not fit UInt16
    assert ins.write(batch) == 63
    assert [r[9] for r in rejected] == ["ev17"]
    assert count_logs(client, NOW - timedelta(seconds=1), database=settings.database) == 63


class FlakyStore:
    """The real client, but the first ``failures`` inserts fail; ``landed`` ones land first."""

    def __init__(self, client: Client, failures: int, *, landed: bool = False) -> None:
        self.client, self.failures, self.landed = client, failures, landed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            if self.landed:  # the insert worked but its answer was lost
                self.client.insert(*args, **kwargs)
            raise OperationalError("connection reset by peer")
        return self.client.insert(*args, **kwargs)


@pytest.mark.parametrize("landed", [False, True])
def test_outage_is_retried_without_loss_or_duplicates(
    client: Client, settings: ClickHouseSettings, landed: bool
) -> None:
    store = FlakyStore(client, failures=3, landed=landed)
    writer = open_writer(store, settings, "logs", retry=RetryPolicy(initial_s=0.01))
    with writer:
        writer.add_many(log_row(i) for i in range(2500))
        assert writer.flush(timeout=60) == 2500
    assert writer.stats.retries == 3 and writer.stats.batches == 3
    assert raw_count(client, settings.database) == 2500  # no duplicate even without FINAL


def test_dead_letters_keep_binary_raw_and_windows_keep_latest_revision(
    client: Client, settings: ClickHouseSettings
) -> None:
    raw, size = truncate_raw(b"\xff\x00not json", limit=5)
    with open_writer(client, settings, "dead_letters") as dl:
        dl.add({"received_at": NOW, "topic": "logwarden.logs.v1", "partition": 1, "offset": 7,
                "stage": "ingest", "error": "bad json", "raw": raw, "raw_size": size})
        dl.flush(timeout=30)
    [letter] = recent_dead_letters(client, database=settings.database, stage="ingest")
    assert (letter.offset, letter.raw, letter.raw_size, letter.error) == (
        7, b"\xff\x00not", 10, "bad json")
    with open_writer(client, settings, "windows") as w:
        for revision, count in ((0, 5), (1, 6)):
            w.add({"series": "svc0", "service": "svc0", "scope": "service", "window_s": 60,
                   "start": NOW, "end": NOW + timedelta(seconds=60), "count": count,
                   "revision": revision, "emitted_at": NOW})
            w.flush(timeout=30)
    [window] = windows_for(client, "svc0", 60, NOW - timedelta(hours=1), database=settings.database)
    assert (window["count"], window["revision"]) == (6, 1)


def test_second_process_gets_a_clear_error(client: Client, data_dir: Path) -> None:
    code = (
        "from sinks.clickhouse.client import connect, StoreLockedError\n"
        "from sinks.clickhouse.settings import ClickHouseSettings\n"
        f"try:\n    connect(ClickHouseSettings(), {str(data_dir)!r})\n"
        "except StoreLockedError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "is open in another process" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("column_oriented", [False, True])
def test_insert_rate_logs_20k(
    client: Client, settings: ClickHouseSettings, column_oriented: bool
) -> None:
    ins, tup = logs_inserter(client, settings, column_oriented=column_oriented)
    ms = int(NOW.timestamp() * 1000)  # epoch-ms ints skip a per-value datetime conversion
    rates = []
    for b in range(5):
        batch = [tup(log_row(b * 20000 + i, ts=ms + i, ingested_at=ms, http_route="/api/v1/x",
                             attrs='{"k": 1}')) for i in range(20000)]
        started = time.perf_counter()
        ins.write(batch)
        rates.append(20000 / (time.perf_counter() - started))
    print(f"\nlogs insert column_oriented={column_oriented}: "
          f"median {sorted(rates)[2]:.0f} rows/s, best {max(rates):.0f} rows/s")
    assert raw_count(client, settings.database) == 100000
