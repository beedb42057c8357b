"""A real local broker: start it once, use it with confluent_kafka, stop it."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from devstack.kafka import LocalKafka, free_port_pair
from schemas.errors import SetupError
from streams.topics import KafkaUnavailable, ensure_topics, wait_for_kafka

pytestmark = pytest.mark.integration

START_S: dict[str, float] = {}


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    k = LocalKafka(tmp_path_factory.mktemp("kafka"), port=free_port_pair())
    k.ensure_jars()  # a cold Maven fetch is not part of the start time
    t0 = time.monotonic()
    k.start(timeout=120)
    START_S["cold"] = time.monotonic() - t0
    print(f"\nlocal Kafka: format + start in {START_S['cold']:.1f} s")
    yield k
    k.stop()


def test_started_broker_is_running_and_healthy(kafka: LocalKafka) -> None:
    s = kafka.status()
    assert s.running and s.healthy
    assert s.pid is not None and kafka.pid_file.read_text().strip() == str(s.pid)
    assert s.bootstrap == kafka.bootstrap
    assert START_S["cold"] < 60
    # broker logs go to the file, and it says it started
    assert "started" in kafka.log_file.read_text().lower()


def test_start_again_returns_the_running_broker(kafka: LocalKafka) -> None:
    before = kafka.status().pid
    t0 = time.monotonic()
    assert kafka.start().pid == before
    assert time.monotonic() - t0 < 10


def test_produce_and_consume_one_message(kafka: LocalKafka) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(kafka.bootstrap, {topic: 3}, {"retention.ms": "3600000"}) == [topic]
    assert ensure_topics(kafka.bootstrap, {topic: 3}) == []  # already there: no error
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    p.produce(topic, key=b"svc", value=b'{"hello": 1}')
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest"})
    try:
        assert len(c.list_topics(topic, timeout=10).topics[topic].partitions) == 3
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        msg = None
        while msg is None and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                msg = m
        assert msg is not None, "no message consumed within 30 s"
        assert (msg.key(), msg.value()) == (b"svc", b'{"hello": 1}')
    finally:
        c.close()


def test_wait_for_kafka_times_out_on_a_dead_address() -> None:
    t0 = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="within 2 s"):
        wait_for_kafka(f"127.0.0.1:{free_port_pair()}", timeout=2)
    assert time.monotonic() - t0 < 6


def test_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        k = LocalKafka(tmp_path / "kafka", port=int(squatter.getsockname()[1]))
        with pytest.raises(SetupError, match="taken by another program"):
            k.start(timeout=10)


def test_broker_that_dies_reports_its_log(tmp_path: Path) -> None:
    k = LocalKafka(tmp_path / "kafka", port=free_port_pair(), heap="not-a-size")
    with pytest.raises(SetupError, match="did not come up") as e:
        k.start(timeout=30)
    assert "Invalid maximum heap size" in str(e.value)
    assert k.pid() is None and not k.pid_file.exists()


def test_stop_ends_the_process(kafka: LocalKafka) -> None:
    pid = kafka.status().pid
    assert pid is not None
    assert kafka.stop(timeout=30) is True
    assert not Path(f"/proc/{pid}").exists()
    assert not kafka.pid_file.exists()
    s = kafka.status()
    assert not s.running and not s.healthy
    assert kafka.stop() is False
