"""Multivariate anomaly model of one service: River HalfSpaceTrees on its feature vector.

The univariate detectors see one feature at a time; this model sees the combination
(request rate, error rate, p95, p99 of the service's 10 s window), so "normal rate but a
little more errors and a little slower" can stand out. It is kept cheap: 5 trees of height
6 (≈ 9 µs a point, ≈ 25 KB pickled) and one model per service, not per series.

Each feature is squashed into [0, 1) by ``x / (x + typical)``, ``typical`` being a slow
running mean of the feature, so HalfSpaceTrees' fixed limits fit every service. The raw
mass score goes through a ``TailHistogram`` like the univariate scores, so its calibrated
score is comparable with theirs.

>>> m = ServiceModel(seed=1)
>>> calm = [m.update({"rate_per_s": 50 + i % 5, "error_rate": 0.01, "p95": 100.0,
...                   "p99": 150.0}) for i in range(400)]
>>> max(q for q, _ in calm[200:]) < 9
True
>>> q, _ = m.update({"rate_per_s": 5.0, "error_rate": 0.6, "p95": 900.0, "p99": 2000.0})
>>> q > 6
True
"""

from __future__ import annotations

import math

from river.anomaly import HalfSpaceTrees

from detectors.calibration import TailHistogram

FEATURES = ("rate_per_s", "error_rate", "p95", "p99")
WARMUP = 180  # points before alarms: a reference window plus a calibrated histogram


class ServiceModel:
    """HalfSpaceTrees + calibration for one service's feature vector."""

    def __init__(self, n_trees: int = 5, height: int = 6, window_size: int = 60,
                 seed: int = 0) -> None:
        self.trees = HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size,
                                    limits={f: (0.0, 1.0) for f in FEATURES}, seed=seed)
        self.typical = dict.fromkeys(FEATURES, 0.0)
        self.last = dict.fromkeys(FEATURES, 0.0)
        self.hist = TailHistogram(rate=0.005)
        self.n = 0
        self.window_size = window_size

    def _squash(self, x: dict[str, float]) -> dict[str, float]:
        out = {}
        for f in FEATURES:
            v = x.get(f, math.nan)
            v = self.last[f] if not math.isfinite(v) else max(v, 0.0)  # missing: carry over
            self.last[f] = v
            t = self.typical[f]
            t = v if self.n == 0 else t + 0.01 * (v - t)
            self.typical[f] = t
            out[f] = v / (v + t) if v + t > 0 else 0.0
        return out

    def update(self, x: dict[str, float]) -> tuple[float, float]:
        """Score the vector, then learn it: ``(-log p, raw mass score)``; 0 in warm-up."""
        z = self._squash(x)
        raw = float(self.trees.score_one(z))  # type: ignore[no-untyped-call]
        self.trees.learn_one(z)  # type: ignore[no-untyped-call]
        self.n += 1
        if self.n <= self.window_size:  # no reference window yet: the score means nothing
            return 0.0, raw
        s = 20.0 * raw  # the histogram's range is [0, 20)
        p = self.hist.tail(s)
        self.hist.add(s)  # calibrate from the first reference window on, alarm after WARMUP
        return (-math.log(p) if p > 0 and self.n > WARMUP else 0.0), raw
