"""Outbound calls become dependency edge windows (``caller->callee``), through ingest."""

from __future__ import annotations

import time

import orjson

from schemas import topics
from streams.ingest import IngestProcessor, Record
from streams.windows import WindowAggregator

NOW_MS = int(time.time() * 1000)
T0 = NOW_MS - 600_000
T0 -= T0 % 10_000


def test_edge_windows_count_calls_failures_and_latency() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(60,), grace_s=5)
    for i in range(20):
        agg.add_edge("cart", "inventory", T0 + i * 400, ok=i % 5 != 0, duration_ms=10.0 + i)
    closed = agg.advance(T0 + 100_000)
    edge = [w for w in closed if w.scope == "edge" and w.window_s == 10]
    assert [(w.series, w.service, w.name, w.count, w.error_count) for w in edge] == [
        ("cart->inventory", "cart", "inventory", 20, 4)]
    assert 17 < edge[0].p50 < 22 and edge[0].p95 > 26 and edge[0].samples == 20


def test_ingest_windows_peer_calls_per_caller_and_callee() -> None:
    clock = [NOW_MS / 1000]
    proc = IngestProcessor(clock=lambda: clock[0])
    records = []
    for i in range(30):
        ev = {"ts": T0 + i * 300, "service": "checkout", "level": "INFO",
              "message": "call to payments", "event_id": f"e{i}",
              "peer": {"service": "payments", "operation": "POST /charges",
                       "duration_ms": 200.0 if i < 15 else 900.0, "ok": i != 3}}
        records.append(Record(topics.LOGS, 0, i, b"checkout", orjson.dumps(ev)))
    windows = proc.process(records).windows
    clock[0] += 3600
    windows += proc.flush_idle()
    edges = {(w.series, w.window_s): w for w in windows if w.scope == "edge"}
    total = sum(w.count for (s, ws), w in edges.items() if ws == 10)
    assert total == 30 and {s for s, _ in edges} == {"checkout->payments"}
    assert sum(w.error_count for (s, ws), w in edges.items() if ws == 10) == 1
    assert max(w.p99 for w in edges.values()) > 800


def test_every_window_names_the_partition_it_was_counted_in() -> None:
    """The scorer imputes silence only as far as a window's own source went."""
    clock = [NOW_MS / 1000]
    proc = IngestProcessor(clock=lambda: clock[0])
    records = [Record(topics.LOGS, p, i, b"x", orjson.dumps({
        "ts": T0 + i * 1000, "service": f"svc{p}", "level": "INFO", "message": "hello",
        "event_id": f"e{p}-{i}"})) for p in (0, 3) for i in range(40)]
    windows = proc.process(records).windows
    clock[0] += 3600
    windows += proc.flush_idle()
    got = {(w.service, w.source) for w in windows}
    assert got == {("svc0", f"{topics.LOGS}:0"), ("svc3", f"{topics.LOGS}:3")}
