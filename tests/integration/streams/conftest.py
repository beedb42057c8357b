"""A runtime (settings, writers, producer) on the session's broker and chDB, per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from sinks.clickhouse.client import Client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.settings import ClickHouseSettings
from streams.runtime import Runtime, open_runtime
from streams.settings import KafkaSettings, Settings, StreamSettings


@pytest.fixture
def make_runtime(kafka_bootstrap: str, chdb_store: Client
                 ) -> Iterator[Callable[[int], Runtime]]:
    """``make(partitions)``: a runtime with its own database and app id, closed after."""
    opened: list[tuple[Runtime, str]] = []

    def make(partitions: int) -> Runtime:
        s = Settings(kafka=KafkaSettings(bootstrap=kafka_bootstrap, partitions=partitions),
                     clickhouse=ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:8]}",
                                                   batch_seconds=0.1),
                     stream=StreamSettings(app_id=f"it-{uuid.uuid4().hex[:8]}"))
        migrate(chdb_store, s.clickhouse)
        rt = open_runtime(s, store=chdb_store)
        opened.append((rt, s.clickhouse.database))
        return rt

    yield make
    for rt, database in opened:
        rt.close()
        chdb_store.command(f"DROP DATABASE IF EXISTS {database}")
