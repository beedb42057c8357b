"""End to end: events produced through the SDK land in ClickHouse with the right windows;
hostile input is dead-lettered or deduplicated and the worker keeps going."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Producer
from conftest import Worker  # type: ignore[import-not-found]

from schemas import topics
from sdk import Publisher

pytestmark = pytest.mark.e2e


def make_events(service: str, n: int, start_ms: int, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        route = rng.choice(["/cart", "/pay"])
        events.append({
            "ts": start_ms + rng.randrange(0, 60_000), "service": service,
            "level": rng.choice(["INFO", "INFO", "INFO", "WARN", "ERROR"]),
            "message": f"GET {route} took {rng.randrange(1, 999)}ms",
            "http": {"method": "GET", "route": route, "status": 200,
                     "duration_ms": round(rng.lognormvariate(3, 0.8), 3)},
            "event_id": uuid.uuid4().hex,
        })
    return sorted(events, key=lambda e: e["ts"])  # a service logs in time order


def count_rows(worker: Worker, service: str) -> int:
    return int(worker.query("SELECT count() FROM logwarden.logs WHERE service = {s:String}",
                            s=service)[0][0])


def test_every_event_lands_with_correct_windows(worker: Worker, kafka_bootstrap: str) -> None:
    service = f"e2e-{uuid.uuid4().hex[:8]}"
    # The broker is shared with the session's other tests and a partition's watermark is the
    # newest event time any service sent to it, so events from the past could arrive late
    # (left out of the windows, by design). A minute starting 1-2 minutes from now cannot:
    # no other test writes future event times. The last windows close on the idle flush.
    start_ms = (int(time.time() * 1000) + 120_000) // 60_000 * 60_000
    events = make_events(service, 3000, start_ms)
    pub = Publisher(kafka_bootstrap, service=service)
    for e in events:
        pub.publish(topics.LOGS, e, key=service)
    for e in events[:25]:  # the same events again: duplicates must not be counted twice
        pub.publish(topics.LOGS, e, key=service)
    pub.close(30)
    assert pub.stats().dropped_buffer_full == 0

    worker.wait_for(lambda: count_rows(worker, service) >= len(events), what="all rows")
    assert count_rows(worker, service) == len(events)  # no duplicate rows, even before merges

    def windows() -> dict[tuple[str, int, int], list[Any]]:
        rows = worker.query(
            "SELECT series, window_s, toUnixTimestamp64Milli(start), count, error_count, "
            "p50, p95, p99 FROM logwarden.windows FINAL WHERE service = {s:String}", s=service)
        return {(r[0], r[1], r[2]): r for r in rows}

    # 2 series x 6 ten-second windows + 1 minute window, per route and for the service
    worker.wait_for(lambda: len(windows()) == 3 * (6 + 1)
                    and sum(r[3] for k, r in windows().items() if k[1] == 60) == 2 * 3000,
                    what="closed windows")
    got = windows()
    for size in (10, 60):
        for start in range(start_ms, start_ms + 60_000, size * 1000):
            for series, route in ((service, None), (f"{service} GET /cart", "/cart"),
                                  (f"{service} GET /pay", "/pay")):
                sel = [e for e in events if start <= e["ts"] < start + size * 1000
                       and (route is None or e["http"]["route"] == route)]
                row = got[(series, size, start)]
                assert row[3] == len(sel), (series, size, start)
                assert row[4] == sum(e["level"] == "ERROR" for e in sel)
                durs = np.array([e["http"]["duration_ms"] for e in sel])
                for q, value in ((0.5, row[5]), (0.95, row[6]), (0.99, row[7])):
                    lo = np.quantile(durs, max(0.0, q - 1.5 / len(durs)), method="lower")
                    hi = np.quantile(durs, min(1.0, q + 1.5 / len(durs)), method="higher")
                    assert lo * 0.99 <= value <= hi * 1.01, (series, size, q)


def test_hostile_input_is_dead_lettered_and_the_worker_goes_on(
        worker: Worker, kafka_bootstrap: str) -> None:
    service = f"bad-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    good = {"ts": now, "service": service, "level": "INFO", "message": "fine"}
    hostile = {
        b"{not json": "not valid UTF-8 JSON",
        orjson.dumps({**good, "level": 7, "ts": "yesterday"}): "level",
        b"\x00\xff\xfe garbage \x9c": "not valid UTF-8 JSON",
        orjson.dumps({**good, "message": "x" * (10 << 20)}): "over the 65536 byte limit",
        orjson.dumps([1, 2, 3]): "expected a JSON object",
        orjson.dumps({**good, "service": "../../etc/passwd"}): "service",
        orjson.dumps({**good, "ts": 4_000_000_000_000}): "ts",
    }
    p = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 16 << 20})
    for raw in hostile:
        p.produce(topics.LOGS, raw, key=service)
    for i in range(50):
        p.produce(topics.LOGS, orjson.dumps({**good, "event_id": f"{service}-{i}"}),
                  key=service)
    p.produce(topics.LOGS, orjson.dumps({**good, "event_id": f"{service}-0"}), key=service)
    assert p.flush(30) == 0

    def dead() -> list[list[Any]]:
        return worker.query(
            "SELECT error, raw_size, stage, offset FROM logwarden.dead_letters "
            "WHERE key = {s:String} ORDER BY offset", s=service)

    worker.wait_for(lambda: len(dead()) == len(hostile) and count_rows(worker, service) == 50,
                    what="dead letters and the good rows after them")
    for (raw, reason), (error, raw_size, stage, _offset) in zip(hostile.items(), dead(),
                                                                strict=True):
        assert reason in error
        assert raw_size == len(raw)
        assert stage == "ingest.logs"
    health = orjson.loads(worker.get("/api/health"))
    assert health["counts"]["dead_letter.ingest.logs"] >= len(hostile)
    assert health["counts"]["duplicate"] >= 1
    metrics = worker.get("/metrics").decode()
    assert 'logwarden_dead_letters_total{stage="ingest.logs"}' in metrics
