"""ARTime in the live scorer: a variant's gauges raise on ARTime's alarm (docs/detection.md)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings, VariantConfig
from schemas.anomalies import AnomalyEvent
from schemas.windows import WindowStats

SHIFT = range(1200, 1230)  # windows where the gauge jumps by 35 points
ARTIME = DetectionSettings(artime_probation=180,  # half an hour: shapes of 8 windows
                           challenger=VariantConfig(version="2", artime=True))


def gauge(i: int, name: str = "cpu_percent") -> WindowStats:
    """A CPU gauge with a slow cycle and noise (seeded per window), shifted over SHIFT."""
    v = 40 + 10 * math.sin(i / 60) + random.Random(i).gauss(0, 2) + (35 if i in SHIFT else 0)
    t = 1_700_000_000 + 10 * i
    return WindowStats(series=f"api/{name}", service="api", scope="metric", name=name,
                       window_s=10, start=datetime.fromtimestamp(t - 10, UTC),
                       end=datetime.fromtimestamp(t, UTC), mean=round(v, 1), last=round(v, 1))


def run(sc: WindowScorer, windows: range) -> list[tuple[int, AnomalyEvent]]:
    return [(i, a) for i in windows for a in sc.score_batch([gauge(i)])]


def test_artime_raises_the_gauges_of_its_variant_only() -> None:
    events = run(WindowScorer(ARTIME), range(1300))
    art = [(i, a) for i, a in events if a.detector == "artime"]
    assert all(a.variant == "challenger" and a.version == "artime-1/2" for _, a in art)
    assert not [a for _, a in events if a.variant == "challenger" and a.detector == "series"]
    # the shift: ARTime alarms on its first window, up, with the series detector's band
    first = [(i, a) for i, a in art if i in SHIFT]
    assert first and first[0][0] == SHIFT[0], art
    a = first[0][1]
    assert a.direction == "up" and a.observed > a.hi > a.expected and a.score >= 0.3
    # the shapes it learnt (after its half-hour probation and a settling hour) stay quiet
    assert not [i for i, _ in art if 540 <= i < SHIFT[0]], art
    # the champion (no ARTime) still raises the shift through the series detector
    assert any(i in SHIFT and a.variant == "champion" for i, a in events)


def test_artime_costs_nothing_when_no_variant_asks_for_it() -> None:
    sc = WindowScorer(DetectionSettings())
    assert not [a for _, a in run(sc, range(300)) if a.detector == "artime"]
    assert sc.banks.art_cfg is None and sc.states["api/cpu_percent"].art == {}


def test_artime_state_continues_across_a_snapshot() -> None:
    a, b = WindowScorer(ARTIME), WindowScorer(ARTIME)
    run(a, range(1000))
    snap = a.snapshot()
    for series, raw in snap.items():
        b.restore(series, raw)
    assert b.states["api/cpu_percent"].art  # restored, not relearnt
    ids = [(i, e.id, e.detector, e.score) for i, e in run(a, range(1000, 1300))]
    assert ids == [(i, e.id, e.detector, e.score) for i, e in run(b, range(1000, 1300))]
    assert any(d == "artime" for _, _, d, _ in ids)
    # a worker restarted without ARTime keeps the rest of the state and drops its shapes
    off = WindowScorer(DetectionSettings())
    for series, raw in snap.items():
        off.restore(series, raw)
    st = off.states["api/cpu_percent"]
    assert st.art == {} and st.rows and st.last_end
