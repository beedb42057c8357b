"""Instruments publish valid ``MetricPoint`` messages on flush, not per observation."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.metrics import MetricPoint
from schemas.topics import METRICS
from sdk.metrics import Metrics
from sdk.publisher import dumps

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakePublisher:
    service = "checkout"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str | None]] = []

    def publish(self, topic: str, value: Mapping[str, Any], key: str | None = None) -> bool:
        self.sent.append((topic, dict(value), key))
        return True

    def points(self) -> dict[str, MetricPoint]:
        out = {}
        for topic, value, key in self.sent:
            assert (topic, key) == (METRICS, "checkout")
            p = MetricPoint.model_validate(orjson.loads(dumps(value)))
            out[p.series] = p
        return out


def metrics() -> tuple[Metrics, FakePublisher]:
    pub = FakePublisher()
    return Metrics(pub, background=False), pub  # type: ignore[arg-type]


def test_nothing_is_published_until_flush() -> None:
    m, pub = metrics()
    m.counter("requests").inc()
    m.histogram("latency_ms").observe(3.0)
    assert pub.sent == []


def test_counters_are_cumulative_and_gauges_carry_the_last_value() -> None:
    m, pub = metrics()
    m.counter("requests", {"route": "/pay"}).inc()
    m.counter("requests", {"route": "/pay"}).inc(2)
    m.gauge("queue_depth", unit="items").set(7)
    m.gauge("queue_depth", unit="items").set(5)
    m.gauge("never_set")
    m.flush(NOW)
    m.counter("requests", {"route": "/pay"}).inc()
    m.flush(NOW)
    points = pub.points()
    req = points["checkout/requests{route=/pay}"]
    assert (req.value, req.kind, req.labels) == (4.0, "counter", {"route": "/pay"})
    depth = points["checkout/queue_depth"]
    assert (depth.value, depth.kind, depth.unit) == (5.0, "gauge", "items")
    assert "checkout/never_set" not in points


def test_histogram_publishes_count_sum_quantiles_and_max_per_interval() -> None:
    m, pub = metrics()
    h = m.histogram("latency_ms", unit="ms")
    for v in range(1, 101):
        h.observe(float(v))
    m.flush(NOW)
    p = pub.points()
    assert p["checkout/latency_ms.count"].value == 100
    assert p["checkout/latency_ms.sum"].value == 5050
    assert [p[f"checkout/latency_ms.{q}"].value for q in ("p50", "p95", "p99", "max")] == [
        50, 95, 99, 100]
    pub.sent.clear()
    m.flush(NOW)  # an empty interval: totals only
    assert set(pub.points()) == {"checkout/latency_ms.count", "checkout/latency_ms.sum"}


def test_histogram_memory_is_bounded() -> None:
    m, _ = metrics()
    h = m.histogram("size")
    for v in range(100_000):
        h.observe(float(v))
    assert len(h.take()[2]) == 2048


def test_timer_as_context_manager_and_decorator_records_ms() -> None:
    m, pub = metrics()

    @m.timer("work")
    def work() -> str:
        time.sleep(0.01)
        return "done"

    assert work() == "done"
    with m.timer("work"):
        pass
    m.flush(NOW)
    p = pub.points()
    assert p["checkout/work.count"].value == 2 and p["checkout/work.max"].unit == "ms"
    assert p["checkout/work.max"].value >= 10


def test_one_name_and_labels_cannot_be_two_kinds() -> None:
    m, _ = metrics()
    m.counter("x")
    with pytest.raises(TypeError):
        m.gauge("x")
    with pytest.raises(ValueError):
        m.counter("x").inc(-1)


def test_background_thread_publishes_every_interval() -> None:
    pub = FakePublisher()
    m = Metrics(pub, flush_interval_s=0.05)  # type: ignore[arg-type]
    m.counter("ticks").inc()
    deadline = time.monotonic() + 5
    while len(pub.sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    m.close()
    assert len(pub.sent) >= 3  # at least two intervals and the final flush
