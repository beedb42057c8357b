"""Turn a raw anomaly statistic into a tail probability, comparable across series.

A ``TailHistogram`` keeps an exponentially forgetting histogram of a non-negative
statistic ``s`` (we feed it ``log1p(z)``, z = |residual| / typical error) and answers
"how often was the statistic at least this large lately?". Beyond what it has seen it
falls back on a prior tail ``exp(-slope * s)``, so a series that has only produced small
errors still gives a tiny probability to a huge one, and a new series (empty histogram)
is usable at once. Its ``-log`` tail probability is the same scale for every series: a
flat line and a noisy one both say ``p = 0.001`` only for a one-in-a-thousand residual.

Forgetting costs O(1) per point: instead of shrinking every bin, each new point is added
with a weight that grows by ``1 / (1 - rate)``; all bins are rescaled when it gets large.
"""

from __future__ import annotations

import math
import struct
from array import array

BINS = 40  # bins of width BIN_W over s = log1p(z) in [0, 20); the last one is open
BIN_W = 0.5
_HEAD = struct.Struct("<dd")


class TailHistogram:
    """Forgetting histogram of a statistic >= 0 that answers tail probabilities.

    >>> h = TailHistogram(rate=0.01)
    >>> for i in range(500):
    ...     h.add(0.25 if i % 100 else 3.0)  # a 3.0 once in a hundred points
    >>> 0.003 < h.tail(3.0) < 0.02, h.tail(8.0) < 1e-4  # ~1 in 100, and far beyond
    (True, True)
    """

    __slots__ = ("counts", "prior_slope", "prior_weight", "rate", "total", "weight")

    def __init__(self, rate: float = 0.002, prior_weight: float = 1.0,
                 prior_slope: float = 1.0) -> None:
        self.rate = rate
        self.prior_weight = prior_weight
        self.prior_slope = prior_slope
        self.counts = array("d", bytes(8 * BINS))
        self.total = 0.0
        self.weight = 1.0

    def tail(self, s: float) -> float:
        """P(S >= s) under the recent history, smoothed by the prior tail."""
        b = int(s / BIN_W)
        # in the open last bin nothing seen is known to be larger: only the prior is left
        mass = 0.0 if b >= BINS else (
            sum(self.counts[b + 1:]) + self.counts[b] * (b + 1 - s / BIN_W))
        pw = self.prior_weight * self.weight
        return (mass + pw * math.exp(-self.prior_slope * s)) / (self.total + pw)

    def add(self, s: float) -> None:
        """Record one value of the statistic."""
        w = self.weight
        self.counts[min(int(s / BIN_W), BINS - 1)] += w
        self.total += w
        w /= 1.0 - self.rate
        if w > 1e6:  # rescale so the numbers stay small; tail() is unchanged
            c = self.counts
            for i in range(BINS):
                c[i] /= w
            self.total /= w
            w = 1.0
        self.weight = w

    def to_bytes(self) -> bytes:
        """The learnt state (not the settings), 16 + 8 * BINS bytes."""
        return _HEAD.pack(self.total, self.weight) + self.counts.tobytes()

    def load_bytes(self, raw: bytes) -> None:
        """Restore the state written by ``to_bytes``."""
        self.total, self.weight = _HEAD.unpack_from(raw)
        self.counts = array("d", raw[_HEAD.size:_HEAD.size + 8 * BINS])

    @staticmethod
    def size() -> int:
        """Bytes used by ``to_bytes``."""
        return _HEAD.size + 8 * BINS
