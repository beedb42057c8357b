"""What holds across fleets: instances pooled, discrete noise floors, fleet-wide shifts.

Three rules that owe nothing to one data set (docs/detection.md, "Series that come and go"):

- **Instance pooling.** A metric series with an instance label (``instance``, ``pod``,
  ``host``, ``container``, ``node``) comes and goes with every deploy and autoscale, so it
  is not scored on its own history. Its siblings (same service, name and other labels) are
  pooled into one service-level series, ``svc/name{...,instance=*}``, scored like any other
  (the mean of a gauge; the sum of discrete gauges; the summed increase of counters). An
  instance is scored only against its siblings of the same window: a robust z (median and
  MAD) over at least ``MIN_SIBLINGS`` of them, held for ``SIBLING_RUN`` windows in a row.
- **Discrete noise floor.** A gauge whose every value is an integer (queue depth, pods,
  threads) moves in quanta; a change is news only beyond ``K_QUANTA`` quanta and beyond
  the Poisson noise of its level (``POISSON_Z`` standard deviations), as a count is.
  ``up`` (the liveness convention) is exempt: its one quantum is the whole story.
- **Fleet-wide shift.** When most services' traffic moves the same way in one window
  (``FLEET_SHARE`` of at least ``FLEET_MIN`` services), it is load: the traffic and metric
  anomalies going that way are demoted (dropped), unless errors or latency moved too on
  that service. A collapse (critical) is never demoted.

>>> split_instance("cart/queue_depth{env=prod,pod=cart-7f-x2}")
('cart/queue_depth{env=prod,pod=*}', 'cart-7f-x2')
>>> split_instance("cart/queue_depth{env=prod}") is None
True
>>> discrete_significant(2.0, 0.3)  # a queue going 0 -> 2 is not news
False
>>> discrete_significant(40.0, 12.0), discrete_significant(16.0, 12.0)
(True, False)
>>> z = sibling_z({"a": 30.0, "b": 31.0, "c": 29.5, "d": 71.0})
>>> round(z["d"][0]) > 6, abs(z["a"][0]) < 1
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

INSTANCE_LABELS = ("instance", "pod", "host", "container", "node")
MIN_SIBLINGS = 3  # fewer instances cannot say which one is unlike the others
SIBLING_Z = 6.0  # robust z (median, 1.4826 MAD) that makes an instance an outlier ...
SIBLING_REL = 0.25  # ... and at least this far from the median, relative to it ...
SIBLING_RUN = 2  # ... in this many of its windows in a row
K_QUANTA = 3.0  # a discrete gauge must move by more than this many quanta ...
POISSON_Z = 3.0  # ... and this many Poisson standard deviations of its level
FLEET_MIN = 4  # a fleet-wide shift needs at least this many services moving ...
FLEET_SHARE = 0.5  # ... and this share of the services seen in that window
FLEET_Z = 3.0  # a service "moves" when its traffic is this many typical errors off ...
FLEET_REL = 0.15  # ... and this fraction of its expected value
EXEMPT = frozenset(("up",))  # liveness gauges: one quantum is the whole story


def split_instance(series: str) -> tuple[str, str] | None:
    """The pooled series of an instance's metric series, and the instance; None if the
    series has no instance label."""
    i = series.find("{")
    if i < 0 or not series.endswith("}"):
        return None
    parts = series[i + 1:-1].split(",")
    for k, part in enumerate(parts):
        key, _, value = part.partition("=")
        if key in INSTANCE_LABELS:
            parts[k] = f"{key}=*"
            return f"{series[:i]}{{{','.join(parts)}}}", value
    return None


def integral(mean: float, lo: float, hi: float, last: float) -> bool:
    """Whether a metric window's readings (its min, max and last; its mean when it has
    none of them) are whole numbers, as a discrete gauge's are.

    >>> integral(0.667, 0.0, 1.0, 1.0), integral(0.5, math.nan, math.nan, math.nan)
    (True, False)
    """
    values = [v for v in (lo, hi, last) if math.isfinite(v)] or [mean]
    return all(not math.isfinite(v) or v == round(v) for v in values)


def quantum_of(q: int, *values: float) -> int:
    """The step of a discrete gauge: the greatest common divisor of its readings so far
    (``q``, 0 before any) and ``values`` (a count per minute sampled as tally x 6 moves in
    sixes).

    >>> quantum_of(0, 6.0, 12.0, 0.0), quantum_of(6, 3.0), quantum_of(0, 0.0)
    (6, 3, 0)
    """
    for v in values:
        if math.isfinite(v) and v == round(v) and abs(v) < 2**53:
            q = math.gcd(q, int(abs(v)))
    return q


def discrete_significant(x: float, expected: float, quantum: float = 1.0) -> bool:
    """Whether a discrete gauge's change from ``expected`` to ``x`` is beyond its noise:
    ``K_QUANTA`` quanta and ``POISSON_Z`` Poisson standard deviations of its level."""
    lam = max(expected, 0.0) / quantum
    return abs(x - expected) / quantum > max(K_QUANTA, POISSON_Z * math.sqrt(lam))


def sibling_z(values: Mapping[str, float], floor: float = 0.0
              ) -> dict[str, tuple[float, float, float]]:
    """Per instance: (robust z against its siblings, their median, the scale). Empty with
    fewer than ``MIN_SIBLINGS``. The scale is 1.4826 MAD, at least ``floor`` and 2 % of
    the median (identical siblings would make any difference infinite)."""
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    if len(finite) < MIN_SIBLINGS:
        return {}
    med = _median(list(finite.values()))
    mad = _median([abs(v - med) for v in finite.values()])
    scale = max(1.4826 * mad, floor, 0.02 * abs(med), 1e-9)
    return {k: ((v - med) / scale, med, scale) for k, v in finite.items()}


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


@dataclass
class Pool:
    """The instances of one pooled series: this window's values, counters' last values."""

    service: str
    name: str
    counter: bool
    discrete: bool = True  # every value seen so far was a whole number
    quantum: int = 0  # their greatest common divisor (0: only zeros so far)
    values: dict[int, dict[str, float]] = field(default_factory=dict)  # (ws, end) keys
    last: dict[str, tuple[int, float]] = field(default_factory=dict)  # instance -> end, value
    runs: dict[str, int] = field(default_factory=dict)  # instance -> outlier windows in a row
    names: dict[str, str] = field(default_factory=dict)  # instance -> its own series
    done: dict[int, int] = field(default_factory=dict)  # window_s -> last end pooled

    def add(self, ws: int, end: int, instance: str, series: str, mean: float, last: float,
            lo: float, hi: float) -> None:
        """One instance's window (ignored when its window was pooled already)."""
        if end <= self.done.get(ws, -1):
            return
        self.names[instance] = series
        if not integral(mean, lo, hi, last):
            self.discrete = False
        elif not self.counter:
            self.quantum = quantum_of(self.quantum, lo, hi, last)
        if self.counter:  # its increase per second since its previous window
            prev = self.last.get(instance)
            self.last[instance] = (end, last)
            if prev is None or not math.isfinite(last) or not math.isfinite(prev[1]):
                value = math.nan
            else:
                seconds = max((end - prev[0]) / 1000.0, 1e-9)
                value = (last - prev[1] if last >= prev[1] else last) / seconds
        else:
            value = mean
        self.values.setdefault(ws * 10**13 + end, {})[instance] = value

    def pooled(self, ws: int, end: int, values: Mapping[str, float]) -> float:
        """The service-level value of one window: counters' increases summed (instances
        without a previous value counted at the others' mean), discrete gauges summed,
        other gauges averaged."""
        finite = [v for v in values.values() if math.isfinite(v)]
        if not finite:
            return math.nan
        if self.counter:
            return sum(finite) * len(values) / len(finite)
        if self.discrete:
            return float(sum(finite))
        return sum(finite) / len(finite)

    def forget_before(self, end: int) -> None:
        """Drop counters' last values of instances not seen since ``end`` (churned away)."""
        for k in [k for k, (e, _) in self.last.items() if e < end]:
            del self.last[k]
        if len(self.names) > 4 * max(len(self.last), 16):  # names of churned instances
            self.names = {k: v for k, v in self.names.items()
                          if k in self.last or k in self.runs}


def fleet_shift(moves: Mapping[str, float]) -> float:
    """The direction of a fleet-wide traffic shift (+1 up, -1 down, 0 none) from each
    service's signed move in one window (+1, -1, or 0 for still).

    >>> fleet_shift({"a": 1, "b": 1, "c": 1, "d": 1, "e": 0, "f": -1})
    1.0
    >>> fleet_shift({"a": 1, "b": 1, "c": 0, "d": 0, "e": 0})
    0.0
    """
    n = len(moves)
    for sign in (1.0, -1.0):
        k = sum(1 for m in moves.values() if m == sign)
        if k >= FLEET_MIN and k >= FLEET_SHARE * n:
            return sign
    return 0.0
