"""Is a change practically significant, and one event per service and window.

The calibrated score says a value is rare for its series; these rules say it matters. A
count-based feature (request rate, error rate, template count) must move by more than the
Poisson noise of the window's events: at least ``MIN_EVENTS`` events and ``POISSON_Z``
standard deviations, so one error in four requests on a quiet route is not an incident.

A latency percentile is as good as the timed requests beyond it (``beyond``: over 150
requests a "p99" is the third slowest one), and a few slow requests move it. So a
percentile's change is an anomaly when ``CONFIRM_TAIL`` requests beyond it show it in one
window, or when it holds for windows in a row that together have ``RUN_TAIL`` requests
beyond it (``confirmed``): two windows of 45 requests for a p95, never one slow burst. Or
when two windows with timed requests in a row each had their median beyond it: the whole
distribution moved twice, not a few slow requests (a service with a request every few
seconds that slows down tenfold; two such windows each beyond p = 0.0015 happen by chance
one time in 400,000).
``practical`` puts the noise rules together with a feature's minimum change. Simultaneous
anomalies of one service (its routes, metrics, features) are one event.

A route of a dozen requests a window sees an error now and then, so its calibrated error
score learns that a big error rate is common, and no single window of an error burst there
clears ``MIN_EVENTS``. So a route's errors are also counted over windows in a row that
each have errors above the route's long-run rate (``error_run``): two or more such windows
whose errors, together, are beyond ``RUN_Q`` under a Poisson law at the rate the route had
when the run began (``poisson_tail_q``) are an anomaly. The rate is frozen at the start, so
the burst itself, which the model learns, does not raise the bar it is tested against.

>>> significant("error_rate", 0.25, 0.0, count=4, ws=10)  # one error in four requests
False
>>> significant("error_rate", 0.16, 0.0, count=50, ws=10)  # eight errors where none were
True
>>> beyond("p99", 150), beyond("p95", 40), beyond("error_rate", 4)
(1.5, 2.0, inf)
>>> confirmed(beyond("p95", 400), run=None)  # 20 requests beyond the p95: one window
True
>>> confirmed(beyond("p95", 40), None), confirmed(beyond("p95", 40), run=2.0)
(False, True)
>>> confirmed(beyond("p95", 1, 90.0, 9.0), run=1.0, shifted=True)  # 1 request, 10x, twice
True
>>> single_window("p95", samples=60), single_window("p95", 400), single_window("mean", 1)
(False, True, True)
>>> run = None
>>> for k, (errors, requests) in enumerate([(2, 12), (2, 11), (2, 13)]):  # 0.2 % before
...     run = error_run(run, 10_000 * k, 10, errors, requests, base=0.002)
>>> run[1:3], run[4], round(run_q(run), 1)  # tested at the 0.5 % floor: 0.18 expected
((3, 6.0), 0.005, 17.0)
>>> error_run(run, 40_000, 10, 0, 12, 0.002) is None  # a window without errors ends it
True
"""

from __future__ import annotations

import math

from detectors.scoring_bank import Dir, FeatureSpec
from schemas.anomalies import PERCENTILES, AnomalyEvent

MIN_EVENTS = 4.0  # a count-based change needs at least this many events more (or fewer) ...
POISSON_Z = 3.0  # ... and this many Poisson standard deviations
CONFIRM_TAIL = 10.0  # requests beyond a percentile that make one window enough ...
RUN_TAIL = 4.0  # ... else, over windows in a row (at least two), this many
RUN_GAP = 2  # windows without timed requests that do not break such a run
RUN_Q = 13.8  # -log p (p = 1e-6) of a route's errors over windows in a row ...
RATE_FLOOR = 0.005  # ... tested at no less than this error rate; after this many windows
RUN_WINDOWS = 30  # a run starts again at the rate learnt since (a lasting change is news once)
Run = tuple[int, int, float, float, float]  # end ms, windows, errors, requests, base rate
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
# which of one service's anomalies in a window stands for the others: the broadest symptom
_SCOPE_RANK = {"service": 0, "route": 1, "edge": 2, "metric": 3}
_DETECTOR_RANK = {"siblings": 0, "series": 1}  # the one naming the odd instance first


def significant(feature: str, x: float, expected: float, count: int, ws: int,
                dispersion: float = 1.0) -> bool:
    """Whether a change of ``feature`` is beyond the noise of the window's event count
    (a percentile's noise is its requests beyond it: ``confirmed``). Error lines are counted
    in failures: ``dispersion`` error lines to a failure (``Dispersion``)."""
    if feature == "error_rate":
        phi = max(dispersion, 1.0)
        k, lam = x * count / phi, max(expected, 0.0) * count / phi
    elif feature == "rate_per_s":
        k, lam = x * ws, max(expected, 0.0) * ws
    elif feature == "count":
        k, lam = x, max(expected, 0.0)
    else:
        return True
    return abs(k - lam) >= max(MIN_EVENTS, POISSON_Z * math.sqrt(lam))


def poisson_tail_q(k: float, lam: float) -> float:
    """``-log P(X >= k)`` for ``X ~ Poisson(lam)``, when ``k > lam`` (else 0).

    >>> round(poisson_tail_q(4, 0.18), 1), poisson_tail_q(1, 2.0)
    (10.2, 0.0)
    """
    k = round(k)
    if k <= 0 or k <= lam:
        return 0.0
    lam = max(lam, 1e-12)
    term = total = 1.0  # the tail's terms relative to its first, P(X = k)
    for i in range(1, 500):
        term *= lam / (k + i)
        total += term
        if term < 1e-12 * total:
            break
    return lam - k * math.log(lam) + math.lgamma(k + 1) - math.log(total)


def error_run(run: Run | None, end: int, ws: int, errors: float, requests: int,
              base: float) -> Run | None:
    """The run of windows in a row with more errors than the route's long-run rate
    ``base`` would give, after the window ending at ``end``; None when it breaks it. A run
    of ``RUN_WINDOWS`` starts again from this window."""
    if errors < 1 or errors <= base * requests:
        return None
    if run is not None and run[0] == end - ws * 1000 and run[1] < RUN_WINDOWS:
        return end, run[1] + 1, run[2] + errors, run[3] + requests, run[4]
    return end, 1, float(errors), float(requests), max(base, RATE_FLOOR)


def run_q(run: Run) -> float:
    """How rare a run's errors are (``-log p``); 0 for one window or a few errors."""
    _, windows, errors, requests, base = run
    lam = base * requests
    if windows < 2 or errors - lam < MIN_EVENTS:
        return 0.0
    return poisson_tail_q(errors, lam)


def run_band(run: Run, q: float) -> tuple[float, float]:
    """A run's error rate and the highest rate its base rate gives short of ``-log p`` =
    ``q``: the evidence of an anomaly the run raised, which one window's band does not
    show (each window of a run can be within it).

    >>> [round(r, 3) for r in run_band((0, 3, 6.0, 36.0, 0.002), 9.0)]  # 6 of 36, 2 at most
    [0.167, 0.056]
    """
    _, _, errors, requests, base = run
    lam = base * requests
    k = math.floor(lam) + 1
    while k < requests and poisson_tail_q(k, lam) < q:
        k += 1
    return errors / requests, (k - 1) / requests


def beyond(feature: str, samples: int, median: float = math.nan,
           expected: float = math.nan) -> float:
    """Timed requests beyond a percentile in a window of ``samples`` (inf for any other
    feature: its noise is not a tail's). When the window's median is above the percentile's
    expected value, at least half of the requests are beyond that: the whole distribution
    moved, not just its tail (a slow service with few requests)."""
    if feature in PERCENTILES:
        tail = samples * (100 - int(feature[1:])) / 100
        return max(tail, math.ceil(samples / 2)) if median > expected else tail
    return math.inf


def confirmed(tail: float, run: float | None, shifted: bool = False) -> bool:
    """Whether a percentile's change is real: ``tail`` requests beyond it in this window,
    after a run of windows in a row with ``run`` beyond it (None: no run before); or
    ``shifted``: this window's median and the run's last window's were beyond it."""
    return tail >= CONFIRM_TAIL or (run is not None and (run + tail >= RUN_TAIL or shifted))


def single_window(feature: str, samples: int) -> bool:
    """Whether one window's change of ``feature`` is enough (no run needed)."""
    return beyond(feature, samples) >= CONFIRM_TAIL


def practical(spec: FeatureSpec, x: float, expected: float, count: int, ws: int,
              min_change: float = 1.0, dispersion: float = 1.0) -> Dir | None:
    """The direction of a change that matters (bad way, large enough, beyond the window's
    count noise), or None."""
    direction: Dir = "up" if x > expected else "down"  # ``large_enough``, inline: hot
    need = max(spec.min_abs, spec.min_rel * abs(expected)) * min_change
    if direction not in spec.bad or abs(x - expected) < need:
        return None
    return direction if significant(spec.name, x, expected, count, ws, dispersion) else None


def large_enough(spec: FeatureSpec, x: float, expected: float, min_change: float = 1.0
                 ) -> Dir | None:
    """The direction of a change the bad way at least the feature's minimum change (absolute
    and relative to ``expected``, times ``min_change``), or None: ``practical`` without the
    count noise."""
    direction: Dir = "up" if x > expected else "down"
    need = max(spec.min_abs, spec.min_rel * abs(expected)) * min_change
    return direction if direction in spec.bad and abs(x - expected) >= need else None


DISPERSION_WINDOWS = 720  # the memory of ``Dispersion`` (two hours of 10 s windows)
Dispersion = tuple[float, float, float]  # decayed sums: windows, error lines, their squares


def learn_dispersion(d: Dispersion | None, errors: float) -> Dispersion:
    """Add one ordinary window's error lines to a series' decayed sums (``dispersion``)."""
    n, s1, s2 = d or (0.0, 0.0, 0.0)
    keep = 1.0 - 1.0 / DISPERSION_WINDOWS
    return n * keep + 1.0, s1 * keep + errors, s2 * keep + errors * errors


def dispersion(d: Dispersion | None) -> float:
    """Error lines to a failure: the index of dispersion (variance / mean) of a series'
    error lines per window, at least 1.

    One failure logs several error lines (the exception, its stack, the access line with a
    500, a retry), so error lines come in clusters, and a count of lines overstates the
    evidence as a Poisson law reads it: three failed requests logging two lines each are
    six lines, but three events. For failures arriving as a Poisson stream and logging
    ``M`` lines each, the variance of a window's lines over their mean is ``E[M^2] / E[M]``
    (the compound Poisson law), ``M`` when it is fixed: the overdispersion that
    quasi-Poisson models and Farrington's outbreak detection divide counts by. It is read
    from the windows that raised no error anomaly, decayed over ``DISPERSION_WINDOWS``, with
    one single-line failure as a prior, so that a series with no errors yet is read line
    by line.

    >>> d = None
    >>> for k in [0] * 19 + [2]:  # a failure every 200 s, two lines each
    ...     d = learn_dispersion(d, k)
    >>> round(dispersion(d), 2), dispersion(None)
    (1.57, 1.0)
    >>> for k in ([0] * 19 + [2]) * 5:
    ...     d = learn_dispersion(d, k)
    >>> round(dispersion(d), 2)
    1.82
    >>> significant("error_rate", 0.12, 0.0, count=50, ws=10, dispersion=dispersion(d))
    False
    """
    if d is None:
        return 1.0
    n, s1, s2 = d
    return max(1.0, (s2 + 1.0) / (s1 + 1.0) - s1 / max(n, 1.0))


def _rank(a: AnomalyEvent) -> tuple[int, int, int, float]:
    return (_SEVERITY_RANK[a.severity], _SCOPE_RANK.get(a.scope, len(_SCOPE_RANK)),
            _DETECTOR_RANK.get(a.detector, len(_DETECTOR_RANK)), -a.score)


def standing(a: AnomalyEvent) -> tuple[int, int]:
    """Severity and breadth of scope (smaller is more): what a later event of the same
    service and window must beat to go out after one was already emitted."""
    return _rank(a)[:2]


def collapse(events: list[AnomalyEvent]) -> list[AnomalyEvent]:
    """One event per (variant, service, window end): the most severe, of the broadest scope
    (service, route, edge, metric), highest scored one;
    the others it stands for join its ``contributing`` as ``"<series>:<feature>": score``."""
    best: dict[tuple[str, str, int], AnomalyEvent] = {}
    merged: dict[tuple[str, str, int], dict[str, float]] = {}
    for a in events:
        key: tuple[str, str, int] = (a.variant, a.service, a.ts)
        top = best.get(key)
        if top is None or _rank(a) < _rank(top):
            best[key] = a
        merged.setdefault(key, {})[f"{a.series}:{a.feature}"] = round(a.score, 4)
    out = []
    for key, a in best.items():
        also = {k: v for k, v in merged[key].items() if k != f"{a.series}:{a.feature}"}
        out.append(a.model_copy(update={"contributing": {**a.contributing, **also}})
                   if also else a)
    return out
