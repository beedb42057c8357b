"""Event-time tumbling windows over log events and metric points.

The hot path only bins: a log event adds to one 10 s accumulator per series (its service
and its route); latencies go into DDSketch log-buckets (a dict increment). Longer windows
(60 s by default) are built by merging their closed 10 s children, so they cost nothing
per event. A window closes when its service's watermark (the largest event time that
service sent) passes its end plus the grace period: services sharing a partition do not
push each other's windows shut, so one whose clock lags keeps its windows. A watermark never
passes ``ceiling_ms`` (the caller sets it to the arrival clock): one event stamped in the
future is counted in its own window but does not close the windows of the events that
follow it. An event later than that is counted in ``late_dropped`` and left
out of the aggregates (its raw row is still stored by the caller).

>>> agg = WindowAggregator(base_s=10, rollups_s=(60,), grace_s=5)
>>> for i in range(20):
...     level = "ERROR" if i % 4 == 0 else "INFO"
...     agg.add_log("api", "GET /a", 1_700_000_000_000 + i * 1000, level, duration_ms=10.0 + i)
>>> closed = agg.advance(1_700_000_100_000)
>>> svc = [w for w in closed if w.scope == "service" and w.window_s == 60]
>>> svc[0].count, svc[0].error_count
(20, 5)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ddsketch import DDSketch

from detectors.slow_calls import LOW, key_of
from schemas.logs import ERROR_LEVELS
from schemas.windows import PEER_Q, Scope, WindowStats

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_MULT = 1 / math.log(_GAMMA)
_NAN = float("nan")


def sketch_key(value: float) -> int:
    """DDSketch log-bucket index of a positive value (relative accuracy 1 %)."""
    return math.ceil(math.log(value) * _MULT)


def bucket_value(key: int) -> float:
    """Representative value of a bucket, as DDSketch's logarithmic mapping defines it."""
    return 2 * _GAMMA**key / (1 + _GAMMA)


_COARSE: dict[int, int] = {}  # sketch key -> ``slow_calls`` bucket (a cache)


def coarse_hist(acc: Acc) -> dict[int, int]:
    """A window's latencies by ``detectors.slow_calls`` bucket (``WindowStats.lat_hist``)."""
    out: dict[int, int] = {}
    if acc.zeros:
        out[LOW] = acc.zeros
    for key, n in acc.buckets.items():
        c = _COARSE.get(key)
        if c is None:
            c = _COARSE[key] = key_of(bucket_value(key))
        out[c] = out.get(c, 0) + n
    return out


@dataclass(slots=True)
class Acc:
    """Running aggregates of one series in one window."""

    count: int = 0
    error_count: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, int] = field(default_factory=dict)  # latency sketch keys
    zeros: int = 0  # latencies of exactly 0
    vmin: float = math.inf
    vmax: float = -math.inf
    vsum: float = 0.0
    last: float = _NAN
    last_ts: int = -1
    version: int = 0  # bumped on every change
    emitted_version: int = -1  # ``version`` at the last emission
    revision: int = -1  # revision of the last emission, -1 = never emitted
    provisional: bool = False  # last emitted by a flush while still open
    closed: bool = False  # a base window taken out of ``open`` by ``advance``

    def merge(self, other: Acc) -> None:
        """Add another accumulator (a child window) into this one."""
        self.count += other.count
        self.error_count += other.error_count
        for level, n in other.levels.items():
            self.levels[level] = self.levels.get(level, 0) + n
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n
        self.zeros += other.zeros
        self.vmin = min(self.vmin, other.vmin)
        self.vmax = max(self.vmax, other.vmax)
        self.vsum += other.vsum
        if other.last_ts >= self.last_ts:
            self.last, self.last_ts = other.last, other.last_ts

    def add_latency(self, ms: float) -> None:
        """Record one latency (ms) in the sketch and the sum."""
        if ms > 0:
            key = sketch_key(ms)
            self.buckets[key] = self.buckets.get(key, 0) + 1
        else:
            self.zeros += 1
        self.vsum += ms

    def samples(self) -> int:
        """The latencies recorded (the support of the quantiles)."""
        return self.zeros + sum(self.buckets.values())

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """Latency quantiles read straight off the buckets, exactly as DDSketch's
        ``get_quantile_value`` does (lower rank, bucket's representative value)."""
        n = self.samples()
        keys = sorted(self.buckets)
        out = []
        for q in qs:
            rank = q * (n - 1)
            if rank < self.zeros:
                out.append(0.0)
                continue
            seen = self.zeros
            for key in keys:
                seen += self.buckets[key]
                if seen > rank:
                    out.append(bucket_value(key))
                    break
            else:
                out.append(bucket_value(keys[-1]))
        return out

    def sketch(self) -> DDSketch:
        """The latencies as a mergeable ``ddsketch.DDSketch``."""
        sk = DDSketch(relative_accuracy=RELATIVE_ACCURACY)
        for key, n in self.buckets.items():
            sk.add(bucket_value(key), n)
        if self.zeros:
            sk.add(0.0, self.zeros)
        return sk


# (scope, series, service, route/name) identifies a series; plus window size and start.
SeriesId = tuple[Scope, str, str, str]
WindowKey = tuple[SeriesId, int, int]  # (series, window_s, start_ms)
# an instance's siblings in one window: their latencies, median, p90, its own latencies above
# that p90, and how many siblings served them
Peers = tuple[int, float, float, int, int]


@dataclass(slots=True)
class _Recent:
    """The series of a (service, route) and their base windows for the latest event."""

    sids: tuple[SeriesId, ...]
    start: int = -1  # base window start of ``accs``
    accs: list[Acc] = field(default_factory=list)


class WindowAggregator:
    """Tumbling event-time windows for the series of one partition."""

    def __init__(self, base_s: int = 10, rollups_s: Iterable[int] = (60,),
                 grace_s: float = 30.0) -> None:
        self.base_ms = base_s * 1000
        self.rollups_ms = tuple(r * 1000 for r in rollups_s)
        if any(r % self.base_ms for r in self.rollups_ms):
            raise ValueError("every rollup window must be a multiple of the base window")
        self.grace_ms = int(grace_s * 1000)
        self.open: dict[WindowKey, Acc] = {}  # base windows
        # rollup windows: their base children (kept until the rollup closes) and emission state
        self.rollups: dict[WindowKey, tuple[dict[int, Acc], Acc]] = {}
        self.watermarks: dict[str, int] = {}  # per service: the largest event time seen (ms)
        self.active: dict[str, float] = {}  # per service: ``now`` when it last sent an event
        self.now = 0.0  # wall-clock seconds, set by the caller once per batch
        self.ceiling_ms = 1 << 62  # no watermark passes this (the caller: the arrival clock)
        self.newest_ms = -1  # the latest event time of any service here (no ceiling)
        self.source = ""  # "<topic>:<partition>" it counts, on every window (`WindowStats`)
        self.late_dropped = 0
        self._recent: dict[tuple[str, str], _Recent] = {}  # by (service, route)
        # by (service, instance): the base window start and accumulator of its last request
        self._instances: dict[tuple[str, str], tuple[int, Acc]] = {}
        self._served: dict[tuple[str, int], set[str]] = {}  # (service, start) -> instances

    def _base(self, sid: SeriesId, ts_ms: int) -> Acc | None:
        start = ts_ms - ts_ms % self.base_ms
        acc = self.open.get((sid, self.base_ms, start))
        service = sid[2]
        watermark = self.watermarks.get(service, -1)
        if acc is None:
            acc = self._open_base(sid, start, watermark)
            if acc is None:
                return None
        if ts_ms > watermark:
            self.watermarks[service] = self._raised(watermark, ts_ms)
        if ts_ms > self.newest_ms:
            self.newest_ms = ts_ms
        self.active[service] = self.now
        acc.version += 1
        return acc

    def _raised(self, watermark: int, ts_ms: int) -> int:
        """The watermark after an event at ``ts_ms`` (later than it): up to the ceiling."""
        if ts_ms <= self.ceiling_ms:
            return ts_ms
        return watermark if watermark > self.ceiling_ms else self.ceiling_ms

    def _open_base(self, sid: SeriesId, start: int, watermark: int) -> Acc | None:
        """A new base window, linked to its rollups; None if it closed already (late)."""
        if start + self.base_ms + self.grace_ms <= watermark:
            self.late_dropped += 1
            return None
        acc = self.open[(sid, self.base_ms, start)] = Acc()
        for r in self.rollups_ms:
            parent = self.rollups.get((sid, r, start - start % r))
            if parent is None:
                parent = self.rollups[(sid, r, start - start % r)] = ({}, Acc())
            parent[0][start] = acc
        return acc

    def add_log(self, service: str, route: str, ts_ms: int, level: str,
                duration_ms: float | None = None) -> None:
        """Count one log event in its service series and, when it has one, its route series."""
        is_error = level in ERROR_LEVELS
        key = sketch_key(duration_ms) if duration_ms is not None and duration_ms > 0 else 0
        recent = self._recent.get((service, route)) or self._series_of(service, route)
        start = ts_ms - ts_ms % self.base_ms
        accs = recent.accs
        if recent.start != start or accs[0].closed:  # not the window of the last event
            accs = self._accs(recent, service, start)
            if not accs:
                return
        watermark = self.watermarks.get(service, -1)
        if ts_ms > watermark:
            self.watermarks[service] = self._raised(watermark, ts_ms)
        if ts_ms > self.newest_ms:
            self.newest_ms = ts_ms
        self.active[service] = self.now
        for acc in accs:
            acc.version += 1
            acc.count += 1
            levels = acc.levels
            levels[level] = levels.get(level, 0) + 1
            if is_error:
                acc.error_count += 1
            if duration_ms is not None:
                if duration_ms > 0:
                    buckets = acc.buckets
                    buckets[key] = buckets.get(key, 0) + 1
                else:
                    acc.zeros += 1
                acc.vsum += duration_ms

    def _accs(self, recent: _Recent, service: str, start: int) -> list[Acc]:
        """The open windows at ``start`` of the series, opened if need be and remembered;
        cut at the first that closed already (the event is late there)."""
        watermark = self.watermarks.get(service, -1)
        accs: list[Acc] = []
        for sid in recent.sids:
            acc = self.open.get((sid, self.base_ms, start)) or self._open_base(sid, start,
                                                                                watermark)
            if acc is None:
                return accs
            accs.append(acc)
        recent.start, recent.accs = start, accs
        return accs

    def _series_of(self, service: str, route: str) -> _Recent:
        """The series a log of ``service`` (and ``route``) counts in, remembered."""
        sids: tuple[SeriesId, ...] = (("service", service, service, ""),)
        if route:
            sids += (("route", f"{service} {route}", service, route),)
        if len(self._recent) >= 100_000:
            self._recent.clear()  # cheap bound; hot series come back at once
        recent = self._recent[service, route] = _Recent(sids)
        return recent

    def add_edge(self, caller: str, callee: str, ts_ms: int, ok: bool,
                 duration_ms: float | None = None) -> None:
        """Count one outbound call of ``caller`` to ``callee`` in their dependency edge
        series (``caller->callee``): calls, failed calls and their latencies, as a route."""
        acc = self._base(("edge", f"{caller}->{callee}", caller, callee), ts_ms)
        if acc is None:
            return
        level = "INFO" if ok else "ERROR"
        acc.count += 1
        acc.levels[level] = acc.levels.get(level, 0) + 1
        if not ok:
            acc.error_count += 1
        if duration_ms is not None:
            acc.add_latency(duration_ms)

    def add_instance(self, service: str, instance: str, ts_ms: int, duration_ms: float) -> None:
        """Count one request latency in the series of the instance (pod, host) that served
        it (``service@instance``), for comparing an instance with its siblings."""
        start = ts_ms - ts_ms % self.base_ms
        recent = self._instances.get((service, instance))
        if recent is not None and recent[0] == start and not recent[1].closed:
            acc = recent[1]  # the window of the instance's last request: no new keys
            watermark = self.watermarks.get(service, -1)
            if ts_ms > watermark:
                self.watermarks[service] = self._raised(watermark, ts_ms)
            self.active[service] = self.now
            acc.version += 1
        else:
            got = self._base(("instance", f"{service}@{instance}", service, instance), ts_ms)
            if got is None:
                return
            acc = got
            if len(self._instances) >= 100_000:
                self._instances.clear()  # cheap bound; busy instances come back at once
            self._instances[service, instance] = (start, acc)
            if len(self._served) >= 100_000:
                self._served.clear()  # bound: windows a flush emitted that never closed
            self._served.setdefault((service, start), set()).add(instance)
        acc.count += 1
        acc.add_latency(duration_ms)

    def add_metric(self, series: str, service: str, name: str, ts_ms: int, value: float) -> None:
        """Add one metric point to its series."""
        acc = self._base(("metric", series, service, name), ts_ms)
        if acc is None:
            return
        acc.count += 1
        acc.vsum += value
        acc.vmin = min(acc.vmin, value)
        acc.vmax = max(acc.vmax, value)
        if ts_ms >= acc.last_ts:
            acc.last, acc.last_ts = value, ts_ms

    def add_count(self, scope: Scope, series: str, service: str, name: str, ts_ms: int) -> None:
        """Count one occurrence (e.g. of a log template) in a plain counting series."""
        acc = self._base((scope, series, service, name), ts_ms)
        if acc is not None:
            acc.count += 1

    def advance(self, watermark_ms: int | None = None) -> list[WindowStats]:
        """Close every window whose end plus grace is at or before its service's watermark
        (``watermark_ms`` moves every service's watermark at least that far)."""
        if watermark_ms is not None:
            for service, w in self.watermarks.items():
                if watermark_ms > w:
                    self.watermarks[service] = watermark_ms
        wms, grace = self.watermarks, self.grace_ms

        def due(k: WindowKey) -> bool:
            return k[2] + k[1] <= wms.get(k[0][2], -1) - grace

        # A window flushed while open is emitted once more when it closes, unchanged or not:
        # consumers that wait for closed windows (the canary check) see a final version.
        out: list[WindowStats] = []
        keys = sorted(filter(due, self.open), key=_start)
        peers = {k: self._peers(k) for k in keys if k[0][0] == "instance"}
        for k in peers:
            self._served.pop((k[0][2], k[2]), None)
        for k in keys:
            acc = self.open.pop(k)  # its rollups keep it until they close
            acc.closed = True
            if acc.version != acc.emitted_version or acc.provisional:
                out.append(self._emit(k, acc, peers=peers.get(k)))
        for k in sorted(filter(due, self.rollups), key=_start):
            children, state = self.rollups.pop(k)
            stats = self._emit_rollup(k, children, state, final=True)
            if stats is not None:
                out.append(stats)
        return out

    def flush(self, services: Collection[str] | None = None) -> list[WindowStats]:
        """Emit every window that changed since it was last emitted (idle services, shutdown,
        rebalance), base windows and rollups alike; only ``services``' when given.

        The windows stay open: an event that arrives within grace re-emits them with a
        higher revision (the table keeps the latest).
        """
        def wanted(k: WindowKey) -> bool:
            return services is None or k[0][2] in services

        out = [self._emit(k, acc, provisional=True,
                          peers=self._peers(k) if k[0][0] == "instance" else None)
               for k, acc in sorted(self.open.items(), key=_item_start)
               if acc.version != acc.emitted_version and wanted(k)]
        for k, (children, state) in sorted(self.rollups.items(), key=_item_start):
            if wanted(k):
                stats = self._emit_rollup(k, children, state, provisional=True)
                if stats is not None:
                    out.append(stats)
        return out

    def idle_services(self, now: float, idle_s: float) -> set[str]:
        """Services that sent nothing for ``idle_s`` seconds of wall-clock time."""
        return {s for s, t in self.active.items() if now - t >= idle_s}

    def _emit_rollup(self, key: WindowKey, children: dict[int, Acc], state: Acc, *,
                     provisional: bool = False, final: bool = False) -> WindowStats | None:
        version = sum(c.version for c in children.values())
        if version == state.emitted_version and not (final and state.provisional):
            return None
        merged = Acc()
        for start in sorted(children):
            merged.merge(children[start])
        merged.revision = state.revision
        stats = self._emit(key, merged, provisional=provisional)
        state.revision, state.emitted_version = merged.revision, version
        state.provisional = provisional
        return stats

    def _peers(self, key: WindowKey) -> Peers | None:
        """An instance's base window against its siblings: the service's latencies of the
        same window less its own (their count, median and ``PEER_Q`` quantile), how many of
        its own lie above that quantile (a whole sketch bucket above: ties do not count), and
        how many other instances logged a latency in it (at least 1: the rest may have no
        host)."""
        (_, _, service, _), size, start = key
        mine, whole = self.open.get(key), self.open.get((("service", service, service, ""),
                                                         size, start))
        others = len(self._served.get((service, start), ())) - 1
        if mine is None or whole is None:
            return None
        rest = Acc(zeros=whole.zeros - mine.zeros)
        for b, n in whole.buckets.items():
            left = n - mine.buckets.get(b, 0)
            if left > 0:
                rest.buckets[b] = left
        m = rest.samples()
        if m <= 0:
            return None
        p50, p90 = rest.quantiles((0.5, PEER_Q))
        top = sketch_key(p90) if p90 > 0 else -(1 << 62)
        above = sum(n for b, n in mine.buckets.items() if b > top)
        return m, p50, p90, above, max(others, 1)

    def _emit(self, key: WindowKey, acc: Acc, *, provisional: bool = False,
              peers: Peers | None = None) -> WindowStats:
        (scope, series, service, name), size, start = key
        acc.revision += 1
        acc.emitted_version = acc.version
        acc.provisional = provisional
        # emitted open and not ended before the newest event here (events come in time
        # order): the stream may have stopped within it (a replay's end, a collector that
        # stops), so its counts may be cut short. One that ended before it is whole
        partial = provisional and start + size > self.newest_ms
        return to_stats(scope, series, service, name, size, start, acc, revision=acc.revision,
                        peers=peers, partial=partial, source=self.source)


def _start(key: WindowKey) -> tuple[int, int]:
    return key[2], key[1]


def _item_start(item: tuple[WindowKey, object]) -> tuple[int, int]:
    return _start(item[0])


def to_stats(scope: Scope, series: str, service: str, name: str, size_ms: int, start_ms: int,
             acc: Acc, revision: int = 0, peers: Peers | None = None,
             partial: bool = False, source: str = "") -> WindowStats:
    """Turn an accumulator into the message of the windows topic."""
    n = acc.count
    p50 = p95 = p99 = _NAN
    samples = acc.samples()
    if samples:
        p50, p95, p99 = acc.quantiles((0.5, 0.95, 0.99))
    metric = scope == "metric"
    has_values = metric and n > 0
    return WindowStats(
        series=series, service=service, scope=scope,
        route=name if scope == "route" else "", name="" if scope == "route" else name,
        window_s=size_ms // 1000,
        start=datetime.fromtimestamp(start_ms / 1000, tz=UTC),
        end=datetime.fromtimestamp((start_ms + size_ms) / 1000, tz=UTC),
        count=n, error_count=acc.error_count, level_counts=dict(acc.levels),
        error_rate=acc.error_count / n if n else 0.0,
        rate_per_s=n / (size_ms / 1000),
        p50=p50, p95=p95, p99=p99, samples=samples,
        lat_hist=coarse_hist(acc) if samples and scope in ("route", "edge") else {},
        min=acc.vmin if has_values else _NAN, max=acc.vmax if has_values else _NAN,
        mean=acc.vsum / n if has_values else _NAN, last=acc.last if has_values else _NAN,
        sum=acc.vsum, revision=revision, partial=partial, source=source,
        **({} if peers is None else {"peer_samples": peers[0], "peer_p50": peers[1],
                                     "peer_p90": peers[2], "above_peer_p90": peers[3],
                                     "peer_instances": peers[4]}),
    )
