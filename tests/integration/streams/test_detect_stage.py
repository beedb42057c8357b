"""Detection through the real broker and chDB: windows in, anomalies out, state survives a
restart and a rebalance, the false-alert budget steers from stored verdicts."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer

from detectors.settings import BudgetSettings, VariantConfig
from schemas.topics import internal
from schemas.windows import WindowStats
from sinks.clickhouse.client import Client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.queries.quality import detector_quality, verdict_history
from sinks.clickhouse.settings import ClickHouseSettings
from streams.agents.score_windows import DetectStage, ScoreService
from streams.runtime import Runtime, open_runtime
from streams.settings import KafkaSettings, Settings, StreamSettings
from streams.state import read_compacted
from streams.topics import STATE_TOPIC_CONFIG, ensure_topics

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
    ensure_topics(bootstrap, {state_topic: 2}, STATE_TOPIC_CONFIG)
    calm = [window(svc, i, 0.01 * (i % 2)) for i in range(300)]
    stage = DetectStage(runtime, state_topic)
    assert stage.on_windows(through_broker(runtime, topic, calm)) == []
    assert stage.save() == 1
    runtime.producer.flush(30)

    restarted = DetectStage(runtime, state_topic)  # a new worker: state from the topic only
    kafka = KafkaSettings(bootstrap=bootstrap)
    assert restarted.load(read_compacted(kafka, state_topic, f"it-{svc}", 30)) == 1
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
    series = rows[("series", "champion")]
    assert (series["true_alerts"], series["false_alerts"]) == (35, 5)  # '*' rows add none
    assert series["recall"] == 35 / 36  # the one incident reported missed
    assert rows[("hst", "champion")]["precision"] == 1.0

    svc = f"svc-{uuid.uuid4().hex[:6]}"
    stage.on_windows([window(svc, i, 0.01 * (i % 2)) for i in range(300)])
    burst = [a for a in stage.on_windows([window(svc, 300, 0.4)]) if a.detector == "series"]
    thr_q = VariantConfig().threshold_q + offsets[("champion", "series")]
    assert burst and burst[0].threshold == pytest.approx(1 - math.exp(-thr_q))


def test_handed_over_series_are_not_scored_silent_and_come_back_from_the_topic(
        runtime: Runtime) -> None:
    """Two services on two windows partitions; partition 1 goes to another worker."""
    stay, moved = (f"svc-{uuid.uuid4().hex[:6]}" for _ in range(2))
    state_topic = f"it-detector-state-{uuid.uuid4().hex[:6]}"
    bootstrap = runtime.settings.kafka.bootstrap_servers()
    ensure_topics(bootstrap, {state_topic: 2}, STATE_TOPIC_CONFIG)
    stage = DetectStage(runtime, state_topic)
    for i in range(300):
        stage.on_windows([window(stay, i, 0.01 * (i % 2)), window(moved, i, 0.01 * (i % 2))],
                         [0, 1])
    assert stage.save() == 2
    runtime.producer.flush(30)
    assert stage.hand_over(kept={0}) == 1
    assert set(stage.scorer.states) == {stay}
    # the moved service's windows now reach the other worker: here time goes on without them
    later = [a for i in range(300, 330) for a in stage.on_windows([window(stay, i, 0.0)], [0])]
    assert later == []  # without the hand-over: its traffic "collapsed" to zero

    kafka = KafkaSettings(bootstrap=bootstrap)
    every = read_compacted(kafka, state_topic, f"it-{stay}", 30)
    parts = [read_compacted(kafka, state_topic, f"it-{stay}-{p}", 30, {p}) for p in (0, 1)]
    assert set(every) == {stay, moved} and not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == {stay, moved}
    home = next(p for p in parts if moved in p)
    assert stage.load(home) == 1  # the partition came back: its state, not a warm-up
    burst = [a for a in stage.on_windows([window(moved, 300, 0.4)], [1]) if a.series == moved]
    assert [a.feature for a in burst] == ["error_rate"]


@pytest.fixture
def two_partitions(kafka_bootstrap: str, chdb_store: Client) -> Iterator[Settings]:
    s = Settings(kafka=KafkaSettings(bootstrap=kafka_bootstrap, partitions=2),
                 clickhouse=ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:8]}",
                                               batch_seconds=0.1),
                 stream=StreamSettings(app_id=f"it-{uuid.uuid4().hex[:8]}"))
    migrate(chdb_store, s.clickhouse)
    ensure_topics(kafka_bootstrap, {internal(s.stream.app_id).windows: 2})
    yield s
    chdb_store.command(f"DROP DATABASE IF EXISTS {s.clickhouse.database}")


async def wait_until(check: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


def send(rt: Runtime, services: list[str], steps: range, error_rate: float = 0.0) -> None:
    for i in steps:
        for svc in services:
            rt.send(rt.topics.windows, window(svc, i, error_rate or 0.01 * (i % 2)), key=svc)
    rt.producer.flush(30)


async def test_a_rebalance_hands_series_over_with_their_state(
        two_partitions: Settings, chdb_store: Client) -> None:
    settings = two_partitions
    run = uuid.uuid4().hex[:6]
    services = [f"rb-{run}-{k}" for k in range(12)]  # 12 keys: both partitions get some
    rt_a = open_runtime(settings, store=chdb_store)
    a = ScoreService(rt_a)
    await a.start()
    rt_b = open_runtime(settings, store=chdb_store)
    b = ScoreService(rt_b)
    try:
        send(rt_a, services, range(300))  # calm, learnt by the first worker alone
        await wait_until(lambda: a.detect.counts["windows"] == 300 * len(services))
        await b.start()  # same group: a rebalance
        # the consumer's own record (calling the Kafka consumer from the loop would wait
        # on its thread, which waits on the loop for the hand-over)
        await wait_until(lambda: bool(a.assigned) and bool(b.assigned)
                         and bool(a.detect.scorer.states) and bool(b.detect.scorer.states)
                         and len(a.detect.scorer.states) + len(b.detect.scorer.states) == 12)
        moved = set(b.detect.scorer.states)
        assert moved and moved < set(services)  # b read the state of its partitions back
        assert set(a.detect.scorer.states) == set(services) - moved  # a forgot them
        # an error burst on every service right after the hand-over, then calm again
        send(rt_a, services, range(300, 301), error_rate=0.4)
        send(rt_a, services, range(301, 330))
        total = 330 * len(services)
        await wait_until(lambda: a.detect.counts["windows"] + b.detect.counts["windows"] == total)
    finally:
        await b.stop()
        await a.stop()
        rt_b.close()
        rt_a.close()
    rows = chdb_store.query(
        f"SELECT service, feature, toUnixTimestamp(ts) FROM {settings.clickhouse.database}."
        "anomalies WHERE detector = 'series' AND variant = 'champion'").result_rows
    assert {r[1:] for r in rows} == {("error_rate", T0 + 3000)}  # no silence, no collapse
    assert {r[0] for r in rows} == set(services)  # warm on both workers: no new warm-up


def test_anomalies_held_for_the_load_demotion_go_out_before_a_snapshot(
        runtime: Runtime, chdb_store: Client) -> None:
    """A gauge read ahead of the logs partitions waits for the fleet's traffic of its window
    (``WindowScorer._hold``); a snapshot ends the replay of its windows, so it is published
    and stored first, not lost if the worker then dies."""
    svc = f"svc-{uuid.uuid4().hex[:6]}"

    def gauge(i: int, v: float) -> bytes:
        t = T0 + 10 * i
        return WindowStats(series=f"{svc}/cpu_percent", service=svc, scope="metric",
                           name="cpu_percent", window_s=10,
                           start=datetime.fromtimestamp(t - 10, UTC),
                           end=datetime.fromtimestamp(t, UTC), count=1, mean=v, min=v,
                           max=v, last=v, source="metrics:0").to_json()

    def traffic(i: int) -> bytes:
        w = WindowStats.from_json(window(svc, i, 0.0))
        return w.model_copy(update={"source": "logs:0"}).to_json()

    stage = DetectStage(runtime)
    for i in range(300):
        stage.on_windows([gauge(i, 30.0 + (i * 7919 % 13) / 10), traffic(i)])
    # the gauge jumps; the logs partition has not come past these windows yet
    assert stage.on_windows([gauge(300 + k, 90.5) for k in range(3)]) == []
    assert stage.scorer.held
    db = runtime.settings.clickhouse.database

    def stored() -> set[tuple[str, str]]:
        runtime.writers["anomalies"].flush()
        return {(str(r[0]), str(r[1])) for r in chdb_store.query(
            f"SELECT series, feature FROM {db}.anomalies WHERE service = '{svc}'").result_rows}

    assert stored() == set()
    stage.save()
    assert stage.scorer.held == []
    assert (f"{svc}/cpu_percent", "mean") in stored()
