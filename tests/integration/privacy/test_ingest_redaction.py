"""Redaction at ingest on the real broker and chDB: what lands (rows, dead letters, the
dead-letter topic) holds no PII, user fields are keyed hashes that still join, and the
per-rule counts reach /metrics and the redaction_counts table."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from prometheus_client import generate_latest

from privacy.redact import open_redactor
from privacy.settings import PrivacySettings
from schemas import topics
from sinks.clickhouse.client import Client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.settings import ClickHouseSettings
from streams.agents.ingest import IngestService
from streams.ingest import IngestProcessor
from streams.metrics import registry_for
from streams.runtime import open_runtime
from streams.settings import KafkaSettings, Settings, StreamSettings
from streams.topics import prepare_topics

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def settings(kafka_bootstrap: str, chdb_store: Client, tmp_path: Path) -> Iterator[Settings]:
    s = Settings(
        data_dir=tmp_path,
        kafka=KafkaSettings(bootstrap=kafka_bootstrap),
        clickhouse=ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:8]}", batch_rows=500,
                                      batch_seconds=0.2),
        stream=StreamSettings(app_id=f"it-{uuid.uuid4().hex[:8]}", window_grace_s=1.0,
                              batch_size=500),
        privacy=PrivacySettings(config_file=ROOT / "deploy/config/privacy.yaml"),
    )
    migrate(chdb_store, s.clickhouse)
    prepare_topics(s)
    start_at_the_end(kafka_bootstrap, f"{s.stream.app_id}-ingest", topics.INGEST_TOPICS)
    yield s
    chdb_store.command(f"DROP DATABASE IF EXISTS {s.clickhouse.database}")


def start_at_the_end(bootstrap: str, group: str, names: tuple[str, ...]) -> None:
    """Commit ``group``'s offsets at the end of ``names``: it reads only what comes after, not
    the lines earlier tests left on the shared topics (the counts below are exact)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    deadline = time.monotonic() + 30
    ends: list[TopicPartition] = []
    for name in names:
        while True:
            try:
                parts = c.list_topics(name, timeout=10).topics[name].partitions
                ends += [TopicPartition(name, p, c.get_watermark_offsets(
                    TopicPartition(name, p), timeout=10)[1]) for p in parts]
                break
            except KafkaException:  # no leader elected yet
                assert time.monotonic() < deadline, f"{name} has no leaders"
                time.sleep(0.2)
    c.commit(offsets=ends, asynchronous=False)
    c.close()


async def wait_until(check: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.3)


async def test_pii_never_lands(settings: Settings, chdb_store: Client,
                               kafka_bootstrap: str) -> None:
    service = f"shop-{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000) - 30_000
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(40):
        p.produce(topics.LOGS, orjson.dumps({
            "ts": now + i, "service": service, "level": "INFO", "event_id": f"{service}-{i}",
            "message": f"login for ann{i % 4}@example.com from 198.51.100.{i % 4} with "
                       f"Authorization: Bearer tok{i}abcdefghijkl card 4111 1111 1111 1111",
            "user": {"id": f"ann{i % 4}", "ip": f"198.51.100.{i % 4}", "action": "login",
                     "outcome": "success"},
            "attrs": {"phone": "+1 415 555 0100"}}), key=service)
    bad = (b'{"service": "' + service.encode() + b'", "message": '
           b'"no ts, mail bob@example.com"}')
    p.produce(topics.LOGS, bad, key=service)  # a dead letter
    assert p.flush(30) == 0

    redactor = open_redactor(settings.privacy, settings.data_dir)
    assert redactor is not None
    rt = open_runtime(settings, store=chdb_store)
    svc = IngestService(rt, IngestProcessor(grace_s=1.0, redact=redactor.event,
                                            redact_raw=redactor.raw), redactor=redactor)
    db = settings.clickhouse.database
    dl_from = rt.topics.dead_letters

    def count(sql: str) -> int:
        return int(chdb_store.query(sql, parameters={"s": service}).result_rows[0][0])

    await svc.start()
    try:
        await wait_until(lambda: count(f"SELECT count() FROM {db}.logs WHERE service = "
                                       "{s:String}") == 40 and count(
            f"SELECT count() FROM {db}.dead_letters WHERE key = {{s:String}}") == 1)
        text = generate_latest(registry_for(svc)).decode()
    finally:
        await svc.stop()  # hands over: the redaction counts are queued and written
        rt.close()
    rows = chdb_store.query(
        f"SELECT message, user_id, user_ip, attrs FROM {db}.logs WHERE service = {{s:String}} "
        "ORDER BY event_id", parameters={"s": service}).result_rows
    stored = repr(rows)
    for pii in ("@example.com", "198.51.100.", "tok1abcdefghijkl", "4111", "415 555", "ann1"):
        assert pii not in stored
    assert {r[1] for r in rows} == {redactor.hash(f"ann{k}") for k in range(4)}  # joinable
    msg = rows[0][0]
    assert "Bearer <bearer>" in msg and "<card>" in msg and "<email#" in msg
    raw, raw_size = chdb_store.query(
        f"SELECT raw, raw_size FROM {db}.dead_letters WHERE key = {{s:String}}",
        parameters={"s": service}, column_formats={"raw": "bytes"}).result_rows[0]
    assert b"bob@example.com" not in raw and b"<email#" in raw
    assert raw_size == len(bad) != len(raw)  # the size of what arrived, not of the copy
    # the dead-letter topic carries the redacted bytes too
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest"})
    c.subscribe([dl_from])
    found = None
    deadline = time.monotonic() + 60
    while found is None and time.monotonic() < deadline:
        for m in c.consume(100, timeout=1.0):
            if m.error() is None:
                got = base64.b64decode(orjson.loads(m.value())["raw"])
                if service.encode() in got:
                    found = got
    c.close()
    assert found is not None and b"bob@example.com" not in found
    assert 'logwarden_redactions_total{rule="email"} 41.0' in text
    assert 'logwarden_redactions_total{rule="user.id"} 40.0' in text
    counts = dict(chdb_store.query(
        f"SELECT rule, sum(count) FROM {db}.redaction_counts FINAL GROUP BY rule").result_rows)
    assert counts["email"] == 41 and counts["bearer"] == 40 and counts["card"] == 40
    assert counts["phone"] == 40 and counts["ipv4"] == 40 and counts["user.ip"] == 40
