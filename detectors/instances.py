"""One instance slower than its siblings: a pod starved of CPU, a bad host, a noisy neighbour.

A service's pods serve the same requests, routed at random, so under normal operation their
latencies are draws from one distribution. A pod whose requests are slow where its siblings'
are not is the anomaly; its own history says nothing (pods come and go with every deploy),
and the service's percentiles may barely move when it is one pod of many.

Each window, ingest compares an instance's latencies with its siblings' (the rest of the
service's in the same window, pooled; ``streams.windows``): their count ``m`` and 90th
percentile, and how many ``k`` of the instance's ``n`` latencies lie above it. How likely
``k`` is by chance is the precedence test (Nelson, 1963): if the instance's requests and
its siblings' are draws from one distribution, the number of the instance's values above
the siblings' ``r``-th smallest of ``m`` has a known, distribution-free law, exact however
few the requests (``exceed_q``). An instance is an outlier in a window when that is
unlikely and its median is at least ``MIN_RATIO`` times its siblings' (a slowdown a user
feels, not a 20 % drift). It must be an outlier ``RUN`` windows in a row (a window with too few
requests to compare neither extends nor ends the run). The run's p-values, combined by
Fisher's method (``fisher_q``), must pass ``day_q``, a stated false-alarm rate of one a
day per instance at most (or the variant's threshold if it is higher), plus
log(instances), Bonferroni's correction for testing every instance of the service: at
most about one false alarm a day per service.

Assumptions: requests are spread over the instances at random (no sticky sessions that send
one kind of request to one pod); a service's pods run one version (a canary's pods are
compared with the old ones, which is what a canary analysis does, and a slow canary is
worth knowing).

>>> round(slower((35, 140.0, 78, 30.0, 59.0, 30)), 1)  # 30 of its 35 above their p90
33.0
>>> slower((40, 31.0, 75, 30.0, 60.0, 2))  # like its siblings
0.0
"""

from __future__ import annotations

import math

from schemas.windows import PEER_Q

MIN_RATIO = 2.0  # an instance's median must be at least this many times its siblings'
RUN = 2  # windows in a row an instance must be an outlier in
MIN_SAMPLES = 4  # an instance's own latencies (fewer: its median is one or two requests)
# (latencies, p50, siblings' latencies, siblings' p50, siblings' p90, own latencies above it)
Instance = tuple[int, float, int, float, float, int]


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def exceed_q(n: int, k: int, m: int, r: int) -> float:
    """-log P(at least ``k`` of ``n`` draws exceed the ``r``-th smallest of ``m`` other draws
    of the same continuous distribution): the precedence test's exact tail.

    >>> round(exceed_q(27, 14, 27, 25), 2)  # 14 of 27 above the 25th smallest of 27 others
    7.94
    >>> exceed_q(10, 0, 30, 28)
    0.0
    """
    if k <= 0:
        return 0.0
    total = _log_comb(n + m, n)
    terms: list[float] = []
    top = -math.inf
    for j in range(k, n + 1):
        t = _log_comb(j + m - r, j) + _log_comb(n - j + r - 1, n - j) - total
        if t < top - 40.0 and t < terms[-1]:
            break  # past the mode the terms only fall: the rest add nothing
        terms.append(t)
        top = max(top, t)
    p = math.exp(top) * sum(math.exp(t - top) for t in terms)
    return -math.log(min(p, 1.0))


def fisher_q(total: float, windows: int) -> float:
    """Fisher's method: -log P(the summed -log p of ``windows`` independent tests reaches
    ``total`` by chance) = total - log(sum over j < windows of total^j / j!).

    >>> round(fisher_q(8.5, 2), 2), fisher_q(8.5, 1)
    (6.25, 8.5)
    """
    term, acc = 1.0, 1.0
    for j in range(1, windows):
        term *= total / j
        acc += term
    return total - math.log(acc)


def day_q(window_s: int) -> float:
    """-log p of one false alarm a day among ``window_s`` windows: log(windows a day).

    >>> round(day_q(10), 2)
    9.06
    """
    return math.log(86_400 / window_s)


def rank(q: float, n: int) -> int:
    """The 1-based rank of the value a window reports as its ``q`` quantile of ``n``
    (``streams.windows.Acc.quantiles``: the lower rank)."""
    return int(q * (n - 1)) + 1


def comparable(w: Instance) -> bool:
    """Whether a window holds enough to compare the instance with its siblings at all
    (``MIN_SAMPLES`` of its own latencies and some of theirs): a window that does not says
    nothing either way, so it neither extends an outlier's run nor ends it."""
    return w[0] >= MIN_SAMPLES and w[2] > 0


def slower(w: Instance) -> float:
    """-log p that an instance's latencies in one window come from its siblings'
    distribution, or 0 when it is not slower (not ``comparable``, or its median under
    ``MIN_RATIO`` times theirs).

    ``w``: (latencies, p50, siblings' latencies, their p50, their p90, own latencies above
    that p90), as a ``WindowStats`` of scope instance carries them.
    """
    n, p50, m, peer_p50, _, k = w
    if not comparable(w) or not (p50 >= MIN_RATIO * peer_p50):
        return 0.0
    return exceed_q(n, k, m, rank(PEER_Q, m))


__all__ = ["MIN_RATIO", "MIN_SAMPLES", "RUN", "Instance", "comparable", "day_q", "exceed_q",
           "fisher_q", "rank", "slower"]
