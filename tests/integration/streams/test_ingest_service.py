"""The ingest stage against the real broker and chDB: rows land once, windows are
published, and a ClickHouse outage mid-stream loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from schemas import topics
from sinks.clickhouse.client import Client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.settings import ClickHouseSettings
from streams.agents.ingest import IngestService
from streams.ingest import IngestProcessor
from streams.runtime import open_runtime
from streams.settings import KafkaSettings, Settings, StreamSettings
from streams.topics import prepare_topics

pytestmark = pytest.mark.integration


class OutageStore:
    """The real store, but inserts fail while ``down`` is set (chDB cannot be stopped)."""

    def __init__(self, inner: Client) -> None:
        self.inner = inner
        self.down = False
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _guard(self) -> None:
        if self.down:
            self.refused += 1
            raise OperationalError("Connection refused: ClickHouse is down")

    def insert(self, *a: Any, **k: Any) -> Any:
        self._guard()
        return self.inner.insert(*a, **k)

    def raw_insert(self, *a: Any, **k: Any) -> Any:
        self._guard()
        return self.inner.raw_insert(*a, **k)


@pytest.fixture
def settings(kafka_bootstrap: str, chdb_store: Client) -> Iterator[Settings]:
    s = Settings(
        kafka=KafkaSettings(bootstrap=kafka_bootstrap),
        clickhouse=ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:8]}", batch_rows=500,
                                      batch_seconds=0.2),
        stream=StreamSettings(app_id=f"it-{uuid.uuid4().hex[:8]}", window_grace_s=1.0,
                              batch_size=500),
    )
    migrate(chdb_store, s.clickhouse)
    prepare_topics(s)
    yield s
    chdb_store.command(f"DROP DATABASE IF EXISTS {s.clickhouse.database}")


def end_offsets(bootstrap: str, topic: str) -> list[TopicPartition]:
    """Where each partition of ``topic`` ends now (waiting out a just-created topic)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    deadline = time.monotonic() + 30
    while True:
        try:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            if parts:
                out = [TopicPartition(topic, p, c.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=10)[1]) for p in parts]
                break
        except KafkaException:  # no leader elected yet
            pass
        assert time.monotonic() < deadline, f"{topic} has no leaders"
        time.sleep(0.2)
    c.close()
    return out


def produce(bootstrap: str, service: str, n: int, start_ms: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        p.produce(topics.LOGS, orjson.dumps({
            "ts": start_ms + i * 10, "service": service, "level": "ERROR" if i % 5 else "INFO",
            "message": f"request {i} failed", "event_id": f"{service}-{i}",
            "http": {"method": "GET", "route": "/r", "status": 500, "duration_ms": 5.0}}),
            key=service)
    assert p.flush(30) == 0


def count(store: Client, db: str, service: str) -> tuple[int, int]:
    row = store.query(f"SELECT count(), uniqExact(event_id) FROM {db}.logs "
                      "WHERE service = {s:String}", parameters={"s": service}).result_rows[0]
    return int(row[0]), int(row[1])


async def wait_until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def run_service(s: Settings, store: Any) -> tuple[IngestService, Any]:
    rt = open_runtime(s, store=store)
    svc = IngestService(rt, IngestProcessor(grace_s=s.stream.window_grace_s))
    await svc.start()
    return svc, rt


async def test_rows_land_once_and_windows_are_published(
        settings: Settings, chdb_store: Client, kafka_bootstrap: str) -> None:
    service = f"it-{uuid.uuid4().hex[:8]}"
    start_ms = (int(time.time() * 1000) - 120_000) // 10_000 * 10_000
    windows_topic = topics.internal(settings.stream.app_id).windows  # this app id's own
    windows_from = end_offsets(kafka_bootstrap, windows_topic)
    produce(kafka_bootstrap, service, 1000, start_ms)  # 10 s of events
    svc, rt = await run_service(settings, chdb_store)
    try:
        db = settings.clickhouse.database
        await wait_until(lambda: count(chdb_store, db, service) == (1000, 1000))
        await wait_until(lambda: chdb_store.query(
            f"SELECT count() FROM {db}.windows WHERE service = {{s:String}}",
            parameters={"s": service}).result_rows[0][0] >= 4)
    finally:
        await svc.stop()
        rt.close()
    rows = chdb_store.query(
        f"SELECT series, window_s, count, error_count FROM {db}.windows FINAL "
        "WHERE service = {s:String} ORDER BY series, window_s", parameters={"s": service})
    assert [tuple(r) for r in rows.result_rows] == [
        (service, 10, 1000, 800), (service, 60, 1000, 800),
        (f"{service} GET /r", 10, 1000, 800), (f"{service} GET /r", 60, 1000, 800)]
    # the windows also went to the windows topic, keyed by series
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex})
    c.assign(windows_from)
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        for msg in c.consume(1000, timeout=1.0):
            if msg.error() is None and msg.key().decode().startswith(service):
                seen.add(orjson.loads(msg.value())["series"])
    c.close()
    assert seen == {service, f"{service} GET /r"}


async def test_clickhouse_outage_loses_and_duplicates_nothing(
        settings: Settings, chdb_store: Client, kafka_bootstrap: str) -> None:
    service = f"out-{uuid.uuid4().hex[:8]}"
    store = OutageStore(chdb_store)
    db = settings.clickhouse.database
    svc, rt = await run_service(settings, store)
    try:
        produce(kafka_bootstrap, service, 500, int(time.time() * 1000) - 60_000)
        await wait_until(lambda: count(chdb_store, db, service)[0] == 500)
        store.down = True  # ClickHouse goes away in the middle of the stream
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(500, 2000):
            p.produce(topics.LOGS, orjson.dumps({
                "ts": int(time.time() * 1000) - 30_000, "service": service, "level": "INFO",
                "message": "m", "event_id": f"{service}-{i}"}), key=service)
        p.flush(30)
        await wait_until(lambda: store.refused >= 3)
        assert count(chdb_store, db, service)[0] == 500  # nothing got through meanwhile
        store.down = False
        await wait_until(lambda: count(chdb_store, db, service)[0] >= 2000, timeout=90)
    finally:
        await svc.stop()
        rt.close()
    assert count(chdb_store, db, service) == (2000, 2000)


async def test_a_second_worker_takes_partitions_over_without_loss_or_duplicates(
        settings: Settings, chdb_store: Client, kafka_bootstrap: str) -> None:
    """A rebalance mid-stream: the first worker hands its revoked partitions over (windows,
    rows landed, offsets committed) and the second goes on from there; both measure lag."""
    run = uuid.uuid4().hex[:6]
    before = [f"rb-{run}-a{i}" for i in range(16)]  # 16 keys: every partition gets some
    after = [f"rb-{run}-b{i}" for i in range(16)]
    start_ms = (int(time.time() * 1000) - 120_000) // 10_000 * 10_000
    for service in before:
        produce(kafka_bootstrap, service, 100, start_ms)
    db = settings.clickhouse.database

    def landed(services: list[str]) -> list[tuple[int, int]]:
        return [count(chdb_store, db, s) for s in services]

    a, rt_a = await run_service(settings, chdb_store)
    try:
        await wait_until(lambda: any(n for n, _ in landed(before)))
        b, rt_b = await run_service(settings, chdb_store)  # same group: a rebalance
        try:
            await wait_until(lambda: bool(a.assigned) and bool(b.assigned))
            assert not a.assigned & b.assigned
            for service in after:
                produce(kafka_bootstrap, service, 100, start_ms + 1000)
            await wait_until(lambda: landed(before + after) == [(100, 100)] * 32, timeout=120)
            await wait_until(lambda: bool(a.lag) and bool(b.lag))
        finally:
            await b.stop()
            rt_b.close()
    finally:
        await a.stop()
        rt_a.close()
    assert a.batches > 0 and b.batches > 0
    assert not set(a.lag) & set(b.lag)  # each owns its own partitions
