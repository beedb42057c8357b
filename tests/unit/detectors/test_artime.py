"""ARTime detector: what it flags, and the conformance every per-series model owes."""

from __future__ import annotations

import copy
import math
import random

import pytest

from detectors.artime import ARTimeConfig, ARTimeDetector

STEP = 300.0
CFG = ARTimeConfig(probation=600)


def stream(n: int = 3000, seed: int = 1) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(STEP * i, 20 + 5 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.3))
            for i in range(n)]


def run(det: ARTimeDetector, points: list[tuple[float, float]]) -> list[float]:
    return [det.update(ts, v) for ts, v in points]


def test_silent_during_probation_and_on_a_steady_daily_cycle() -> None:
    out = run(ARTimeDetector(CFG), stream(4000))
    assert max(out[:600]) == 0.0
    assert sum(s > 0 for s in out[1500:]) <= 1  # learnt: at most one stray shape


def test_a_level_shift_is_flagged_once_near_its_start() -> None:
    pts = stream(3000) + [(STEP * (3000 + i), 45.0 + math.sin(i)) for i in range(300)]
    out = run(ARTimeDetector(CFG), pts)
    hits = [i for i, s in enumerate(out) if s > 0 and i >= 3000]
    assert hits and hits[0] < 3040  # within a few downsampled steps
    assert 0.0 < max(out[3000:]) <= 1.0
    assert len(hits) <= 3  # one episode, not a plateau of alarms


def test_state_round_trips_through_bytes_and_continues_identically() -> None:
    pts = stream(5000, seed=3) + [(STEP * (5000 + i), 60.0) for i in range(50)]
    for cut in (100, 450, 2500):  # inside the probation, right after it, long after
        a = ARTimeDetector(CFG)
        run(a, pts[:cut])
        raw = a.to_bytes()
        b = ARTimeDetector.from_bytes(raw, CFG)
        assert b.to_bytes() == raw
        assert run(a, pts[cut:]) == run(b, pts[cut:])


def test_state_from_other_settings_or_cut_short_is_refused() -> None:
    det = ARTimeDetector(CFG)
    run(det, stream(2000))
    raw = det.to_bytes()
    with pytest.raises(ValueError, match="other settings"):
        ARTimeDetector.from_bytes(raw, ARTimeConfig(probation=750))
    with pytest.raises(ValueError, match="expected"):
        ARTimeDetector.from_bytes(raw[:-1], CFG)


def test_state_stays_under_two_kilobytes() -> None:
    det = ARTimeDetector(CFG)
    rng = random.Random(7)
    sizes = []
    for i in range(20000):  # a wandering series keeps making categories: capacity holds
        det.update(STEP * i, rng.uniform(0, 100) if i % 97 < 5 else 50 + 10 * math.sin(i / 9))
        if i % 500 == 0:
            sizes.append(len(det.to_bytes()))
    assert len(det.cats) == CFG.capacity
    assert max(sizes) <= 2048


def test_runs_repeat_exactly_and_input_is_untouched() -> None:
    pts = stream(seed=5)
    before = copy.deepcopy(pts)
    assert run(ARTimeDetector(CFG), pts) == run(ARTimeDetector(CFG), pts)
    assert pts == before


def test_missing_values_are_skipped() -> None:
    pts = stream()
    holed = [(ts, math.nan if i % 50 == 7 else v) for i, (ts, v) in enumerate(pts)]
    det = ARTimeDetector(CFG)
    out = run(det, holed)
    assert all(0.0 <= s <= 1.0 for s in out)
    assert max(s for (_, v), s in zip(holed, out, strict=True) if v != v) == 0.0
    assert det.i == 1 + sum(v == v for _, v in holed)


def test_a_constant_series_never_alarms() -> None:
    assert max(run(ARTimeDetector(CFG), [(STEP * i, 3.0) for i in range(3000)])) == 0.0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ARTimeDetector(ARTimeConfig(window=6))
    with pytest.raises(ValueError):
        ARTimeDetector(ARTimeConfig(levels=7))
