"""Conformance of the series detector: own byte format, compact, repeatable, gap-tolerant."""

from __future__ import annotations

import copy
import math
import random

import pytest

from detectors.series import SeriesConfig, SeriesDetector

STEP = 300.0


def stream(n: int = 3000, seed: int = 1) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(STEP * i, 20 + 5 * math.sin(i / 40) + rng.gauss(0, 1)) for i in range(n)]


def run(det: SeriesDetector, points: list[tuple[float, float]]) -> list[tuple[float, ...]]:
    return [tuple(det.update(ts, v)) for ts, v in points]


def test_bytes_round_trip_continues_identically() -> None:
    pts = stream()
    a = SeriesDetector()
    run(a, pts[:2000])
    b = SeriesDetector.from_bytes(a.to_bytes())
    assert run(a, pts[2000:]) == run(b, pts[2000:])


def test_to_bytes_round_trip_and_state_size() -> None:
    det = SeriesDetector()
    run(det, stream())
    raw = det.to_bytes()
    assert len(raw) <= 2048
    assert det.state_size() == len(raw)
    assert SeriesDetector.from_bytes(raw).to_bytes() == raw


def test_custom_config_is_given_back_on_restore() -> None:
    cfg = SeriesConfig(hold_points=10)
    det = SeriesDetector.from_bytes(SeriesDetector(cfg).to_bytes(), cfg)
    assert det._cfg == cfg


@pytest.mark.parametrize("raw", [b"", b"\x80\x05\x95junk", bytes(100), bytes(5000)])
def test_state_of_another_format_or_size_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        SeriesDetector.from_bytes(raw)


def test_runs_repeat_exactly() -> None:
    pts = stream(seed=5)
    assert run(SeriesDetector(), pts) == run(SeriesDetector(), pts)


def test_input_untouched() -> None:
    pts = stream()
    before = copy.deepcopy(pts)
    run(SeriesDetector(), pts)
    assert pts == before


def test_missing_values_and_gaps_are_tolerated() -> None:
    pts = stream()
    holed = [(ts, math.nan if i % 50 == 7 else v) for i, (ts, v) in enumerate(pts)]
    gapped = holed[:1000] + holed[1300:]  # a 25-hour outage
    det = SeriesDetector()
    out = [det.update(ts, v) for ts, v in gapped]
    assert all(0.0 <= o.score <= 1.0 and math.isfinite(o.expected) for o in out)
    nan_scores = [o.score for (_, v), o in zip(gapped, out, strict=True) if v != v]
    assert nan_scores and max(nan_scores) == 0.0  # a missing value is not an anomaly
    assert sum(o.score >= 0.997 for o in out[1000:1100]) <= 1  # the gap is not an alarm


def test_duplicate_and_out_of_order_timestamps() -> None:
    pts = stream(1000)
    pts = pts[:500] + pts[480:500] + pts[500:]  # 20 points repeated
    det = SeriesDetector()
    out = [det.update(ts, v) for ts, v in pts]
    assert len(out) == len(pts)
    assert max(o.score for o in out[500:520]) < 0.997
