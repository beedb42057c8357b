"""Is a change practically significant, and one event per service and window.

The calibrated score says a value is rare for its series; these rules say it matters. A
count-based feature (request rate, error rate, template count) must move by more than the
Poisson noise of the window's events: at least ``MIN_EVENTS`` events and ``POISSON_Z``
standard deviations, so one error in four requests on a quiet route is not an incident. A
latency percentile needs enough requests beyond it (over 20 requests a "p99" is the slowest
one). Over few requests beyond it, a percentile jumps with one burst of slow requests, so
such a change must hold for two windows in a row (``single_window`` says when one is enough:
``CONFIRM_TAIL`` requests beyond the percentile). ``practical`` puts these together with a
feature's minimum change. Simultaneous anomalies of one service (its
routes, metrics, features) are one event.

>>> significant("error_rate", 0.25, 0.0, count=4, ws=10)  # one error in four requests
False
>>> significant("error_rate", 0.16, 0.0, count=50, ws=10)  # eight errors where none were
True
>>> significant("p99", 900.0, 150.0, count=60, ws=10), significant("p95", 900.0, 150.0, 60, 10)
(False, True)
>>> single_window("p95", count=60), single_window("p95", count=400), single_window("mean", 1)
(False, True, True)
"""

from __future__ import annotations

import math

from detectors.scoring_bank import Dir, FeatureSpec
from schemas.anomalies import AnomalyEvent

MIN_EVENTS = 4.0  # a count-based change needs at least this many events more (or fewer) ...
POISSON_Z = 3.0  # ... and this many Poisson standard deviations
TAIL_EVENTS = 2.0  # a percentile needs this many requests beyond it (p99: 200 requests)
CONFIRM_TAIL = 10.0  # below this many requests beyond it, a percentile must hold two windows
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def significant(feature: str, x: float, expected: float, count: int, ws: int) -> bool:
    """Whether a change of ``feature`` is beyond the noise of the window's event count."""
    if feature in ("p95", "p99"):  # over fewer requests, a percentile is one slow request
        return count * (1.0 - int(feature[1:]) / 100) >= TAIL_EVENTS
    if feature == "error_rate":
        k, lam = x * count, max(expected, 0.0) * count
    elif feature == "rate_per_s":
        k, lam = x * ws, max(expected, 0.0) * ws
    elif feature == "count":
        k, lam = x, max(expected, 0.0)
    else:
        return True
    return abs(k - lam) >= max(MIN_EVENTS, POISSON_Z * math.sqrt(lam))


def single_window(feature: str, count: int) -> bool:
    """Whether one window's change of ``feature`` is enough (else it must hold for two)."""
    if feature in ("p95", "p99"):
        return count * (1.0 - int(feature[1:]) / 100) >= CONFIRM_TAIL
    return True


def practical(spec: FeatureSpec, x: float, expected: float, count: int, ws: int,
              min_change: float = 1.0) -> Dir | None:
    """The direction of a change that matters (bad way, large enough, beyond the window's
    noise), or None."""
    direction: Dir = "up" if x > expected else "down"
    need = max(spec.min_abs, spec.min_rel * abs(expected)) * min_change
    if direction not in spec.bad or abs(x - expected) < need:
        return None
    return direction if significant(spec.name, x, expected, count, ws) else None


def _rank(a: AnomalyEvent) -> tuple[int, bool, float]:
    return _SEVERITY_RANK[a.severity], a.detector != "series", -a.score


def collapse(events: list[AnomalyEvent]) -> list[AnomalyEvent]:
    """One event per (variant, service, window end): the most severe, highest scored one;
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
