"""Multivariate anomaly model of one service: River HalfSpaceTrees on its feature vector.

The univariate detectors see one feature at a time; this model sees the combination
(request rate, error rate, p95, p99 of the service's 10 s window), so "normal rate but a
little more errors and a little slower" can stand out. It is kept cheap: 5 trees of height
6 (≈ 9 µs a point, ≈ 11 KB as bytes) and one model per service, not per series.

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

Its state travels through Kafka as ``to_bytes``: a magic, a version byte, the settings,
the calibration and every tree node's split and masses as plain numbers (never pickle:
whoever can write the state topic must not run code in the worker). Anything else is
refused with ``ValueError``:

>>> twin = ServiceModel.from_bytes(m.to_bytes())
>>> x = {"rate_per_s": 52.0, "error_rate": 0.02, "p95": 110.0, "p99": 160.0}
>>> twin.update(x) == m.update(x)
True
>>> ServiceModel.from_bytes(b"\\x80\\x05junk")
Traceback (most recent call last):
...
ValueError: not a ServiceModel snapshot (bad magic)
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any

from river.anomaly import HalfSpaceTrees
from river.tree.padded import PaddedBranch, PaddedLeaf

from detectors.calibration import TailHistogram

FEATURES = ("rate_per_s", "error_rate", "p95", "p99")
WARMUP = 180  # points before alarms: a reference window plus a calibrated histogram
MAGIC = b"LWHS"  # snapshot format of ``ServiceModel.to_bytes``
VERSION = 1
# magic, version, n_trees, height, window_size, seed, n, HST counter, first window, built
_HEAD = struct.Struct("<4sBHHIqqI??")
_VECTORS = struct.Struct(f"<{2 * len(FEATURES)}d")  # typical, last
MAX_TREES = 64  # bounds on what a snapshot may ask us to allocate
MAX_HEIGHT = 12
MAX_WINDOW = 1 << 20
_LEAF = -1  # feature index of a leaf node


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

    # -- snapshots ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Settings, calibration and every tree node as plain numbers (see the module doc)."""
        hst: Any = self.trees
        built = bool(hst.trees)
        head = _HEAD.pack(MAGIC, VERSION, hst.n_trees, hst.height, hst.window_size,
                          hst.seed, self.n, hst.counter,
                          hst._first_window, built)
        parts = [head, _VECTORS.pack(*(self.typical[f] for f in FEATURES),
                                     *(self.last[f] for f in FEATURES)),
                 struct.pack("<d", self.hist.rate), self.hist.to_bytes()]
        if built:
            feats, thresholds, masses = array("b"), array("d"), array("I")
            index = {f: i for i, f in enumerate(FEATURES)}
            for nodes in hst._tree_nodes:  # depth-first, as river keeps them
                for node in nodes:
                    if isinstance(node, PaddedBranch):
                        feats.append(index[node.feature])
                        thresholds.append(node.threshold)
                    else:
                        feats.append(_LEAF)
                    masses.extend((node.l_mass, node.r_mass))
            parts += [feats.tobytes(), thresholds.tobytes(), masses.tobytes()]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ServiceModel:
        """Rebuild a model from ``to_bytes``; ValueError for anything else (nothing is run)."""
        if raw[:4] != MAGIC:
            raise ValueError("not a ServiceModel snapshot (bad magic)")
        if len(raw) < _HEAD.size:
            raise ValueError("truncated ServiceModel snapshot")
        (_, version, n_trees, height, window, seed, n, counter, first, built
         ) = _HEAD.unpack_from(raw)
        if version != VERSION:
            raise ValueError(f"ServiceModel snapshot version {version}, expected {VERSION}")
        if not (1 <= n_trees <= MAX_TREES and 1 <= height <= MAX_HEIGHT
                and 1 <= window <= MAX_WINDOW and seed >= 0 and n >= 0
                and counter < window):
            raise ValueError("ServiceModel snapshot settings out of bounds")
        m = cls(n_trees=n_trees, height=height, window_size=window,
                seed=seed)
        at = _HEAD.size
        hist_end = at + _VECTORS.size + 8 + TailHistogram.size()
        nodes = n_trees * ((1 << (height + 1)) - 1) if built else 0
        branches = n_trees * ((1 << height) - 1) if built else 0
        if len(raw) != hist_end + nodes + 8 * branches + 8 * nodes:
            raise ValueError("ServiceModel snapshot has the wrong length")
        vec = _VECTORS.unpack_from(raw, at)
        if not all(math.isfinite(v) and v >= 0 for v in vec):
            raise ValueError("ServiceModel snapshot has a negative or non-finite feature")
        k = len(FEATURES)
        m.typical, m.last = dict(zip(FEATURES, vec[:k], strict=True)), dict(
            zip(FEATURES, vec[k:], strict=True))
        at += _VECTORS.size
        (m.hist.rate,) = struct.unpack_from("<d", raw, at)
        if not 0.0 < m.hist.rate < 1.0:
            raise ValueError("ServiceModel snapshot: calibration rate out of bounds")
        m.hist.load_bytes(raw[at + 8:hist_end])
        m.n = n
        hst: Any = m.trees
        hst.counter, hst._first_window = counter, first
        if built:
            at = hist_end
            feats = array("b", raw[at:at + nodes])
            thresholds = array("d", raw[at + nodes:at + nodes + 8 * branches])
            masses = array("I", raw[at + nodes + 8 * branches:])
            cursor = [0, 0]  # next node, next branch

            def node(depth: int) -> Any:
                i = cursor[0]
                cursor[0] += 1
                lm, rm = masses[2 * i], masses[2 * i + 1]
                if depth == height:
                    if feats[i] != _LEAF:
                        raise ValueError("ServiceModel snapshot: a branch below the height")
                    return PaddedLeaf(l_mass=lm, r_mass=rm)  # type: ignore[no-untyped-call]
                f = feats[i]
                if not 0 <= f < k:
                    raise ValueError("ServiceModel snapshot: bad split feature")
                t = thresholds[cursor[1]]
                cursor[1] += 1
                if not 0.0 <= t <= 1.0:
                    raise ValueError("ServiceModel snapshot: split outside the limits")
                left = node(depth + 1)
                return PaddedBranch(left, node(depth + 1), FEATURES[f], t, lm, rm)  # type: ignore[no-untyped-call]

            hst.trees = [node(0) for _ in range(n_trees)]
            hst._tree_nodes = [list(t.iter_dfs()) for t in hst.trees]
        return m
