"""Slow calls counted over windows: a dependency or route with a few calls a window slowing.

A series with a few timed calls a window has noisy percentiles: its median is one call of
three, and a window of single calls has medians as spread as the calls themselves. A delay
that makes every call three times slower then scores no better, window by window, than the
series' ordinary spikes (a network delay of 363 ms on a dependency called 1-8 times a
window reached a warning after 69 s). The calls themselves say it at once: 11 calls in a
row above the 90th percentile of that edge's history.

So route and edge windows carry their latencies in coarse log buckets
(``WindowStats.lat_hist``, a factor ``e^0.2`` apart). The scorer keeps a decayed histogram
of each such series' past calls (`Reference`, ``MEMORY_WINDOWS`` windows of memory) and
counts, in each window, the calls in buckets above the one holding its ``REF_Q`` quantile
(ties do not count). If the calls are independent draws from the reference distribution,
that count among ``n`` calls is Binomial(``n``, ``p0``), ``p0`` the reference's share
above that bucket (at most ``1 - REF_Q``): the one-sided quantile (sign) test (Conover,
*Practical Nonparametric Statistics*, 3.2), exact however few the calls. `slow_calls`
combines the last windows with calls, as `scoring.slow_run` does: the best of the last
k = 2 .. ``RUN_WINDOWS`` windows, less the log of the number tried (Bonferroni), counting
only runs with slow calls in two windows or more (``MIN_SLOW`` in all), and only while at
least half the newest window's calls are slow.

Assumptions: calls are independent under normal operation (bursts of slow calls that
share a cause make the test too eager: it needs two windows and is a percentile's
evidence, still gated by the change being large, ``significance.practical``), and the
history is mostly normal. It applies to windows of fewer than ``SPARSE_CALLS`` calls:
above that, a window's own percentiles are precise and are scored as they are.

>>> from collections import Counter
>>> ref = Reference()
>>> for _ in range(30):  # a history of calls near 150 ms, now and then up to 450 ms
...     ref.learn(Counter(map(key_of, (120, 140, 150, 160, 180, 250, 300, 350, 400, 450))))
>>> ref.exceedances(Counter(map(key_of, (150, 170, 380))))[1]  # usual calls: none slow
0
>>> n, x, p0 = ref.exceedances(Counter(map(key_of, (500, 520, 550, 600, 700))))
>>> n, x, round(p0, 3)
(5, 5, 0.103)
>>> slow_calls([(3, 0, 0.1), (5, 5, 0.1)])  # slow calls in the newest window only
0.0
>>> round(slow_calls([(5, 5, 0.1), (3, 3, 0.1)]), 1)  # two windows of slow calls
18.4
>>> slow_calls([(4, 1, 0.1), (3, 0, 0.1), (5, 1, 0.1), (2, 1, 0.1)]) < 1  # spikes
True
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from itertools import accumulate

STEP = 0.2  # bucket width in log(ms): e^0.2 = 1.22
LOW = -12  # the lowest bucket (0.09 ms; zeros and below go there) ...
BINS = 72  # ... and how many: up to ~160 s (above goes in the last)
REF_Q = 0.9  # calls beyond this quantile of the history are slow
MEMORY_WINDOWS = 500  # the reference's decay: a window's weight halves in ~350 windows
MIN_REF_CALLS = 50.0  # history (decayed calls) before a series is tested
SPARSE_CALLS = 20  # windows with this many calls or more are not tested
RUN_WINDOWS = 6  # a minute of 10 s windows: the longest run combined
MIN_SLOW = 3  # slow calls in all, over at least two windows, for a run to count
DECAY = 1.0 - 1.0 / MEMORY_WINDOWS
REFRESH = 8  # windows between two readings of the history's quantile bucket

Calls = tuple[int, int, float]  # a window's calls, slow calls among them, their null share


def key_of(ms: float) -> int:
    """The bucket of one latency (ms)."""
    if ms <= 0:
        return LOW
    return min(max(math.floor(math.log(ms) / STEP), LOW), LOW + BINS - 1)


class Reference:
    """A decayed histogram of a series' past calls (``BINS`` float32 counts, an ``array``:
    cheaper per item than numpy for a few items a window).

    Decay is lazy: each window's calls are added with a weight that grows by ``1 / DECAY``
    (``gain``), so older ones weigh less by ``DECAY`` a window without touching every bucket;
    the histogram is rescaled when the weight gets large. The bucket holding the ``REF_Q``
    quantile and the share above it are read again every ``REFRESH`` windows (the history
    moves by under 2 % in between)."""

    __slots__ = ("age", "gain", "hist", "p0", "top", "total")

    def __init__(self, hist: array[float] | None = None) -> None:
        self.hist = array("f", bytes(4 * BINS)) if hist is None else hist
        self.gain = 1.0  # the weight of the next window's calls
        self.total = sum(self.hist)  # in the same (scaled) units as ``hist``
        self.top, self.p0, self.age = BINS - 1, 1.0, REFRESH  # refreshed before first use

    def learn(self, window: Mapping[int, int]) -> None:
        """Add a window's calls (bucket -> count); older ones fade by ``DECAY``."""
        self.gain /= DECAY
        hist, gain = self.hist, self.gain
        for k, n in window.items():
            hist[min(max(int(k), LOW), LOW + BINS - 1) - LOW] += n * gain
            self.total += n * gain
        self.age += 1
        if gain > 1e6:
            self.hist = array("f", (v / gain for v in hist))
            self.total, self.gain = self.total / gain, 1.0

    def calls(self) -> float:
        """The decayed number of calls in the history."""
        return self.total / self.gain

    def exceedances(self, window: Mapping[int, int]) -> Calls | None:
        """(calls, calls above the ``REF_Q`` bucket, the reference's share above it), or
        None while the history is shorter than ``MIN_REF_CALLS``."""
        if self.calls() < MIN_REF_CALLS:
            return None
        if self.age >= REFRESH:
            cum = list(accumulate(self.hist))
            total = cum[-1]
            # the bucket holding the quantile (a hair under it: float sums of equal weights)
            self.top = bisect_left(cum, REF_Q * total * (1 - 1e-6))
            calls = total / self.gain
            # one more slow call than seen: never zero
            self.p0 = ((total - cum[self.top]) / self.gain + 1.0) / (calls + 1.0)
            self.total, self.age = total, 0
        top = self.top + LOW
        n = sum(window.values())
        x = sum(c for k, c in window.items() if int(k) > top)
        return n, x, self.p0

    def to_json(self) -> list[list[float]]:
        """Its non-empty buckets, [index, decayed count] (to 3 decimals)."""
        return [[i, round(float(v) / self.gain, 3)] for i, v in enumerate(self.hist)
                if v / self.gain > 0.0005]

    @classmethod
    def from_json(cls, doc: Sequence[Sequence[float]]) -> Reference:
        hist = array("f", bytes(4 * BINS))
        for i, v in doc:
            if 0 <= int(i) < BINS:
                hist[int(i)] = float(v)
        return cls(hist)


def binom_sf(x: int, n: int, p: float) -> float:
    """P(X >= x) for X ~ Binomial(n, p), summed exactly (n is small here)."""
    if x <= 0:
        return 1.0
    if x > n:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp
             + (n - k) * lq for k in range(x, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def slow_calls(run: Sequence[Calls]) -> float:
    """The -log p that the slow calls of a series' last windows with calls (oldest first,
    at most ``RUN_WINDOWS``) are chance: the best over the last k >= 2 of them that hold
    slow calls in at least two windows and ``MIN_SLOW`` in all, less log(number of k
    tried). 0 unless at least half the newest window's calls are slow (the run is now)."""
    calls, slow, _ = run[-1] if run else (0, 0, 0.0)
    if len(run) < 2 or slow == 0 or 2 * slow < calls:
        return 0.0
    best, n, x, p0, windows = 0.0, 0, 0, 0.0, 0
    for k in range(1, len(run) + 1):
        calls, slow, p = run[-k]
        n, x, p0 = n + calls, x + slow, max(p0, p)  # the largest share: conservative
        windows += slow > 0
        if k >= 2 and windows >= 2 and x >= MIN_SLOW:
            best = max(best, -math.log(max(binom_sf(x, n, p0), 1e-300)))
    return max(best - math.log(len(run) - 1), 0.0)
