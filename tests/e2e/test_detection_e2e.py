"""End to end: an error burst produced to Kafka becomes an anomaly in ClickHouse; a person's
false verdict, sent to the feedback topic, raises the detector's threshold for every series
(the false-alert budget), as the worker's API then shows."""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import Worker, start_worker  # type: ignore[import-not-found]

from detectors.settings import BudgetSettings, VariantConfig
from schemas import topics
from sdk import Publisher

pytestmark = pytest.mark.e2e
WINDOWS, BURST = 30, 25  # 10 s windows of calm traffic, the one with the error burst


def traffic(service: str, start_ms: int, seed: int) -> list[dict[str, Any]]:
    """Six requests a second, 1 % errors, half of them errors in window ``BURST``."""
    rng, events = random.Random(seed), []
    for k in range(WINDOWS * 60):
        ts = start_ms + k * 10_000 // 60
        failed = rng.random() < (0.5 if k // 60 == BURST else 0.01)
        events.append({"ts": ts, "service": service, "level": "ERROR" if failed else "INFO",
                       "message": f"GET /pay {'failed' if failed else 'ok'}",
                       "http": {"method": "GET", "route": "/pay", "status": 500 if failed
                                else 200, "duration_ms": 20 + rng.random() * 5}})
    return events


def publish(bootstrap: str, topic: str, service: str, events: list[dict[str, Any]]) -> None:
    pub = Publisher(bootstrap, service=service)
    for e in events:
        pub.publish(topic, e, key=service)
    pub.close(30)
    assert pub.stats().dropped_buffer_full == 0


def anomalies(worker: Worker, service: str) -> list[list[Any]]:
    """The service's anomalies. Its and its route's are one event when their windows are
    scored in one batch; they ride different partitions of the windows topic, so they can
    also be two."""
    return worker.query("SELECT event_id, feature, threshold, toUnixTimestamp64Milli(ts) "
                        "FROM logwarden.anomalies WHERE service = {s:String} AND detector = "
                        "'series' AND variant = 'champion' ORDER BY ts", s=service)


def test_a_burst_is_found_and_a_false_verdict_raises_every_threshold(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    # The timeline runs up to six minutes ahead of the clock (see below): past the default
    # five-minute bound on future event times, which would dead-letter the burst.
    worker = start_worker(kafka_bootstrap, tmp_path / "worker", f"e2e-{uuid.uuid4().hex[:8]}",
                          LOGWARDEN_DETECT_BUDGET='{"every_s": 1}',
                          LOGWARDEN_STREAM_MAX_FUTURE_S="600")
    try:
        # event time from a minute ahead: no other test's events are later on a partition
        start_ms = (int(time.time() * 1000) + 60_000) // 10_000 * 10_000
        first, second = (f"e2e-det-{uuid.uuid4().hex[:6]}" for _ in range(2))
        publish(kafka_bootstrap, topics.LOGS, first, traffic(first, start_ms, seed=1))
        worker.wait_for(lambda: bool(anomalies(worker, first)), what="the burst's anomaly")
        found = anomalies(worker, first)
        burst_end = start_ms + (BURST + 1) * 10_000
        assert {(r[1], r[3]) for r in found} == {("error_rate", burst_end)}  # that window only
        base = VariantConfig().threshold_q
        assert [r[2] for r in found] == pytest.approx([1 - math.exp(-base)] * len(found))

        publish(kafka_bootstrap, topics.FEEDBACK, first, [{
            "ts": int(time.time() * 1000), "target_kind": "anomaly", "target_id": found[0][0],
            "verdict": "false", "user": "oncall"}])

        def offset() -> float:
            rows = json.loads(worker.get("/api/intelligence"))["detectors"]
            return next((r["threshold_offset"] for r in rows if r["detector"] == "series"
                         and r["variant"] == "champion"), 0.0)

        worker.wait_for(lambda: offset() > 0, what="the steered threshold")
        b = BudgetSettings()
        assert offset() == pytest.approx(b.step_q * (1 - b.target * b.aim))

        # another service, never judged, alarms at the raised threshold
        publish(kafka_bootstrap, topics.LOGS, second, traffic(second, start_ms, seed=2))
        worker.wait_for(lambda: bool(anomalies(worker, second)), what="the second anomaly")
        raised = 1 - math.exp(-base - offset())
        assert [r[2] for r in anomalies(worker, second)] == pytest.approx([raised] * len(
            anomalies(worker, second)))
    finally:
        worker.stop()
