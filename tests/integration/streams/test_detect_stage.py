"""Detection through the real broker and chDB: windows in, anomalies out, state survives."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer

from schemas.windows import WindowStats
from sinks.clickhouse.client import Client
from streams.agents.categorise import read_compacted
from streams.agents.score_windows import STATE_CONFIG, DetectStage
from streams.kafka_local import ensure_topics
from streams.runtime import Runtime

pytestmark = pytest.mark.integration
T0 = int(time.time()) - 3600 * 2  # recent: the anomalies table has a TTL


@pytest.fixture
def runtime(make_runtime: Callable[[int], Runtime]) -> Runtime:
    return make_runtime(2)


def window(svc: str, i: int, error_rate: float) -> bytes:
    t = T0 + 10 * i
    return WindowStats(series=svc, service=svc, scope="service", window_s=10,
                       start=datetime.fromtimestamp(t - 10, UTC),
                       end=datetime.fromtimestamp(t, UTC), count=500,
                       rate_per_s=50.0 + i % 3, error_rate=error_rate,
                       p95=100.0 + i % 7, p99=150.0 + i % 5).to_json()


def through_broker(rt: Runtime, topic: str, values: list[bytes]) -> list[bytes]:
    """Produce to ``topic`` and read the same messages back (a real round trip)."""
    for v in values:
        rt.send(topic, v, key=b"k")
    rt.producer.flush(30)
    c = Consumer({"bootstrap.servers": rt.settings.kafka.bootstrap_servers(),
                  "group.id": f"it-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < len(values) and time.monotonic() < deadline:
        got += [m.value() or b"" for m in c.consume(500, 1.0) if m.error() is None]
    c.close()
    return got


def test_windows_in_anomalies_out_and_state_restores(runtime: Runtime,
                                                     chdb_store: Client) -> None:
    svc, topic = f"svc-{uuid.uuid4().hex[:6]}", f"it-windows-{uuid.uuid4().hex[:6]}"
    state_topic = f"it-detector-state-{uuid.uuid4().hex[:6]}"
    bootstrap = runtime.settings.kafka.bootstrap_servers()
    ensure_topics(bootstrap, {topic: 1})
    ensure_topics(bootstrap, {state_topic: 2}, STATE_CONFIG)
    calm = [window(svc, i, 0.01 * (i % 2)) for i in range(300)]
    stage = DetectStage(runtime, state_topic)
    assert stage.on_windows(through_broker(runtime, topic, calm)) == []
    assert stage.save() == 1
    runtime.producer.flush(30)

    restarted = DetectStage(runtime, state_topic)  # a new worker: state from the topic only
    assert restarted.load(read_compacted(bootstrap, state_topic, f"it-{svc}", 30)) == 1
    burst = [window(svc, 300, 0.4)]
    first = [a for a in stage.on_windows(burst) if a.detector == "series"]
    again = [a for a in restarted.on_windows(burst) if a.detector == "series"]
    assert [a.feature for a in again] == ["error_rate"]  # warm: no new warm-up
    assert [a.model_dump() for a in again] == [a.model_dump() for a in first]

    assert restarted.on_feedback(again[0].id, "false")
    assert restarted.scorer.states[svc].adj["champion"] == 1.0
    db = runtime.settings.clickhouse.database
    for w in ("anomalies", "detector_quality"):
        runtime.writers[w].flush()
    rows = chdb_store.query(f"SELECT feature, severity, variant FROM {db}.anomalies "
                            f"WHERE service = '{svc}' AND detector = 'series'").result_rows
    assert rows == [("error_rate", "critical", "champion")]
    quality = chdb_store.query(f"SELECT false_count, precision FROM {db}.detector_quality "
                               f"WHERE series = '{svc}'").result_rows
    assert quality == [(1, 0.0)]
