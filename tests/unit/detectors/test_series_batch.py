"""The vectorised ``SeriesBank`` scores exactly like one scalar ``SeriesDetector`` per row."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from detectors.scoring import STREAM
from detectors.series import DEFAULT, SeriesConfig, SeriesDetector
from detectors.series_batch import SeriesBank


def _value(rng: random.Random, t: int, i: int) -> float:
    spike = 60.0 if rng.random() < 0.003 else 0.0
    return 10 + 5 * math.sin(2 * math.pi * t / 288 + i) + rng.gauss(0, 1 + i % 3) + spike


@pytest.mark.parametrize("cfg", [DEFAULT, STREAM], ids=["nab", "stream"])
def test_bank_matches_scalar_detectors_over_weeks(cfg: SeriesConfig) -> None:
    rng = random.Random(7)
    n, points = 12, 4600  # 5-minute points: 16 days, so daily and weekly profiles compete
    dets = [SeriesDetector(cfg) for _ in range(n)]
    bank = SeriesBank(cfg, capacity=4)  # grows while rows are added
    rows = np.array([bank.add() for _ in range(n)])
    for t in range(points):
        ts = 1_700_000_000 + 300.0 * t - (300.0 if t % 97 == 0 else 0.0)  # some out of order
        xs = [_value(rng, t, i) for i in range(n)]
        if t % 50 == 7:
            xs[3] = math.nan  # a missing point
        got = bank.update(rows, np.full(n, ts), np.array(xs))
        for j, want in enumerate(d.update(ts, x) for d, x in zip(dets, xs, strict=True)):
            have = (got.score[j], got.expected[j], got.lo[j], got.hi[j], got.raw[j])
            for a, b in zip(want, have, strict=True):
                assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1, abs(a))
    for d, r in zip(dets, rows, strict=True):  # a row converts back to the same detector
        back = bank.detector(int(r))
        assert back.n == d.n and back.level == pytest.approx(d.level, rel=1e-12)
        assert len(back.to_bytes()) == len(d.to_bytes()) < 2048


def test_rows_carry_a_detector_state_and_only_the_given_rows_move() -> None:
    det = SeriesDetector(STREAM)
    for i in range(200):
        det.update(10.0 * i, 5.0 + i % 4)
    bank = SeriesBank(STREAM)
    a, b = bank.add(det), bank.add(det)
    got = bank.update(np.array([a]), np.array([2000.0]), np.array([90.0]))
    assert got.score[0] == pytest.approx(det.update(2000.0, 90.0).score, abs=1e-12)
    assert bank.n[b] == 200 and bank.n[a] == 201  # row b was not touched
