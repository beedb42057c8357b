"""A slow dependency is seen from its caller: outbound-call logs through the real ingest
windows and the real scorer (in-process, as the worker runs them), an edge anomaly."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings
from schemas import topics
from streams.ingest import IngestProcessor, Record

NOW_MS = int(time.time() * 1000)


def _replay(settings: DetectionSettings, delay_from_s: int) -> list[dict[str, Any]]:
    """40 minutes of checkout calling payments 5 times a second; from ``delay_from_s`` every
    call waits 300 ms more on the network (payments' own logs would not show it)."""
    rng = random.Random(1)
    t0 = NOW_MS - 3 * 3_600_000
    t0 -= t0 % 10_000
    clock = [t0 / 1000]
    proc = IngestProcessor(clock=lambda: clock[0])
    scorer = WindowScorer(settings)
    out: list[dict[str, Any]] = []
    batch: list[Record] = []
    for s in range(2400):
        for k in range(5):
            ts = t0 + s * 1000 + k * 190
            dur = rng.lognormvariate(3.5, 0.4) + (300.0 if s >= delay_from_s else 0.0)
            ev = {"ts": ts, "service": "checkout", "level": "DEBUG",
                  "message": "call to payments POST /charges", "event_id": f"e{s}-{k}",
                  "peer": {"service": "payments", "operation": "POST /charges",
                           "duration_ms": round(dur, 2), "ok": True}}
            batch.append(Record(topics.LOGS, 0, len(batch), b"checkout", orjson.dumps(ev)))
        if s % 30 == 29:
            clock[0] = (t0 + s * 1000) / 1000
            out += [a.model_dump() for a in scorer.score_batch(proc.process(batch).windows)]
            batch = []
    return out


def test_a_slow_dependency_is_an_edge_anomaly_on_its_caller() -> None:
    got = _replay(DetectionSettings(), delay_from_s=2100)
    edge = [a for a in got if a["scope"] == "edge" and a["variant"] == "champion"]
    assert edge, got
    first = edge[0]
    assert first["series"] == "checkout->payments" and first["feature"] in ("p50", "p95", "p99")
    assert (NOW_MS - 3 * 3_600_000) // 10_000 * 10_000 + 2100_000 <= first["ts"] <= (
        NOW_MS - 3 * 3_600_000) // 10_000 * 10_000 + 2160_000  # within a minute
    assert not [a for a in got if a["ts"] < first["ts"] - 60_000]  # nothing before it
    # with edges off the caller's own log lines carry no latency: nothing is seen
    off = _replay(DetectionSettings(edges=False), delay_from_s=2100)
    assert not [a for a in off if a["scope"] == "edge"]
