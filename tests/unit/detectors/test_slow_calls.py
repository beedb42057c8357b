"""A dependency called a few times a window that slows down (``detectors.slow_calls``): its
calls above their history's p90, counted over windows, page where its noisy medians do
not; its ordinary spikes do not."""

from __future__ import annotations

import random

import pytest

from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings
from detectors.slow_calls import Reference, key_of
from schemas.anomalies import AnomalyEvent
from schemas.windows import WindowStats
from streams.windows import Acc, to_stats

T0 = 1_700_000_000_000


def _edge(i: int, durations: list[float]) -> WindowStats:
    acc = Acc()
    for d in durations:
        acc.count += 1
        acc.add_latency(d)
    return to_stats("edge", "checkout->payments", "checkout", "payments", 10_000,
                    T0 + 10_000 * i, acc, source="logs:0")


def _calls(rng: random.Random, slow_from: int, n: int, delay: float = 0.0
           ) -> list[WindowStats]:
    """An edge with 1-6 calls a window, ~150 ms with a heavy tail (now and then a call of
    seconds), ``delay`` ms added to every call from window ``slow_from`` on."""
    out = []
    for i in range(n):
        calls = [rng.lognormvariate(5.0, 0.35) * (8.0 if rng.random() < 0.01 else 1.0)
                 + (delay if i >= slow_from else 0.0) for _ in range(rng.randint(1, 6))]
        out.append(_edge(i, calls))
    return out


def _run(windows: list[WindowStats], settings: DetectionSettings | None = None
         ) -> list[AnomalyEvent]:
    sc = WindowScorer(settings or DetectionSettings())
    return [a for w in windows for a in sc.score_batch([w]) if a.variant == "champion"]


def test_route_and_edge_windows_carry_their_calls_by_bucket() -> None:
    w = _edge(0, [130.0, 140.0, 2_000.0, 0.0])
    assert w.lat_hist == {key_of(140.0): 2, key_of(2_000.0): 1, key_of(0.0): 1}
    assert WindowStats.from_json(w.to_json()).lat_hist == w.lat_hist  # JSON keys are text
    acc = Acc(count=1)
    acc.add_latency(5.0)
    assert to_stats("service", "checkout", "checkout", "", 10_000, T0, acc).lat_hist == {}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_sparse_dependency_slowed_by_a_delay_pages_within_30_seconds(seed: int) -> None:
    windows = _calls(random.Random(seed), 300, 312, delay=400.0)
    got = [a for a in _run(windows) if a.feature == "p50" and a.score >= 0.999]
    assert got, "no paging anomaly"
    assert got[0].ts <= T0 + 10_000 * 303  # within 3 windows (30 s) of the delay
    assert got[0].series == "checkout->payments" and got[0].direction == "up"


def test_without_the_rule_the_same_delay_is_not_paged_in_30_seconds() -> None:
    windows = _calls(random.Random(1), 300, 312, delay=400.0)
    off = [a for a in _run(windows, DetectionSettings(slow_calls=False))
           if a.feature == "p50" and a.score >= 0.999 and a.ts <= T0 + 10_000 * 303]
    assert off == []


def test_the_edges_ordinary_spikes_raise_nothing() -> None:
    for seed in (4, 5):
        assert _run(_calls(random.Random(seed), 10**9, 3_000)) == []


def test_the_history_survives_a_restart_of_the_scorer() -> None:
    windows = _calls(random.Random(6), 300, 312, delay=400.0)
    sc = WindowScorer(DetectionSettings())
    for w in windows[:300]:
        sc.score_batch([w])
    twin = WindowScorer(DetectionSettings())
    for series, raw in sc.snapshot().items():
        twin.restore(series, raw)
    st, back = sc.states["checkout->payments"], twin.states["checkout->payments"]
    assert st.ref is not None and back.ref is not None
    assert back.ref.to_json() == st.ref.to_json() and back.calls == st.calls
    late = [a for w in windows[300:] for a in twin.score_batch([w])
            if a.feature == "p50" and a.score >= 0.999]
    assert late and late[0].ts <= T0 + 10_000 * 303


def test_a_reference_too_short_tests_nothing() -> None:
    ref = Reference()
    ref.learn({key_of(150.0): 10})
    assert ref.exceedances({key_of(900.0): 3}) is None
