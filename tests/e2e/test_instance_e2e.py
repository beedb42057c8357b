"""End to end: one pod of three serving its requests slowly, produced to Kafka, becomes an
``instance`` anomaly naming that pod in ClickHouse and a critical LatencyAnomaly alert that
says which pod and how slow, through the real worker and its shipped rules."""

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

from schemas import topics
from sdk import Publisher

pytestmark = pytest.mark.e2e
SECONDS, SLOW_FROM, SLOW_TO = 240, 120, 210  # event time; pod 0 starved in between


def traffic(service: str, start_ms: int, seed: int) -> list[dict[str, Any]]:
    """Eight requests a second spread at random over three pods, ~30 ms; pod 0's take four
    times as long from ``SLOW_FROM`` to ``SLOW_TO``."""
    rng, events = random.Random(seed), []
    for k in range(SECONDS * 8):
        second, pod = k // 8, rng.randrange(3)
        ms = 30.0 * math.exp(0.5 * rng.gauss(0, 1))
        if pod == 0 and SLOW_FROM <= second < SLOW_TO:
            ms *= 4
        events.append({"ts": start_ms + k * 125, "service": service, "level": "INFO",
                       "message": "GET /search 200", "host": f"{service}-pod-{pod}",
                       "http": {"method": "GET", "route": "/search", "status": 200,
                                "duration_ms": round(ms, 3)}})
    return events


def instance_anomalies(w: Worker, service: str) -> list[list[Any]]:
    return w.query("SELECT series, severity, detector, toUnixTimestamp64Milli(ts), observed, "
                   "expected FROM logwarden.anomalies WHERE service = {s:String} AND "
                   "scope = 'instance' AND variant = 'champion' ORDER BY ts", s=service)


def latency_alerts(w: Worker, service: str) -> list[dict[str, Any]]:
    """The service's LatencyAnomaly alerts on a pod (its route's may fire too: a third of
    its requests four times slower for a minute and a half moves its p95)."""
    return [a for a in json.loads(w.get("/api/alerts?state=all"))["alerts"]
            if a["rule"] == "LatencyAnomaly" and a["labels"].get("service") == service
            and a["labels"].get("scope") == "instance"]


def test_a_starved_pod_is_paged_naming_the_pod(kafka_bootstrap: str, tmp_path: Path) -> None:
    worker = start_worker(kafka_bootstrap, tmp_path / "worker", f"e2e-{uuid.uuid4().hex[:8]}",
                          LOGWARDEN_STREAM_MAX_FUTURE_S="600")
    try:
        # event time from a minute ahead, as the other detection test: no earlier test's
        # events are later than these
        start_ms = (int(time.time() * 1000) + 60_000) // 10_000 * 10_000
        service = f"e2e-pods-{uuid.uuid4().hex[:6]}"
        pub = Publisher(kafka_bootstrap, service=service)
        for e in traffic(service, start_ms, seed=3):
            pub.publish(topics.LOGS, e, key=service)
        pub.close(30)
        assert pub.stats().dropped_buffer_full == 0
        worker.wait_for(lambda: bool(instance_anomalies(worker, service)), timeout=180,
                        what="the slow pod's anomaly")
        worker.wait_for(lambda: bool(latency_alerts(worker, service)), timeout=120,
                        what="the LatencyAnomaly alert")
        found = instance_anomalies(worker, service)
        assert {r[0] for r in found} == {f"{service}@{service}-pod-0"}  # the others are fine
        _, severity, detector, ts, observed, expected = found[0]
        assert (severity, detector) == ("critical", "siblings")
        # two whole slow windows: the first run ends 20-40 s into the slow spell
        assert start_ms + (SLOW_FROM + 20) * 1000 <= ts <= start_ms + (SLOW_FROM + 40) * 1000
        assert observed > 2 * expected
        alert = latency_alerts(worker, service)[0]
        assert alert["labels"]["severity"] == "critical"
        assert f"pod {service}-pod-0 p50 latency" in alert["annotations"]["summary"]
        assert "its siblings" in alert["annotations"]["summary"]
        pods = worker.query("SELECT DISTINCT name FROM logwarden.windows WHERE service = "
                            "{s:String} AND scope = 'instance' AND window_s = 60", s=service)
        assert {r[0] for r in pods} == {f"{service}-pod-{k}" for k in range(3)}
    finally:
        worker.stop()
