"""One pod slower than its siblings (``detectors.instances``), from log events through ingest's
per-instance latency windows to the scorer's anomaly, its words and the shipped page rule."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from alerting.config import load_alerting
from alerting.evaluate import on_anomaly
from detectors.instances import slower
from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings
from schemas import topics
from schemas.anomalies import AnomalyEvent
from schemas.evidence import describe_anomaly
from schemas.windows import WindowStats
from streams.ingest import IngestProcessor, Record
from streams.windows import WindowAggregator

T0 = 1_790_000_000_000
RULES = Path(__file__).resolve().parents[3] / "deploy" / "config" / "alerting.yaml"


def _replay(seed: int, minutes: int, pods: int = 3, rate: float = 8.0,
            starved: tuple[int, int] | None = None, factor: float = 4.0,
            settings: DetectionSettings | None = None) -> list[AnomalyEvent]:
    """``minutes`` of a service's access logs, requests spread at random over ``pods``;
    during ``starved`` (seconds from the start) pod 0's requests take ``factor`` times as long.
    Returns the champion's anomalies of the scorer fed by ingest's windows."""
    rng = random.Random(seed)
    names = [f"search-7f9c-{k}" for k in range(pods)]
    clock = [T0 / 1000]
    proc = IngestProcessor(clock=lambda: clock[0], max_future_s=None)
    scorer = WindowScorer(settings or DetectionSettings())
    out: list[AnomalyEvent] = []
    offset = 0
    for second in range(minutes * 60):
        batch = []
        for _ in range(int(rate) + (rng.random() < rate % 1)):
            k = rng.randrange(pods)
            ms = 30.0 * math.exp(0.5 * rng.gauss(0, 1))
            if starved and starved[0] <= second < starved[1] and k == 0:
                ms *= factor
            ev = {"ts": T0 + second * 1000 + rng.randrange(1000), "service": "search",
                  "level": "INFO", "message": "GET /search 200", "host": names[k],
                  "event_id": f"{seed}-{offset}",
                  "http": {"method": "GET", "route": "/search", "status": 200,
                           "duration_ms": round(ms, 3)}}
            batch.append(Record(topics.LOGS, 0, offset, b"search", orjson.dumps(ev)))
            offset += 1
        clock[0] = (T0 + second * 1000) / 1000 + 1
        windows = proc.process(batch).windows
        out += [a for a in scorer.score_batch(windows) if a.variant == "champion"]
    return out


def _instance(got: list[AnomalyEvent]) -> list[AnomalyEvent]:
    return [a for a in got if a.scope == "instance"]


def test_a_starved_pod_is_named_within_two_windows_of_its_windows_closing() -> None:
    got = _replay(1, 20, starved=(600, 780))
    slow = _instance(got)
    assert len(slow) == 1, got  # one event for the episode
    a = slow[0]
    assert a.series == "search@search-7f9c-0" and a.service == "search"
    assert a.feature == "p50" and a.direction == "up" and a.detector == "siblings"
    assert T0 + 620_000 <= a.ts <= T0 + 640_000  # its second whole window
    assert a.observed > 3 * a.expected and a.hi < a.observed
    words = describe_anomaly(a.model_dump())
    assert words.startswith("search pod search-7f9c-0 p50 latency ") and "its siblings" in words


@pytest.mark.parametrize("seed", range(4))
def test_pods_serving_alike_raise_nothing_over_hours(seed: int) -> None:
    assert _instance(_replay(10 + seed, 90, pods=2 + seed)) == []


@pytest.mark.parametrize("seed", range(3))
def test_a_slightly_slower_pod_is_not_claimed(seed: int) -> None:
    assert _instance(_replay(3 + seed, 20, starved=(300, 900), factor=1.5)) == []


def test_evidence_grows_with_the_requests_on_both_sides() -> None:
    # (latencies, p50, siblings' latencies, their p50, their p90, own above that p90)
    assert slower((3, 400.0, 60, 30.0, 60.0, 3)) == 0.0  # 3 requests
    assert slower((30, 50.0, 60, 30.0, 60.0, 12)) == 0.0  # median not 2x theirs
    assert slower((30, 400.0, 0, math.nan, math.nan, 0)) == 0.0  # alone
    few, some, many = (slower((30, 400.0, m, 30.0, 60.0, 30)) for m in (3, 12, 120))
    assert few < 6.5 and few < some < many  # 3 siblings: their p90 is the 2nd of 3


def test_ingest_compares_each_instance_with_the_rest_of_its_service() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(60,), grace_s=5)
    for i in range(60):
        pod, ms = ("slow", 400.0 + i) if i % 3 == 0 else ("fast" + str(i % 2), 20.0 + i % 7)
        ts = T0 + i * 150
        agg.add_log("api", "GET /a", ts, "INFO", duration_ms=ms)
        agg.add_instance("api", pod, ts, ms)
    closed = {(w.name, w.window_s): w for w in agg.advance(T0 + 100_000)
              if w.scope == "instance"}
    slow, fast = closed["slow", 10], closed["fast1", 10]
    assert (slow.samples, slow.peer_samples, slow.above_peer_p90) == (20, 40, 20)
    assert slow.peer_instances == 2
    assert 20 <= slow.peer_p50 <= 27 and slow.peer_p90 < 30 and slow.p50 > 400
    assert fast.peer_samples == 40 and fast.above_peer_p90 == 0
    assert closed["slow", 60].peer_samples == 0  # compared in base windows only


def test_the_switch_turns_it_off() -> None:
    got = _replay(1, 20, starved=(600, 780), settings=DetectionSettings(instances=False))
    assert _instance(got) == []


def test_the_shipped_rules_page_it_with_the_pod_in_words() -> None:
    a = _instance(_replay(1, 20, starved=(600, 780)))[0]
    doc = {**a.model_dump(), "ts": a.ts / 1000, "value": a.observed}
    _, signals = on_anomaly(load_alerting(RULES), None, doc, a.ts / 1000)
    fired = [s for s in signals if s.status == "firing"]
    assert [s.rule for s in fired] == ["LatencyAnomaly"]
    assert fired[0].labels["severity"] == "critical"
    assert "search pod search-7f9c-0" in fired[0].annotations["summary"]


def _pod(i: int, n: int, p50: float, above: int) -> WindowStats:
    t = T0 // 1000 + 10 * i
    return WindowStats(series="api@a", service="api", scope="instance", name="a", window_s=10,
                       start=datetime.fromtimestamp(t - 10, UTC),
                       end=datetime.fromtimestamp(t, UTC), count=n, samples=n, p50=p50,
                       peer_samples=40, peer_p50=20.0, peer_p90=40.0, above_peer_p90=above,
                       peer_instances=1)


@pytest.mark.parametrize("between,alarms", [
    (None, 1),  # two slow windows in a row
    ((2, 100.0, 2), 1),  # two requests in between: says nothing, the run goes on
    ((12, 21.0, 1), 0),  # a window like its sibling's in between: the run is over
])
def test_a_window_too_sparse_to_compare_neither_extends_nor_ends_a_run(
        between: tuple[int, float, int] | None, alarms: int) -> None:
    steps = [_pod(0, 12, 100.0, 7)]
    if between is not None:
        steps.append(_pod(1, *between))
    steps.append(_pod(len(steps), 12, 100.0, 7))
    sc = WindowScorer(DetectionSettings())
    got = [a for w in steps for a in sc.score_batch([w]) if a.variant == "champion"]
    assert len(got) == alarms
    if got:
        assert got[0].contributing["windows"] == 2.0
        assert got[0].ts == steps[-1].end.timestamp() * 1000
