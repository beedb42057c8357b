"""Detection through the real broker and chDB: windows in, anomalies out, state survives."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer

from detectors.detection_settings import BudgetSettings, VariantConfig
from schemas.windows import WindowStats
from sinks.clickhouse.client import Client
from sinks.clickhouse.ops_queries import detector_quality, verdict_history
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


def test_the_budget_steers_every_worker_alike_from_the_stored_verdicts(
        make_runtime: Callable[[int], Runtime], chdb_store: Client) -> None:
    rt = make_runtime(1)
    db, now = rt.settings.clickhouse.database, datetime.now(UTC)
    # 40 judged anomalies of the champion's series detector, 4 of them false (10 %), one
    # judged twice (its last verdict counts); hst only confirmed; one incident reported missed
    anomalies = [[f"an-{k}", now, f"svc {k}", "svc", "series" if k < 40 else "hst",
                  "champion"] for k in range(45)]
    feedback = [[now - timedelta(minutes=60 - k), "anomaly", f"an-{k}",
                 "false" if k % 10 == 0 and k < 40 else "true", f"f{k}"] for k in range(45)]
    feedback.append([now, "anomaly", "an-1", "false", "f-again"])
    feedback.append([now - timedelta(minutes=1), "anomaly", "an-1", "true", "f-before"])
    feedback.append([now, "incident", "INC-7", "missed", "f-missed"])
    chdb_store.insert("anomalies", anomalies, database=db, column_names=[
        "event_id", "ts", "series", "service", "detector", "variant"])
    chdb_store.insert("feedback", feedback, database=db, column_names=[
        "ts", "target_kind", "target_id", "verdict", "event_id"])

    history = verdict_history(rt.store, db, 1000)
    assert len(history) == 46 and history[-1]["verdict"] in ("false", "missed")
    stage, other = DetectStage(rt), DetectStage(rt)
    offsets = stage.calibrate(history)
    assert offsets == other.calibrate(verdict_history(rt.store, db, 1000))
    assert offsets[("champion", "series")] > 0  # 5 false of 40 judged: raised
    assert offsets[("champion", "hst")] == -BudgetSettings().step_q  # within budget, a miss

    rt.writers["detector_quality"].flush()
    rows = {(r["detector"], r["variant"]): r for r in detector_quality(rt.store, db)}
    assert rows[("series", "champion")]["threshold_offset"] == pytest.approx(
        offsets[("champion", "series")])
    assert rows[("series", "champion")]["true_alerts"] == 0  # '*' rows are not verdicts

    svc = f"svc-{uuid.uuid4().hex[:6]}"
    stage.on_windows([window(svc, i, 0.01 * (i % 2)) for i in range(300)])
    burst = [a for a in stage.on_windows([window(svc, 300, 0.4)]) if a.detector == "series"]
    thr_q = VariantConfig().threshold_q + offsets[("champion", "series")]
    assert burst and burst[0].threshold == pytest.approx(1 - math.exp(-thr_q))
