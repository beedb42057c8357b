"""``ARTimeBank`` scores exactly as one ``ARTimeDetector`` per row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.artime import ARTimeConfig, ARTimeDetector
from detectors.artime_batch import ARTimeBank

CFG = ARTimeConfig(probation=300, capacity=6)  # small: probation ends and merges happen


def series(kind: int, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n)
    base = [10 + 3 * np.sin(2 * np.pi * t / 288), 50 + rng.normal(0, 5, n),
            rng.exponential(2, n), np.full(n, 4.0), 100 + np.cumsum(rng.normal(0, 1, n))][kind]
    x = base + np.where(rng.random(n) < 0.01, rng.normal(0, 30, n), 0.0)
    x[n // 2:] += 20 * (kind % 2)  # a level shift in some
    x[rng.random(n) < 0.02] = np.nan  # missing points
    return x


@pytest.mark.parametrize("seed", [0, 1])
def test_bank_rows_score_as_scalar_detectors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_series, n = 10, 2500
    xs = np.stack([series(k % 5, n, rng) for k in range(n_series)])
    start = rng.integers(0, 400, n_series)  # series start at different times
    bank = ARTimeBank(CFG, capacity=4)  # grows
    rows = np.array([bank.add() for _ in range(n_series)])
    dets = [ARTimeDetector(CFG) for _ in range(n_series)]
    got = np.zeros((n_series, n))
    want = np.zeros((n_series, n))
    for t in range(n):
        live = np.flatnonzero(t >= start)
        vals = xs[live, t - start[live]]
        got[live, t] = bank.update(rows[live], vals)
        for k, v in zip(live.tolist(), vals.tolist(), strict=True):
            want[k, t] = dets[k].update(0.0, v)
    assert np.array_equal(got, want)
    assert (want > 0).any()  # alarms, probations ended, merges at capacity: all compared
    assert bank.ready[rows].all() and (bank.ncat[rows] == CFG.capacity).any()
    for k in range(n_series):
        assert bank.detector(int(rows[k])).to_bytes() == dets[k].to_bytes()


def test_rows_convert_both_ways_and_free_rows_are_fresh() -> None:
    det = ARTimeDetector(CFG)
    for k in range(1000):
        det.update(0.0, 5 + math.sin(k / 30))
    bank = ARTimeBank(CFG)
    r = bank.add(det)
    assert bank.detector(r).to_bytes() == det.to_bytes()
    bank.free(r)
    assert bank.add() == r
    assert bank.detector(r).to_bytes() == ARTimeDetector(CFG).to_bytes()


def test_probations_ending_together_are_spread_over_calls() -> None:
    """Series that started together end their probations ``max_ends`` a call, the others
    waiting over their latest values; every row gets there, and none alarms meanwhile."""
    cfg = ARTimeConfig(probation=104)  # one point per downsampled value
    bank = ARTimeBank(cfg, capacity=5, max_ends=2)
    rows = np.array([bank.add() for _ in range(5)])
    ready = []
    for t in range(cfg.pairs + 3):
        out = bank.update(rows, np.full(5, 10 + math.sin(t / 9)) + np.arange(5))
        ready.append(int(bank.ready[rows].sum()))
        assert not out[~bank.ready[rows]].any()
        assert all(len(bank.buf.get(int(r), [])) <= cfg.pairs for r in rows)
    assert ready[cfg.pairs - 2:] == [0, 2, 4, 5, 5]
