"""Kafka faults against a real worker: the broker restarted mid-stream, and a stop while the
store is unreachable. Each test runs its own broker, so it can stop and restart it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from conftest import Worker, start_worker  # type: ignore[import-not-found]

from devstack.kafka import LocalKafka, local_kafka
from schemas import topics

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    with local_kafka(tmp_path / "kafka") as kafka:
        yield kafka


def produce(bootstrap: str, service: str, start: int, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                  "message.timeout.ms": 300_000})
    now = int(time.time() * 1000)
    for i in range(start, start + n):
        p.produce(topics.LOGS, json.dumps({
            "ts": now - 60_000 + i % 50_000, "service": service, "level": "INFO",
            "message": f"request {i} served", "event_id": f"{service}-{i}"}).encode(),
            key=service)
        p.poll(0)
    assert p.flush(120) == 0


def rows(w: Worker, service: str) -> tuple[int, int]:
    got = w.query("SELECT count(), uniqExact(event_id) FROM logwarden.logs "
                  "WHERE service = {s:String}", s=service)
    return int(got[0][0]), int(got[0][1])


def test_a_broker_restart_mid_stream_loses_and_duplicates_nothing(
        own_kafka: LocalKafka, tmp_path: Path) -> None:
    service = f"restart-{uuid.uuid4().hex[:6]}"
    w = start_worker(own_kafka.bootstrap, tmp_path / "worker", f"e2e-{uuid.uuid4().hex[:8]}")
    try:
        produce(own_kafka.bootstrap, service, 0, 3000)
        w.wait_for(lambda: rows(w, service)[0] > 0, what="the first rows")
        own_kafka.stop()  # the broker goes away mid-stream
        time.sleep(5)
        assert w.proc.poll() is None  # the worker rides it out
        own_kafka.start(timeout=180)
        produce(own_kafka.bootstrap, service, 3000, 3000)
        w.wait_for(lambda: rows(w, service) == (6000, 6000), timeout=240,
                   what="every row, once")
        w.wait_for(lambda: json.loads(w.get("/api/health"))["status"] == "ok", timeout=120,
                   what="health to be ok again")
    finally:
        w.stop()
    assert w.proc.returncode is not None


def test_a_worker_stops_on_sigterm_while_its_broker_is_gone(
        own_kafka: LocalKafka, tmp_path: Path) -> None:
    """Clients would wait out their own timeouts (a minute and more) for the lost broker;
    the worker exits within its grace period instead."""
    w = start_worker(own_kafka.bootstrap, tmp_path / "worker", f"e2e-{uuid.uuid4().hex[:8]}",
                     LOGWARDEN_STREAM_GRACE_S="10")
    produce(own_kafka.bootstrap, f"stuck-{uuid.uuid4().hex[:6]}", 0, 500)
    own_kafka.stop()
    started = time.monotonic()
    w.stop()  # SIGTERM, then kill -9 after 60 s: it must not need the kill
    took = time.monotonic() - started
    # grace 10 s; the harness kills at 60 s: a margin for a loaded machine, not a speed bound
    assert w.proc.returncode != -9 and took < 45, f"stopped after {took:.0f} s"
