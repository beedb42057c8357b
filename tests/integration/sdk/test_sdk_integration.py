"""The SDK and ``logwarden produce`` against a real broker: what arrives honours the contract."""

from __future__ import annotations

import gzip
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest
import structlog
import typer
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from typer.testing import CliRunner

from cli import produce
from schemas.logs import LogEvent
from schemas.metrics import MetricPoint
from schemas.topics import LOGS
from sdk.logging import KafkaLogHandler
from sdk.metrics import Metrics
from sdk.publisher import Publisher
from sdk.structlog import KafkaProcessor
from streams.settings import KafkaSettings

pytestmark = pytest.mark.integration


def new_topics(bootstrap: str, *names: str) -> list[str]:
    """Create uniquely named topics (2 partitions) and return their names."""
    suffix = uuid.uuid4().hex[:10]
    topics = [f"sdk-it.{name}.{suffix}" for name in names]
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=2, replication_factor=1) for t in topics])
    for f in futures.values():
        f.result(timeout=30)
    return topics


def ensure_topic(bootstrap: str, topic: str) -> None:
    """Create ``topic`` as the project would (settings' partition count) unless it exists."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        new = NewTopic(topic, num_partitions=KafkaSettings().partitions, replication_factor=1)
        try:
            admin.create_topics([new])[topic].result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def consume(bootstrap: str, topic: str, n: int, timeout: float = 30.0,
            start: dict[int, int] | None = None) -> list[Message]:
    """Read ``n`` messages of ``topic`` (from the start, or from ``start`` offsets)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sdk-it-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    if start is None:
        c.subscribe([topic])
    else:
        c.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        c.close()
    return out


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sdk-it-{uuid.uuid4().hex}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
    finally:
        c.close()


@pytest.fixture
def publisher(kafka_bootstrap: str) -> Iterator[Publisher]:
    p = Publisher(kafka_bootstrap, service="checkout")
    yield p
    p.close(10)


def test_logging_handler_events_arrive_with_the_contract_fields(
        kafka_bootstrap: str, publisher: Publisher) -> None:
    (topic,) = new_topics(kafka_bootstrap, "logs")
    log = logging.getLogger(f"it.{topic}")
    log.setLevel(logging.INFO)
    log.addHandler(KafkaLogHandler(publisher, topic=topic, env="test"))
    log.info("paid %d", 42, extra={"http": {"method": "POST", "status": 201}, "order": 7})
    try:
        raise ValueError("bad card")
    except ValueError:
        log.exception("charge failed", extra={"user": {"id": "u1", "outcome": "denied"}})
    assert publisher.flush(10) == 0
    msgs = consume(kafka_bootstrap, topic, 2)
    assert all(m.key() == b"checkout" for m in msgs)
    events = sorted((LogEvent.from_json(m.value()) for m in msgs), key=lambda e: e.level)
    assert [(e.level, e.message) for e in events] == [("ERROR", "charge failed"),
                                                      ("INFO", "paid 42")]
    err, info = events
    assert info.http is not None and info.http.status == 201 and info.attrs == {"order": 7}
    assert err.user is not None and err.user.outcome == "denied"
    assert "ValueError: bad card" in err.attrs["exception"]
    assert all(e.event_id and e.env == "test" and e.service == "checkout" for e in events)
    assert publisher.stats().delivered == 2


def test_structlog_processor_events_arrive(kafka_bootstrap: str, publisher: Publisher) -> None:
    (topic,) = new_topics(kafka_bootstrap, "structlog")
    log = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper("iso"),
                    KafkaProcessor(publisher, topic=topic), structlog.processors.JSONRenderer()])
    for i in range(3):
        log.warning("slow_query", table="orders", ms=100 + i, trace_id=f"t{i}")
    assert publisher.flush(10) == 0
    events = [LogEvent.from_json(m.value()) for m in consume(kafka_bootstrap, topic, 3)]
    assert sorted(e.trace_id or "" for e in events) == ["t0", "t1", "t2"]
    assert {(e.level, e.message, e.attrs["table"]) for e in events} == {
        ("WARN", "slow_query", "orders")}
    assert len({e.event_id for e in events}) == 3


def test_metrics_arrive_as_metric_points(kafka_bootstrap: str, publisher: Publisher) -> None:
    (topic,) = new_topics(kafka_bootstrap, "metrics")
    m = Metrics(publisher, topic=topic, background=False)
    m.counter("orders", {"region": "eu"}).inc(3)
    m.gauge("queue_depth").set(12)
    with m.timer("charge"):
        pass
    sent = m.flush()
    assert publisher.flush(10) == 0
    points = {p.series: p for p in (MetricPoint.from_json(msg.value())
                                    for msg in consume(kafka_bootstrap, topic, sent))}
    assert points["checkout/orders{region=eu}"].value == 3
    assert points["checkout/orders{region=eu}"].kind == "counter"
    assert points["checkout/queue_depth"].value == 12
    assert points["checkout/charge.count"].value == 1 and points["checkout/charge.p99"].unit == "ms"
    assert len(points) == sent == 8


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test root."""

    produce.register(app)
    return app


def test_produce_routes_mixed_topics_and_forwards_invalid_lines(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    default, other = new_topics(kafka_bootstrap, "default", "other")
    marker = uuid.uuid4().hex
    ensure_topic(kafka_bootstrap, LOGS)
    logs_start = end_offsets(kafka_bootstrap, LOGS)
    lines = [
        {"ts": 1_700_000_000_000, "service": "web", "level": "INFO", "message": "a"},
        {"topic": other, "ts": 1_700_000_000_000, "service": "db", "name": "cpu", "value": 1},
        {"topic": "logs", "ts": 1_700_000_000_000, "service": "web", "level": "INFO",
         "message": marker},
    ]
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(x) for x in lines[:2]) + b"\n{broken\n"
                    + orjson.dumps(lines[2]) + b"\n")
    result = CliRunner().invoke(cli(), ["produce", str(src), "--topic", default,
                                        "--bootstrap", kafka_bootstrap])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["sent"], summary["invalid"], summary["dropped"]) == (4, 1, 0)
    assert "line 3" in result.stderr

    got = sorted(m.value() for m in consume(kafka_bootstrap, default, 2))
    assert got == sorted([orjson.dumps(lines[0]), b"{broken"])
    (metric,) = consume(kafka_bootstrap, other, 1)
    assert metric.key() == b"db" and b'"topic"' not in metric.value()
    MetricPoint.from_json(metric.value())
    # The real logs topic may be shared with other tests: find our line by its marker.
    found = [m for m in consume(kafka_bootstrap, LOGS, 10**6, timeout=10, start=logs_start)
             if marker.encode() in m.value()]
    assert [LogEvent.from_json(m.value()).message for m in found] == [marker]


def test_produce_replays_a_gzipped_recording_as_if_it_were_recent(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """``--start-at now-1h`` on a recording from 2023 (a .gz file, as data sets ship): every
    ts moves by the same amount, so the first lands an hour ago and the spacing holds."""
    (topic,) = new_topics(kafka_bootstrap, "recording")
    first = 1_674_981_729_487
    lines = [{"ts": first + k * 61_000, "service": "svc", "level": "INFO", "message": f"m{k}"}
             for k in range(3)] + [{"ts": "2023-01-29T08:45:00Z", "service": "svc",
                                    "level": "INFO", "message": "iso"}]
    src = tmp_path / "rec.jsonl.gz"
    with gzip.open(src, "wb") as f:
        f.write(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    before = int(time.time() * 1000)
    result = CliRunner().invoke(cli(), ["produce", str(src), "--topic", topic,
                                        "--bootstrap", kafka_bootstrap, "--start-at", "now-1h"])
    assert result.exit_code == 0, result.output
    got = sorted((orjson.loads(m.value()) for m in consume(kafka_bootstrap, topic, 4)),
                 key=lambda e: e["message"])
    ts = {e["message"]: e["ts"] for e in got}
    assert abs(ts["m0"] - (before - 3_600_000)) < 60_000
    assert [ts[f"m{k}"] - ts["m0"] for k in range(3)] == [0, 61_000, 122_000]
    iso = round(datetime.fromisoformat("2023-01-29T08:45:00+00:00").timestamp() * 1000)
    assert ts["iso"] - ts["m0"] == iso - first
    bad = CliRunner().invoke(cli(), ["produce", str(src), "--start-at", "yesterday-ish"])
    assert bad.exit_code == 2 and "--start-at" in bad.output


def test_produce_throughput(kafka_bootstrap: str, tmp_path: Path) -> None:
    (topic,) = new_topics(kafka_bootstrap, "bench")
    n = 100_000
    src = tmp_path / "bench.jsonl"
    with src.open("wb") as f:
        for i in range(n):
            f.write(orjson.dumps({"ts": 1_700_000_000_000 + i, "service": f"svc-{i % 20}",
                                  "level": "INFO", "message": f"GET /item/{i} 200 in {i % 90} ms",
                                  "http": {"method": "GET", "status": 200}}) + b"\n")
    result = CliRunner().invoke(cli(), ["produce", str(src), "--topic", topic,
                                        "--bootstrap", kafka_bootstrap])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    print(f"logwarden produce: {summary['events_per_s']:,.0f} events/s")
    assert summary["sent"] == n and summary["events_per_s"] > 5_000
