"""Counters, gauges, histograms and timers published as ``logwarden.metrics.v1`` points.

Nothing is sent per observation: a background thread publishes every instrument each
``flush_interval_s`` (10 s by default), and ``close()`` publishes a last time.

- counter ``name``: one point, kind ``counter``, the cumulative total since start.
- gauge ``name``: one point, kind ``gauge``, the last value set.
- histogram / timer ``name``: ``name.count`` and ``name.sum`` (kind ``counter``, cumulative)
  and, when the interval had observations, ``name.p50``, ``name.p95``, ``name.p99`` and
  ``name.max`` (kind ``gauge``) over that interval. Quantiles come from a uniform reservoir of
  at most ``reservoir_size`` values per interval, so memory stays bounded at any rate.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from schemas.topics import METRICS
from sdk.publisher import Publisher

P = ParamSpec("P")
R = TypeVar("R")
Inst = TypeVar("Inst", "Counter", "Gauge", "Histogram")
Labels = Mapping[str, Any] | None
_Key = tuple[str, tuple[tuple[str, str], ...]]


def _labels(labels: Labels) -> dict[str, str]:
    return {str(k): str(v) for k, v in (labels or {}).items()}


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values.

    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.0
    """
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))]


class Counter:
    """A cumulative count; ``inc`` adds a non-negative amount."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, n: float = 1.0) -> None:
        """Add ``n`` (>= 0)."""
        if n < 0:
            raise ValueError("a counter only goes up; use a gauge")
        with self._lock:
            self.value += n


class Gauge:
    """A value that goes up and down; the last one set is published."""

    def __init__(self) -> None:
        self.value: float | None = None

    def set(self, v: float) -> None:
        """Set the current value."""
        self.value = float(v)


class Histogram:
    """Observations summarised per flush interval (count, sum, quantiles, max)."""

    def __init__(self, reservoir_size: int = 2048) -> None:
        self._lock = threading.Lock()
        self._size = reservoir_size
        self.count = 0
        self.sum = 0.0
        self._seen = 0  # observations in this interval
        self._sample: list[float] = []
        self._max = float("-inf")

    def observe(self, v: float) -> None:
        """Record one value."""
        with self._lock:
            self.count += 1
            self.sum += v
            self._seen += 1
            self._max = max(self._max, v)
            if len(self._sample) < self._size:
                self._sample.append(v)
            else:  # reservoir sampling: each value of the interval kept with equal chance
                j = random.randrange(self._seen)
                if j < self._size:
                    self._sample[j] = v

    def take(self) -> tuple[int, float, list[float], float]:
        """Totals, and the interval's sorted sample and max; starts a new interval."""
        with self._lock:
            sample, top = sorted(self._sample), self._max
            self._sample, self._seen, self._max = [], 0, float("-inf")
            return self.count, self.sum, sample, top


class Metrics:
    """A registry of instruments, published in the background every ``flush_interval_s``."""

    def __init__(self, publisher: Publisher, *, flush_interval_s: float = 10.0,
                 topic: str = METRICS, service: str | None = None,
                 background: bool = True) -> None:
        self.publisher = publisher
        self.topic = topic
        self.service = service or publisher.service
        self._lock = threading.Lock()
        self._instruments: dict[_Key, tuple[Counter | Gauge | Histogram, str | None]] = {}
        self._stop = threading.Event()
        self._interval = flush_interval_s
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._loop, name="sdk-metrics", daemon=True)
            self._thread.start()

    def counter(self, name: str, labels: Labels = None, *, unit: str | None = None) -> Counter:
        """The counter ``name`` with these labels (created on first use)."""
        return self._get(name, labels, unit, Counter)

    def gauge(self, name: str, labels: Labels = None, *, unit: str | None = None) -> Gauge:
        """The gauge ``name`` with these labels (created on first use)."""
        return self._get(name, labels, unit, Gauge)

    def histogram(self, name: str, labels: Labels = None, *,
                  unit: str | None = None) -> Histogram:
        """The histogram ``name`` with these labels (created on first use)."""
        return self._get(name, labels, unit, Histogram)

    def timer(self, name: str, labels: Labels = None) -> Timer:
        """Time a block (``with``) or a function (decorator) into histogram ``name``, in ms."""
        return Timer(self.histogram(name, labels, unit="ms"))

    def flush(self, now: datetime | None = None) -> int:
        """Publish every instrument now; return the number of points queued."""
        ts = now or datetime.now(UTC)
        with self._lock:
            items = list(self._instruments.items())
        sent = 0
        for (name, label_items), (inst, unit) in items:
            for point in self._points(name, dict(label_items), unit, inst, ts):
                sent += self.publisher.publish(self.topic, point, key=self.service)
        return sent

    def close(self) -> None:
        """Stop the background thread and publish a last time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 1.0)
        self.flush()

    def _get(self, name: str, labels: Labels, unit: str | None, kind: type[Inst]) -> Inst:
        label_map = _labels(labels)
        key = (name, tuple(sorted(label_map.items())))
        with self._lock:
            found = self._instruments.get(key)
            if found is None:
                found = self._instruments[key] = (kind(), unit)
        inst = found[0]
        if not isinstance(inst, kind):
            raise TypeError(f"metric {name} is already a {type(inst).__name__.lower()}")
        return inst

    def _points(self, name: str, labels: dict[str, str], unit: str | None,
                inst: Counter | Gauge | Histogram, ts: datetime) -> Iterator[dict[str, Any]]:
        def point(suffix: str, value: float, kind: str, unit: str | None) -> dict[str, Any]:
            p = {"ts": ts, "service": self.service, "name": name + suffix, "value": value,
                 "kind": kind, "labels": labels}
            if unit:
                p["unit"] = unit
            return p

        if isinstance(inst, Counter):
            yield point("", inst.value, "counter", unit)
        elif isinstance(inst, Gauge):
            if inst.value is not None:
                yield point("", inst.value, "gauge", unit)
        else:
            count, total, sample, top = inst.take()
            yield point(".count", count, "counter", None)
            yield point(".sum", total, "counter", unit)
            if sample:
                for q, suffix in ((0.5, ".p50"), (0.95, ".p95"), (0.99, ".p99")):
                    yield point(suffix, quantile(sample, q), "gauge", unit)
                yield point(".max", top, "gauge", unit)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # keep publishing; the next interval may work
                continue


class Timer:
    """Measures elapsed milliseconds into a histogram; a context manager or a decorator.

    Safe to share between threads and to nest: start times are kept per thread.
    """

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._starts = threading.local()

    def __enter__(self) -> Timer:
        stack: list[float] = self._starts.__dict__.setdefault("stack", [])
        stack.append(time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        start = self._starts.stack.pop()
        self.histogram.observe((time.perf_counter() - start) * 1000.0)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return fn(*args, **kwargs)

        return timed
