"""Score windowed series online: features per window, one ``SeriesDetector`` per feature.

The detectors live as rows of numpy ``SeriesBank``s (one per feature key): a batch of
windows is one vectorised update per feature, then each window goes through the rules in
arrival order, exactly as the scalar detectors would have scored it. Snapshots keep the
scalar detectors' bytes.

Each (series, feature) is one univariate series (features, per-series state and batches:
``scoring_bank``). What counts as bad follows the feature: more errors or latency, a request
rate collapsing (or surging), a metric moving either way. Series that go silent get
zero-rate windows scored, so "the service stopped answering" is seen. Per service, a
multivariate ``ServiceModel`` scores the feature vector. Every variant (champion,
challenger) applies its own thresholds to the same calibrated scores: the shadow costs no
second model. A rare value is only an anomaly when the change matters (``practical``: the
bad way, large enough, beyond the Poisson noise of the window's events); a percentile over
few requests must hold for windows in a row (``confirmed``); the multivariate model alarms
only when one of the service's features changed that much in one window; the anomalies of
one service in a window are one event. After an alarm a series and feature stays quiet for
``cooldown_s``, unless it was calm for ``rearm_s`` in between: a new incident soon after
the last one is a new episode, not a repeat.

>>> from datetime import UTC, datetime
>>> from schemas.windows import WindowStats
>>> sc = WindowScorer(DetectionSettings())
>>> def win(i, errors):
...     t = 1_700_000_000 + 10 * i
...     return WindowStats(series="api", service="api", scope="service", window_s=10,
...         start=datetime.fromtimestamp(t - 10, UTC), end=datetime.fromtimestamp(t, UTC),
...         count=500, rate_per_s=50.0 + i % 3, error_rate=0.01 * (i % 2) + errors,
...         p95=100.0 + i % 7, p99=150.0 + i % 5)
>>> quiet = [a for i in range(300) for a in sc.score_batch([win(i, 0.0)])]
>>> len(quiet)
0
>>> [(a.feature, a.severity) for a in sc.score_batch([win(300, 0.4)]) if a.detector == "series"]
[('error_rate', 'critical')]
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from detectors.artime import ARTimeConfig
from detectors.feedback import ChangeLog
from detectors.instances import RUN as INSTANCE_RUN
from detectors.instances import comparable, day_q, fisher_q, slower
from detectors.levels import Levels, level_bins
from detectors.multivariate import ServiceModel
from detectors.pooling import (
    EXEMPT,
    FLEET_REL,
    FLEET_Z,
    SIBLING_REL,
    SIBLING_RUN,
    SIBLING_Z,
    Pool,
    discrete_significant,
    fleet_shift,
    integral,
    quantum_of,
    sibling_z,
    split_instance,
)
from detectors.scoring_bank import (
    ARTIME_FEATURES,
    COUNTER,
    RECOVERY_MS,
    SPECS,
    STREAM,
    Banks,
    Batch,
    Dir,
    FeatureSpec,
    SeriesState,
    bank_key,
    counter_rate,
    features,
    is_counter,
    occurrences,
    severity_of,
    specs_of,
    update_rows,
)
from detectors.series import Score, SeriesConfig
from detectors.settings import DetectionSettings, VariantConfig
from detectors.significance import (
    RUN_GAP,
    RUN_Q,
    RUN_TAIL,
    beyond,
    collapse,
    confirmed,
    dispersion,
    error_run,
    large_enough,
    learn_dispersion,
    practical,
    run_band,
    run_q,
    significant,
    single_window,
    standing,
)
from detectors.slow_calls import RUN_WINDOWS as CALL_WINDOWS
from detectors.slow_calls import SPARSE_CALLS, Reference, slow_calls
from schemas.anomalies import PERCENTILES, AnomalyEvent, anomaly_id
from schemas.windows import WindowStats

__all__ = ["MV_VERSION", "SPECS", "STREAM", "VERSION", "FeatureSpec", "SeriesState",
           "WindowScorer", "features", "practical"]

VERSION = "series-1"
ARTIME_VERSION = "artime-1"
# the detectors whose thresholds the false-alert budget steers (``offsets``)
STEERED = ("series", "hst", "artime")
MV_VERSION = "hst-1"
SIB_VERSION = "siblings-1"
_NOT_LOAD = frozenset(("error_rate", *PERCENTILES))  # what a fleet shift never demotes
EMITTED_KEPT = 100_000  # (variant, service, window end) keys remembered by ``_once``
# A source (one ingest partition, ``WindowStats.source``) that sent no window for this long
# (wall clock) stops holding back the silence of its series: it stopped, not lagged
SOURCE_IDLE_S = 30.0
HELD_KEPT = 10_000  # anomalies held by ``_hold`` at most (beyond it, the oldest go out)
SLOW_WINDOWS = 6  # a minute of 10 s windows: the longest run ``slow_run`` combines
MIN_Q = 2.5  # no offset takes a threshold below this (-log p; the hot filter is at 2.3)
HOT_Q = -math.log(0.1)  # the hot filter's -log p (a score of 0.9): a latency run's start
SIGN: dict[str, int] = {"up": 1, "down": -1}  # an alarm's direction as a sign
DIRS: dict[int, str] = {1: "up", -1: "down"}
Scored = list[tuple[FeatureSpec, float, Score, int]]


def slow_run(st: SeriesState, key: str, end: int, ws: int, q: float, requests: int) -> float:
    """Latency that stays high: the -log p of this window's percentile (``q``, 0 when it
    was lower than expected) joins those of the series' last windows with requests (a gap
    of more than ``RUN_GAP`` windows without any starts afresh). Fisher's method combines
    the last k of them, for each k from 2 to ``SLOW_WINDOWS`` whose slow windows hold at
    least ``RUN_TAIL`` requests (two slow requests are two draws from a heavy tail, however
    rare); the best, less log of the number of k tried (Bonferroni), is returned. Each
    window alone may be no rarer than the series' ordinary spikes, while several in a row
    are: a slow dependency with a request every few seconds. Assumes windows are
    independent under normal operation.

    >>> st = SeriesState(("s", "edge", "", "b"), Banks(STREAM))
    >>> [round(slow_run(st, "p50", 10_000 * i, 10, 3.8, 2), 1) for i in range(1, 5)]
    [0.0, 3.8, 5.4, 7.0]
    >>> round(slow_run(st, "p50", 80_000, 10, 3.8, 2), 1)  # three empty windows: a new run
    0.0
    >>> [round(slow_run(st, "p95", 10_000 * i, 10, 7.0, 1), 1) for i in range(1, 5)]
    [0.0, 0.0, 0.0, 18.1]
    """
    last = st.slow.get(key)
    n = requests if q > 0 else 0
    qs: tuple[float, ...]
    ns: tuple[int, ...]
    if last is None or end - last[0] > (RUN_GAP + 1) * ws * 1000:
        qs, ns = (q,), (n,)
    elif end == last[0]:  # the same window again (another variant, a revision)
        qs, ns = (*last[1][:-1], q), (*last[2][:-1], n)
    else:
        qs, ns = (*last[1], q)[-SLOW_WINDOWS:], (*last[2], n)[-SLOW_WINDOWS:]
    st.slow[key] = (end, qs, ns)
    best, total, slow = 0.0, qs[-1], ns[-1]
    for k in range(2, len(qs) + 1):
        total, slow = total + qs[-k], slow + ns[-k]
        if slow >= RUN_TAIL:
            best = max(best, fisher_q(total, k))
    return max(best - math.log(SLOW_WINDOWS - 1), 0.0)


class WindowScorer:
    """All series of one worker: ``score_batch(windows)`` -> anomalies (every variant).

    The detectors of a batch are updated together (``SeriesBank``, one numpy call per
    feature), then each window's scores go through the rules in arrival order.
    """

    def __init__(self, settings: DetectionSettings, changes: ChangeLog | None = None,
                 series_cfg: SeriesConfig = STREAM) -> None:
        self.settings = settings
        self.variants: list[tuple[str, VariantConfig]] = [("champion", settings.champion)]
        if settings.challenger is not None:
            self.variants.append(("challenger", settings.challenger))
        self.changes = changes or ChangeLog()
        self.series_cfg = series_cfg
        # ARTime's banks exist only when a variant asks for them (its state costs ~1.9 KB)
        artime = any(v.artime for _, v in self.variants)
        self.banks = Banks(series_cfg, ARTimeConfig(probation=settings.artime_probation)
                           if artime else None)
        self.states: dict[str, SeriesState] = {}
        self.dirty: set[str] = set()
        self.watermark: dict[int, int] = {}  # window_s -> latest window end seen (ms)
        # the same per source (ingest partition), when it last sent a window (``clock``),
        # and each series' source: silence is imputed only as far as a series' source went
        self.source_marks: dict[tuple[int, str], int] = {}
        self.source_seen: dict[str, float] = {}
        self.series_source: dict[str, str] = {}
        self.clock = time.monotonic
        self.scored = 0
        # (variant, detector) -> detector-wide threshold offset (``alert_budget``)
        self.offsets: dict[tuple[str, str], float] = {}
        self.pools: dict[str, Pool] = {}  # pooled series -> its instances
        self._pooling: set[str] = set()  # pools with windows waiting in this batch
        # (window_s, end) -> service -> its traffic's move in that window (+1, -1, 0)
        self.fleet: dict[tuple[int, int], dict[str, float]] = {}
        self.demoted = 0  # anomalies demoted as a fleet-wide shift (load)
        # the sources of services' traffic windows (logs partitions), the anomalies that
        # wait for them to pass their window end (``_hold``: when the clock held them) and
        # (variant, service, window end) of error and latency anomalies seen lately
        self.traffic_sources: set[str] = set()
        self.held: list[tuple[float, AnomalyEvent]] = []
        self.hurt: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        # (variant, service, window end) -> standing of the event emitted for it
        self.emitted: OrderedDict[tuple[str, str, int], tuple[int, int]] = OrderedDict()
        self.merged_late = 0  # events held back: their service's window already had one
        # the instance latency windows of this batch (scope instance, ``detectors.instances``)
        # and each slower instance's run: (service, instance, window_s) -> (last window end,
        # windows in a row, their summed -log p, the variants that alarmed on this run)
        self._instances: list[WindowStats] = []
        self.instance_runs: dict[tuple[str, str, int], tuple[int, int, float, str]] = {}
        # (variant, service) -> (first, last) window end of the service's run of windows
        # that were still bad (``_ongoing``)
        self.ongoing: dict[tuple[str, str], tuple[int, int]] = {}

    def score_batch(self, windows: Iterable[WindowStats]) -> list[AnomalyEvent]:
        """Score (then learn) each window; after the batch, score the silent series."""
        before = dict(self.watermark)
        before_src = dict(self.source_marks)
        now = self.clock()
        batch = Batch(self.banks)
        pool = self.settings.pool_instances
        for w in windows:
            if w.source:
                self.source_seen[w.source] = now
            if w.partial:  # the stream may have stopped inside it: no drop to see; scored
                continue  # once it closes
            if w.scope == "instance":
                if self.settings.instances and w.window_s in self.settings.window_s:
                    self._instances.append(w)
                continue
            if w.window_s in self.settings.window_s and (
                    w.scope != "edge" or self.settings.edges):
                end = int(w.end.timestamp() * 1000)
                if not (pool and w.scope == "metric" and self._pool(w, end)):
                    self._accept(batch, w, end)
                self.watermark[w.window_s] = max(self.watermark.get(w.window_s, end), end)
                if w.source:
                    if w.scope == "service":
                        self.traffic_sources.add(w.source)
                    self.series_source[w.series] = w.source
                    key = (w.window_s, w.source)
                    self.source_marks[key] = max(self.source_marks.get(key, end), end)
        out = self._pooled(batch) if self._pooling else []
        if self._instances:
            out += self._slow_instances()
        out += self._score_all(batch)
        for ws, mark in before.items():
            if self.watermark[ws] > mark:
                out += self._score_all(self._silences(ws, mark, before_src, now))
        if self.settings.fleet_demotion and (out or self.held):
            out = self._demote(self._hold(out, now))
        return self._once(collapse(out) if len(out) > 1 else out)

    def _once(self, events: list[AnomalyEvent]) -> list[AnomalyEvent]:
        """``collapse`` across batches: one event per (variant, service, window end) unless
        a later one is more severe or of a broader scope. A worker's windows come in batches
        of whatever its consumer read (the windows topic is keyed by series), so one
        service's windows of one end can be split; a replay at full speed splits them
        otherwise than one lived through."""
        out = []
        for a in events:
            key, rank = (a.variant, a.service, a.ts), standing(a)
            prev = self.emitted.get(key)
            if prev is not None and rank >= prev:
                self.merged_late += 1
                continue
            self.emitted[key] = rank
            out.append(a)
        while len(self.emitted) > EMITTED_KEPT:
            self.emitted.popitem(last=False)
        return out

    # -- instances pooled, siblings compared (``detectors.pooling``) -----------------------

    def _pool(self, w: WindowStats, end: int) -> bool:
        """Stash an instance's metric window in its pool; False if it has no instance."""
        split = split_instance(w.series)
        if split is None:
            return False
        group, instance = split
        pool = self.pools.get(group)
        if pool is None:
            pool = self.pools[group] = Pool(w.service, w.name, is_counter(w))
        pool.add(w.window_s, end, instance, w.series, w.mean, w.last, w.min, w.max)
        self._pooling.add(group)
        return True

    def _pooled(self, batch: Batch) -> list[AnomalyEvent]:
        """Each pool's windows of this batch: the pooled value into ``batch``; instances
        unlike their siblings as ``siblings`` anomalies."""
        out: list[AnomalyEvent] = []
        for group in sorted(self._pooling):
            pool = self.pools[group]
            st = self.states.get(group)
            if st is None:
                st = self.states[group] = SeriesState((pool.service, "metric", "", pool.name),
                                                      self.banks)
            for key in sorted(pool.values):
                values = pool.values[key]
                ws, end = divmod(key, 10**13)
                pool.done[ws] = max(pool.done.get(ws, end), end)
                st.discrete = pool.discrete and not pool.counter
                st.quantum = pool.quantum
                if end > st.last_end.get(ws, -1):
                    st.last_end[ws] = end
                    self.dirty.add(group)
                    batch.window(st, group, ws, end, len(values), len(values))
                    spec = COUNTER[0] if pool.counter else SPECS["metric"][0]
                    batch.point(st, ws, end, spec, pool.pooled(ws, end, values))
                out += self._siblings(st, group, pool, ws, end, values)
                pool.forget_before(end - 1_800_000)
            pool.values.clear()
        self._pooling.clear()
        return out

    def _siblings(self, st: SeriesState, group: str, pool: Pool, ws: int, end: int,
                  values: dict[str, float]) -> list[AnomalyEvent]:
        """Instances of one window far from their siblings' median, ``SIBLING_RUN`` windows
        in a row (a discrete gauge also beyond its quanta and Poisson noise)."""
        discrete = pool.discrete and not pool.counter
        med = sorted(values.values())[len(values) // 2] if values else 0.0
        floor = 0.0  # counts' own noise: Poisson, of the siblings' typical count
        if pool.counter and math.isfinite(med):
            floor = math.sqrt(max(med, 0.0) * ws) / ws
        elif discrete and math.isfinite(med):
            floor = max(1.0, math.sqrt(max(med, 0.0)))
        zs = sibling_z(values, floor)
        out: list[AnomalyEvent] = []
        for instance in sorted(values):
            got = zs.get(instance)
            odd = False
            if got is not None:
                z, med, scale = got
                x = values[instance]
                odd = (abs(z) >= SIBLING_Z and abs(x - med) >= SIBLING_REL * abs(med)
                       and (not discrete or discrete_significant(x, med)))
            run = pool.runs.get(instance, 0) + 1 if odd else 0
            if run:
                pool.runs[instance] = run
            else:
                pool.runs.pop(instance, None)
            if run != SIBLING_RUN or got is None:
                continue
            series = pool.names.get(instance, group)
            q = min(0.5 * z * z, 700.0)
            for variant, v in self.variants:
                key = f"{variant}|siblings|{instance}@{ws}"
                calm = self._disturbed(st, key, end)
                self._ongoing(variant, st.meta[0], end, v)
                if not self._cooled(st, key, end, v, calm):
                    continue
                out.append(self._event(
                    st.meta, series, ws, end, variant, v, "siblings", SIB_VERSION, "mean", x, med,
                    med - SIBLING_Z * scale, med + SIBLING_Z * scale, 1.0 - math.exp(-q),
                    0.5 * SIBLING_Z ** 2, "up" if z > 0 else "down", "warning",
                    {"siblings": float(len(zs)), "z": round(z, 2)}))
        return out

    def _slow_instances(self) -> list[AnomalyEvent]:
        """Instances whose requests were slower than their siblings' (``detectors.instances``)
        at least ``INSTANCE_RUN`` windows in a row, with the run's combined evidence past the
        threshold: one anomaly per run and variant. Each window carries its comparison (made
        at ingest), so an instance needs none of its siblings' windows here."""
        out: list[AnomalyEvent] = []
        runs = self.instance_runs
        for w in self._instances:
            inst = (w.samples, w.p50, w.peer_samples, w.peer_p50, w.peer_p90, w.above_peer_p90)
            ws, end = w.window_s, int(w.end.timestamp() * 1000)
            key = (w.service, w.name, ws)
            last, run, total, fired = runs.get(key, (-1, 0, 0.0, ""))
            if last >= end:
                continue  # a revision of a window already counted
            if not comparable(inst):  # too few requests: the run goes on, unchanged
                if last == end - ws * 1000:
                    runs[key] = (end, run, total, fired)
                continue
            q = slower(inst)
            if q <= 0:
                runs.pop(key, None)
                continue
            if last == end - ws * 1000:
                run, total = run + 1, total + q
            else:
                run, total, fired = 1, q, ""
            runs[key] = (end, run, total, fired)
            if run < INSTANCE_RUN:
                continue
            combined = fisher_q(total, run)
            for variant, v in self.variants:  # one a day, Bonferroni over the instances
                thr = (max(v.base_q(ws), day_q(ws)) + self.offsets.get((variant, "siblings"),
                                                                        0.0)
                       + math.log(w.peer_instances + 1))
                if variant in fired.split() or combined < thr:
                    continue
                fired += f" {variant}"
                runs[key] = (end, run, total, fired)
                out.append(self._event(
                    (w.service, "instance", "", w.name), w.series, ws, end, variant, v,
                    "siblings", SIB_VERSION, "p50", w.p50, w.peer_p50, w.peer_p50, w.peer_p90,
                    1.0 - math.exp(-combined), thr, "up", "critical",
                    {"above_siblings_p90": float(w.above_peer_p90),
                     "latencies": float(w.samples), "windows": float(run),
                     "q": round(combined, 1)}))
        if len(runs) > 10_000:  # runs of instances gone for ten minutes are over
            newest = max(r[0] for r in runs.values())
            for key in [k for k, r in runs.items() if r[0] < newest - 600_000]:
                del runs[key]
        self._instances.clear()
        return out

    # -- fleet-wide shifts -------------------------------------------------------------------

    def _hold(self, events: list[AnomalyEvent], now: float) -> list[AnomalyEvent]:
        """Hold the anomalies `_demote` could drop until every source of the services'
        traffic windows has passed their window end (or sent nothing for ``SOURCE_IDLE_S``),
        so that the fleet's move in that window is known; ``SOURCE_IDLE_S`` of the clock at
        most. Return the others and those now due. A worker reads its metrics and logs
        partitions in batches of their own, and replayed at full speed the metrics run
        ahead: the gauges of a fleet scaling out under a traffic surge were scored before
        the surge was seen as load (8 warnings in the last 3 minutes of a realistic
        ``changes`` fleet)."""
        out = []
        for a in events:
            if a.feature in _NOT_LOAD:
                self.hurt[(a.variant, a.service, a.ts)] = None
            if a.feature in _NOT_LOAD or a.severity == "critical" or not self._ahead(a, now):
                out.append(a)
            else:
                self.held.append((now, a))
        while len(self.hurt) > EMITTED_KEPT:
            self.hurt.popitem(last=False)
        if self.held:
            held = []
            for t, a in self.held:
                if now - t >= SOURCE_IDLE_S or not self._ahead(a, now):
                    out.append(a)
                else:
                    held.append((t, a))
            out += [a for _, a in held[:-HELD_KEPT]]
            self.held = held[-HELD_KEPT:]
        return out

    def release(self) -> list[AnomalyEvent]:
        """Every held anomaly now, through the demotion as far as the fleet's moves are
        known: before a snapshot, after which the windows that raised them are not read
        again."""
        held, self.held = [a for _, a in self.held], []
        return self._once(self._demote(held)) if held else []

    def _ahead(self, a: AnomalyEvent, now: float) -> bool:
        """Whether a source of traffic windows, not idle, has not gone a window past ``a``'s
        (its windows of one end can come in several batches, as `_silences` allows)."""
        end = a.ts + a.window_s * 1000
        for src in self.traffic_sources:
            mark = self.source_marks.get((a.window_s, src))
            if mark is not None and mark < end and self._sending(src, now):
                return True
        return False

    def _sending(self, source: str, now: float) -> bool:
        """Whether a source sent a window within ``SOURCE_IDLE_S`` (it lags, not stopped)."""
        return now - self.source_seen.get(source, 0.0) < SOURCE_IDLE_S

    def _demote(self, events: list[AnomalyEvent]) -> list[AnomalyEvent]:
        """Drop the traffic and metric anomalies that go with a fleet-wide traffic shift
        in their window, unless errors or latency moved on that service too (in this
        batch or, for held ones, since)."""
        hurt = self.hurt
        keep = []
        for a in events:
            if a.feature in _NOT_LOAD or a.severity == "critical" or (
                    a.variant, a.service, a.ts) in hurt:
                keep.append(a)
                continue
            shift = fleet_shift(self.fleet.get((a.window_s, a.ts), {}))
            if shift == 0 or (a.direction == "up") != (shift > 0):
                keep.append(a)
            else:
                self.demoted += 1
        return keep

    def _move(self, st: SeriesState, ws: int, end: int, scored: Scored) -> None:
        """Note how a service's traffic moved in this window (for ``_demote``)."""
        for spec, x, s, n in scored:
            if spec.name != "rate_per_s" or not math.isfinite(x) or n < 2:
                continue
            moved = s.raw >= FLEET_Z and abs(x - s.expected) >= FLEET_REL * abs(s.expected)
            sign = (1.0 if x > s.expected else -1.0) if moved else 0.0
            self.fleet.setdefault((ws, end), {})[st.meta[0]] = sign
        if len(self.fleet) > 256:
            for k in sorted(self.fleet)[:128]:
                del self.fleet[k]

    def _accept(self, batch: Batch, w: WindowStats, end: int) -> None:
        """Add the window's features to ``batch``, unless it is a revision or a replay."""
        st = self.states.get(w.series)
        if st is None:
            st = self.states[w.series] = SeriesState((w.service, w.scope, w.route, w.name),
                                                     self.banks)
        ws = w.window_s
        last = st.last_end.get(ws, -1)
        late = end <= last
        if late and not (w.count and st.imputed.get(ws, end + 1) <= end):
            return  # already learnt (a window late for a silence imputed in its place is not)
        if w.scope == "metric" and st.discrete:
            if not integral(w.mean, w.min, w.max, w.last):
                st.discrete = False
            else:
                st.quantum = quantum_of(st.quantum, w.min, w.max, w.last)
        if not late:
            st.last_end[ws] = end
            st.imputed.pop(ws, None)
        self.dirty.add(w.series)
        prior = st.timed.get(ws, -1)
        if w.p95 == w.p95 and end > prior:  # it has latencies
            st.timed[ws] = end
        calls_q = self._calls(st, ws, end, w.lat_hist) \
            if w.lat_hist and self.settings.slow_calls and not late else 0.0
        batch.window(st, w.series, ws, end, w.count, w.samples or w.count, w.p50, prior,
                     calls_q)
        specs = specs_of(w)
        if specs is COUNTER:  # its increase since the last window, as in ``features``
            x = counter_rate(w.last, (end - last) / 1000.0, st.prev.get(ws))
            st.prev[ws] = w.last
            batch.point(st, ws, end, specs[0], x)
            return
        for spec in specs:
            if spec.name == "count":
                x = float(w.count)
            elif spec.name == "error_rate" and w.count == 0:
                x = math.nan  # as in ``features``
            elif spec.name == "error_rate":
                x = w.error_rate
                batch.errors.append((len(batch.x), st, ws, x * w.count, w.count))
            else:
                x = float(getattr(w, spec.name))
            batch.point(st, ws, end, spec, x)

    @staticmethod
    def _calls(st: SeriesState, ws: int, end: int, hist: dict[int, int]) -> float:
        """A route's or edge's window of calls: its slow calls against the series' history
        join the run of its last windows (a sparse window only; a gap of more than
        ``RUN_GAP`` windows without calls starts afresh), then its calls join the history.
        Returns the run's -log p (``detectors.slow_calls``), for the window's median."""
        ref = st.ref if st.ref is not None else Reference()
        got = ref.exceedances(hist) if sum(hist.values()) < SPARSE_CALLS else None
        ref.learn(hist)
        st.ref = ref
        if got is None:
            st.calls.pop(ws, None)
            return 0.0
        last = st.calls.get(ws)
        run = last[1] if last is not None and end - last[0] <= (RUN_GAP + 1) * ws * 1000 \
            else ()
        st.calls[ws] = (end, (*run, got)[-CALL_WINDOWS:])
        return slow_calls(st.calls[ws][1])

    def _score_all(self, batch: Batch) -> list[AnomalyEvent]:
        """Update every detector of ``batch`` (vectorised per bank), apply the rules, then
        learn the gauges' levels."""
        out = self._score(batch)
        if self.settings.seen_levels:
            self._learn_levels(batch)
        return out

    def _score(self, batch: Batch) -> list[AnomalyEvent]:
        """Update every detector of ``batch`` (vectorised per bank), then apply the rules."""
        n_points = len(batch.x)
        self.scored += n_points
        res = np.zeros((5, n_points))  # score, expected, lo, hi, raw
        n_before = np.zeros(n_points, np.int64)
        for key, (at, rows, ts, xs) in batch.by_key.items():
            update_rows(self.banks[key], np.array(at), np.array(rows), np.array(ts),
                         np.array(xs), res, n_before)
        art = self._artime(batch) if batch.art_by_key else None
        # the common case: nothing near any threshold (0.9 = -log p 2.3) or still warming up
        warm = min(v.warmup for _, v in self.variants)
        if batch.errors:
            self._learn_dispersion(batch, res, n_before, warm)
        near = res[0] > 0.9
        if art is not None:  # or an ARTime alarm (its score is 0 but at a new shape)
            near |= art >= min(v.artime_threshold for _, v in self.variants if v.artime)
        hot = np.flatnonzero(near & (n_before >= warm))
        out: list[AnomalyEvent] = []
        if not len(hot) and not any(st.meta[1] == "service" or st.base for st in batch.st):
            return out
        cols, nb = res.T.tolist(), n_before.tolist()
        marks = np.zeros(n_points + 1, np.int64)
        marks[hot + 1] = 1
        hot_before = np.cumsum(marks).tolist()  # hot points before each point
        bounds = [*batch.first, n_points]
        for i, st in enumerate(batch.st):
            a, b = bounds[i], bounds[i + 1]
            if (hot_before[a] == hot_before[b] and st.meta[1] != "service" and not st.base
                    and batch.calls_q[i] < HOT_Q):
                continue
            scored = [(batch.spec[k], batch.x[k], Score(*cols[k]), nb[k]) for k in range(a, b)]
            out += self._rules(st, batch.series[i], batch.ws[i], batch.end[i], scored,
                               batch.count[i], batch.samples[i], batch.median[i],
                               batch.prior[i], batch.calls_q[i],
                               None if art is None else art[a:b].tolist())
        return out

    def _artime(self, batch: Batch) -> npt.NDArray[np.float64]:
        """Update the ARTime detectors of ``batch``'s gauges and counters (one vectorised
        call per feature key and pass: a row seen k times in the batch takes k passes, in
        order); each point's ARTime score (0 where it has none)."""
        art = np.zeros(len(batch.x))
        xs = np.array(batch.x)
        for key, (at_l, rows_l) in batch.art_by_key.items():
            bank, at, rows = self.banks.art(key), np.array(at_l), np.array(rows_l)
            for sel in occurrences(rows):
                art[at[sel]] = bank.update(rows[sel], xs[at[sel]])
        return art

    def _learn_levels(self, batch: Batch) -> None:
        """Each gauge's readings join its levels (``detectors.levels``), after its rules."""
        for ws in self.settings.window_s:
            cols = batch.by_key.get(bank_key("mean", ws))
            if not cols:
                continue
            at = np.array(cols[0])
            windows = (np.searchsorted(np.array(batch.first), at, "right") - 1).tolist()
            for i, b in zip(windows, level_bins(np.array(cols[3])), strict=True):
                st = batch.st[i]
                if st.meta[3] in EXEMPT:
                    continue
                if st.levels is None:
                    st.levels = Levels()
                st.levels.add_bin(b)

    @staticmethod
    def _learn_dispersion(batch: Batch, res: npt.NDArray[np.float64],
                          n_before: npt.NDArray[np.int64], warm: int) -> None:
        """Each window's error lines join its series' dispersion (error lines to a failure,
        ``significance.dispersion``), unless they were an error anomaly: a rare score for
        errors significantly above the expected rate. Read before this batch's rules, which
        use the dispersion learnt from the windows before."""
        for k, st, ws, errors, count in batch.errors:
            d = st.disp.get(ws)
            x, score, expected = batch.x[k], float(res[0, k]), float(res[1, k])
            if n_before[k] >= warm and score > 0.9 and x > expected and significant(
                    "error_rate", x, expected, count, ws, dispersion(d)):
                continue
            st.disp[ws] = learn_dispersion(d, errors)

    def _rules(self, st: SeriesState, series: str, ws: int, end: int, scored: Scored,
               count: int, samples: int, median: float = math.nan, prior: int = -1,
               calls_q: float = 0.0, art: list[float] | None = None) -> list[AnomalyEvent]:
        """Significance, thresholds, confirmation, cooldowns, severity: a window's events
        (``calls_q``: its slow calls' -log p, `_calls`; ``art``: each point's ARTime score,
        for variants where ARTime decides a gauge's alarm)."""
        out: list[AnomalyEvent] = []
        zs = {spec.name: round(s.raw, 2) for spec, _, s, _ in scored if s.raw == s.raw}
        scope = st.meta[1]
        if scope == "service":
            self._move(st, ws, end, scored)
        floor = (scope == "metric" and st.discrete and self.settings.discrete_floor
                 and st.meta[3] not in EXEMPT)
        burst, base = self._error_run(st, ws, end, scored, count) \
            if st.meta[1] in ("route", "edge") else (0.0, 0.0)
        phi = dispersion(st.disp.get(ws))
        # each latency percentile's -log p for ``slow_run`` and the value it is measured from
        runs = {spec.name: self._run_start(st, bank_key(spec.name, ws), end, ws, x, s)
                for spec, x, s, _ in scored
                if spec.name in PERCENTILES and scope != "instance" and math.isfinite(x)}
        for variant, v in self.variants:
            base_q = v.base_q(ws)
            thr_q = max(base_q + st.adj.get(variant, 0.0)
                        + self.offsets.get((variant, "series"), 0.0), MIN_Q)
            art_q = max(-math.log(1.0 - v.artime_threshold) + st.adj.get(variant, 0.0)
                        + self.offsets.get((variant, "artime"), 0.0), 0.0) if art else 0.0
            for k, (spec, x, s, n) in enumerate(scored):
                # ARTime decides for this variant's gauges: its alarm, at its threshold (in
                # -log(1 - score) units, so the offsets of feedback and budget apply alike)
                a = art[k] if art is not None and v.artime and spec.name in ARTIME_FEATURES \
                    else -1.0
                if n < v.warmup or not math.isfinite(x) or (
                        a < v.artime_threshold if a >= 0 else s.score <= 0):
                    continue
                key = ""
                if st.episodes:  # a series that alarmed: still out of its episode's band?
                    key = f"{variant}|series|{spec.name}@{ws}"
                    ep = st.episodes.get(key)
                    if ep is not None and end - ep[0] <= v.cooldown_s * 1000 and (
                            x > ep[3] if ep[1] > 0 else x < ep[2]) and large_enough(
                            spec, x, 0.5 * (ep[2] + ep[3]), v.min_change) == DIRS[ep[1]]:
                        self._ongoing(variant, st.meta[0], end, v)
                q = -math.log(max(1.0 - (s.score if a < 0 else a), 1e-300))
                expected = s.expected
                lo, hi = s.lo, s.hi
                shown = x  # the observed value the event reports
                if spec.name in runs:
                    run_q, expected, lo, hi = runs[spec.name]
                    q = max(q, slow_run(st, bank_key(spec.name, ws), end, ws, run_q, samples))
                if spec.name == "p50":
                    q = max(q, calls_q)  # a sparse series' calls above its p90
                direction = practical(spec, x, expected, count, ws, v.min_change,
                                      phi if spec.name == "error_rate" else 1.0)
                if (floor and spec.name == "mean" and direction is not None
                        and not discrete_significant(
                        x, expected, max(st.quantum, 1))):
                    direction = None  # a few quanta of an integer gauge: not news
                if (direction is not None and spec.name == "mean" and st.levels is not None
                        and self.settings.seen_levels and st.levels.usual(x, direction)):
                    direction = None  # a level the gauge often reaches: not news
                need = RUN_Q + thr_q - base_q
                if spec.name == "error_rate" and burst >= need:  # errors in a row
                    if burst >= q:  # the run decides: its rate against its base rate's band
                        (shown, hi), lo = run_band(st.runs[ws], need), 0.0
                    direction, q, expected = "up", max(q, burst), base
                if direction is None:
                    continue
                key = key or f"{variant}|series|{spec.name}@{ws}"
                calm = self._disturbed(st, key, end)
                if q < (thr_q if a < 0 else art_q):
                    continue
                # a run of points beyond the threshold: ARTime's alarms come one at a new
                # shape (it masks the next few), so it is not asked for one
                if scope == "metric" and a < 0 and not self._in_run(st, key, spec.name, ws,
                                                                    end, direction):
                    continue
                tail = beyond(spec.name, samples, median, expected)
                if math.isfinite(tail):  # a percentile: as good as its requests beyond it
                    before = st.pending.get(key)
                    # a run goes on over windows without latencies (they say nothing),
                    # up to RUN_GAP of them, and stops at one with latencies below this;
                    # its requests beyond, negative when its last window's median was
                    run = before[1] if before and before[0] == prior and (
                        end - prior <= (RUN_GAP + 1) * ws * 1000) else None
                    moved = median > expected
                    total = tail + abs(run or 0.0)
                    st.pending[key] = (end, -total if moved else total)
                    if not confirmed(tail, None if run is None else abs(run),
                                     moved and run is not None and run < 0):
                        continue
                if self._recovery(st, key, end, direction, x):
                    continue
                self._ongoing(variant, st.meta[0], end, v)
                if not self._cooled(st, key, end, v, calm):
                    continue
                st.pending.pop(key, None)
                self._episode(st, key, end, direction, s.lo, s.hi)
                det, version, score, thr = ("series", VERSION, max(
                    s.score, 1.0 - math.exp(-q)), thr_q) if a < 0 else (
                    "artime", ARTIME_VERSION, a, art_q)
                out.append(self._event(st.meta, series, ws, end, variant, v, det, version,
                                       spec.name, shown, expected, lo, hi, score, thr,
                                       direction, severity_of(spec, direction, x, expected),
                                       zs))
        if st.meta[1] == "service" and ws == 10 and any(v.multivariate for _, v in self.variants):
            # the vector may be unusual; it is an anomaly when a feature changed that matters
            moved = any(s.raw >= self.series_cfg.band and math.isfinite(x)
                        and single_window(spec.name, samples)
                        and practical(spec, x, s.expected, count, ws, 1.0,
                                      phi if spec.name == "error_rate" else 1.0) is not None
                        for spec, x, s, _ in scored)
            out += self._multivariate(st, series, end, {sp.name: x for sp, x, _, _ in scored},
                                      zs, moved)
        return out

    def _run_start(self, st: SeriesState, key: str, end: int, ws: int, x: float, s: Score
                   ) -> tuple[float, float, float, float]:
        """A latency percentile's -log p for ``slow_run``, measured from where its run of
        slow windows began: (-log p, expected value, band low, band high).

        The detector's level follows a shift within a few windows, so a dependency that
        stays slower looks less surprising each window; and after its onset, scores that do
        not beat it are damped. So the expected value and typical error of a run's first
        window (a window whose -log p passes ``HOT_Q``) are kept, and each later window of
        the run is also scored against them, by the detector's own calibration (the tail of
        its single-point statistic), for at most ``SLOW_WINDOWS`` windows: a change shows
        at once, a slow drift (a daily peak) moves little in a minute. Whichever says more,
        the window's own score or the run's, is returned with its expected value and band.
        A window at or below the run's expected value ends it. Outside a run: the window's
        own -log p when it is above its expected value, else 0."""
        q = -math.log(max(1.0 - s.score, 1e-300)) if x > s.expected else 0.0
        if not self.settings.run_start:
            return q, s.expected, s.lo, s.hi
        scale = (s.hi - s.lo) / (2 * self.series_cfg.band)
        base = st.base.get(key)
        if base is not None and not 0 <= end - base[0] <= SLOW_WINDOWS * ws * 1000:
            del st.base[key]  # the run is over a minute old (or from a later window)
            base = None
        if base is None:
            if q >= HOT_Q and scale > 0:
                st.base[key] = (end, s.expected, scale)
            return q, s.expected, s.lo, s.hi
        _, e0, scale0 = base
        if x <= e0:
            del st.base[key]
            return q, s.expected, s.lo, s.hi
        q0 = -math.log(max(self.banks[key].tail(st.rows[key], (x - e0) / scale0), 1e-300))
        if end == base[0] or q0 <= q:  # the window's own score says more
            return q, s.expected, s.lo, s.hi
        band = self.series_cfg.band * scale0
        return q0, e0, e0 - band, e0 + band

    def _in_run(self, st: SeriesState, key: str, feature: str, ws: int, end: int,
                direction: Dir) -> bool:
        """Whether this point beyond the threshold ends a run of ``metric_run`` such points
        of the series in a row, the same way (consecutive: at most 1.5 sampling steps
        apart, so a calm point in between, which is never scored this far, breaks it)."""
        need = self.settings.metric_run
        if need <= 1:
            return True
        row = st.rows.get(bank_key(feature, ws))
        step_ms = 1500.0 * float(self.banks[bank_key(feature, ws)].step[row]) \
            if row is not None else 0.0
        sign = SIGN[direction]
        before = st.pending.get(key)
        run = 1
        if before is not None and 0 < end - before[0] <= max(step_ms, 1500.0 * ws) and (
                before[1] * sign > 0):
            run = int(abs(before[1])) + 1
        if run >= need:
            st.pending.pop(key, None)
            return True
        st.pending[key] = (end, sign * run)
        return False

    def _error_run(self, st: SeriesState, ws: int, end: int, scored: Scored, count: int
                   ) -> tuple[float, float]:
        """A route's run of windows with errors, after this one: how rare (``-log p``) and
        the long-run error rate it is tested against (``significance.error_run``)."""
        for spec, x, _, _ in scored:
            if spec.name != "error_rate" or not math.isfinite(x):
                continue
            key = bank_key("error_rate", ws)
            row = st.rows.get(key)
            base = float(self.banks[key].mag[row]) if row is not None else 0.0
            run = error_run(st.runs.get(ws), end, ws, round(x * count), count, base)
            if run is None:
                st.runs.pop(ws, None)
                return 0.0, 0.0
            st.runs[ws] = run
            return run_q(run), run[4]
        return 0.0, 0.0

    def _multivariate(self, st: SeriesState, series: str, end: int, x: dict[str, float],
                      zs: dict[str, float], moved: bool) -> list[AnomalyEvent]:
        if not math.isfinite(x.get("rate_per_s", math.nan)) or x["rate_per_s"] <= 0:
            return []  # silence is the univariate detectors' business
        if st.mv is None:
            st.mv = ServiceModel()
        q, raw = st.mv.update(x)
        if not moved:
            return []  # an unusual mix, but no feature changed in a way that matters
        out = []
        for variant, v in self.variants:
            thr_q = max(v.mv_threshold_q + st.adj.get(variant, 0.0)
                        + self.offsets.get((variant, "hst"), 0.0), MIN_Q)
            calm = self._disturbed(st, f"{variant}|hst", end)
            if v.multivariate and q >= thr_q:
                self._ongoing(variant, st.meta[0], end, v)
            if v.multivariate and q >= thr_q and self._cooled(st, f"{variant}|hst", end, v,
                                                              calm):
                out.append(self._event(st.meta, series, 10, end, variant, v, "hst", MV_VERSION,
                                       "vector", raw, 0.0, 0.0, 0.0, 1.0 - math.exp(-q),
                                       thr_q, "up", "warning", zs))
        return out

    @staticmethod
    def _disturbed(st: SeriesState, key: str, end: int) -> int:
        """Mark ``key`` as changed (in a way that matters) at ``end``; how long it had been
        calm before (ms; a large number if never)."""
        mark = f"{key}~"
        before = st.cool.get(mark)
        st.cool[mark] = end
        return end - before if before is not None else 1 << 62

    @staticmethod
    def _recovery(st: SeriesState, key: str, end: int, direction: Dir, x: float) -> bool:
        """Whether an alarm is its series going back after its last alarm episode: the
        other way, within ``RECOVERY_MS`` of its last alarm, and not past the normal band
        recorded when the episode began by more than that band's width. The end of an
        episode (the detector had partly adopted the abnormal level) is not news;
        overshooting the old normal (a queue that drains to zero from 30) still is."""
        ep = st.episodes.get(key)
        sign = SIGN[direction]
        if ep is None or end - ep[0] > RECOVERY_MS or ep[1] == sign:
            return False
        lo, hi = ep[2], ep[3]
        return lo - (hi - lo) <= x <= hi + (hi - lo)

    @staticmethod
    def _episode(st: SeriesState, key: str, end: int, direction: Dir, lo: float,
                 hi: float) -> None:
        """Remember an alarm: the first of an episode records the normal band it left."""
        sign = SIGN[direction]
        ep = st.episodes.get(key)
        if ep is not None and ep[1] == sign and end - ep[0] <= RECOVERY_MS:
            st.episodes[key] = (end, sign, ep[2], ep[3])  # the same episode goes on
        elif math.isfinite(lo) and math.isfinite(hi):
            st.episodes[key] = (end, sign, lo, hi)
        else:
            st.episodes.pop(key, None)

    def _ongoing(self, variant: str, service: str, end: int, v: VariantConfig) -> int:
        """Mark a window of ``service`` that is still bad: it alarms, or would but for its
        cooldown, or a series that alarmed is still outside the normal band its episode
        left, in its cooldown, by at least the feature's minimum change from the band's
        middle (``large_enough``): the detector adopts a lasting level within minutes,
        while the cooldown keeps it quiet. The first window end of the service's run of
        such windows, none ``rearm_s`` or more apart.

        A cooldown keeps a series that stays bad quiet, so an outage longer than the
        incidents' quiet time looks like two problems to grouping: an anomaly's ``since``
        (this) says it is the same disturbance going on (``incidents.grouping``). A run
        outlives its last alarm by at most the cooldown and ``rearm_s``. Per worker: a
        service whose series other workers score counts only the ones here.

        >>> sc = WindowScorer(DetectionSettings())
        >>> v = sc.settings.champion
        >>> [sc._ongoing("champion", "db", t, v) for t in (10_000, 60_000, 110_000, 200_000)]
        [10000, 10000, 10000, 200000]
        """
        gap = int(v.rearm_s * 1000)
        run = self.ongoing.get((variant, service))
        if run is None or end - run[1] > gap or run[0] - end > gap:
            run = (end, end)
        else:
            run = (min(run[0], end), max(run[1], end))
        self.ongoing[(variant, service)] = run
        return run[0]

    @staticmethod
    def _cooled(st: SeriesState, key: str, end: int, v: VariantConfig, calm: int) -> bool:
        """Whether ``key`` may alarm at ``end``: its cooldown since the last alarm is over,
        or it has been calm for ``rearm_s`` since (a new episode, not the same one again)."""
        last = st.cool.get(key)
        if last is not None and end - last < v.cooldown_s * 1000 and calm <= v.rearm_s * 1000:
            return False
        st.cool[key] = end
        return True

    def _silences(self, ws: int, upto: int, marks: dict[tuple[int, str], int], now: float
                  ) -> Batch:
        """Zero-traffic windows for service/route series missing windows up to ``upto``.

        Not past the series' own source (``marks``: window ends per source before this
        batch), less a window: replayed at full speed, one ingest partition runs minutes of
        event time ahead of another, and a service whose partition lags was scored as
        silent on every window the others had passed (a traffic collapse on busy services
        that never paused). A source that sent nothing for ``SOURCE_IDLE_S`` stopped: its
        series fall silent up to ``upto`` (a service alone on its partition can go down)."""
        out = Batch(self.banks)
        step, key = ws * 1000, bank_key("rate_per_s", ws)
        gap_limit = self.settings.max_gap_windows * step
        for series, st in self.states.items():
            last = st.last_end.get(ws)
            if last is None or last >= upto or upto - last > gap_limit:
                continue
            source = self.series_source.get(series, "")
            mark = marks.get((ws, source)) if source else None
            limit = upto
            if mark is not None and self._sending(source, now):
                limit = min(upto, mark - step)
                if last >= limit:
                    continue
            row = st.rows.get(key)
            if row is None or self.banks[key].level[row] < self.settings.min_alive_rate:
                continue
            st.imputed.setdefault(ws, last + step)
            for end in range(last + step, limit + 1, step):
                st.last_end[ws] = end
                out.window(st, series, ws, end, 0, 0)
                for spec in SPECS[st.meta[1]]:
                    out.point(st, ws, end, spec, 0.0 if spec.name == "rate_per_s" else math.nan)
            self.dirty.add(series)
        return out

    def _event(self, meta: tuple[str, str, str, str], series: str, ws: int, end: int,
               variant: str,
               v: VariantConfig, detector: str, version: str, feature: str, x: float,
               expected: float, lo: float, hi: float, score: float, thr_q: float,
               direction: Dir, severity: str, zs: dict[str, float]) -> AnomalyEvent:
        service, scope, route, _ = meta
        lookback = int(self.settings.change_lookback_s * 1000)
        return AnomalyEvent(
            id=anomaly_id(variant, detector, series, feature, ws, end), ts=end,
            since=self._ongoing(variant, service, end, v),
            series=series, service=service, route=route, scope=scope, feature=feature,
            window_s=ws, observed=x, expected=expected, lo=lo, hi=hi, score=score,
            threshold=1.0 - math.exp(-thr_q), direction=direction,
            severity=severity,
            detector=detector, version=f"{version}/{v.version}",
            variant=variant,
            contributing=dict(sorted(zs.items(), key=lambda kv: -kv[1])),
            changes=self.changes.near(service, end, lookback))

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes]:
        """The states changed since the last snapshot (series -> bytes); clears the marks."""
        out = {s: self.states[s].to_bytes() for s in self.dirty if s in self.states}
        self.dirty.clear()
        return out

    def restore(self, series: str, raw: bytes) -> None:
        """Load one series' snapshot (an empty value forgets it)."""
        old = self.states.pop(series, None)
        if old is not None:
            old.release()
        if raw:
            self.states[series] = SeriesState.from_bytes(raw, self.banks)

    def forget(self, keep: Iterable[str] = ()) -> None:
        """Drop every state except ``keep`` (after a rebalance took partitions away)."""
        kept = set(keep)
        for s, st in self.states.items():
            if s not in kept:
                st.release()
        self.states = {s: st for s, st in self.states.items() if s in kept}
        self.series_source = {s: src for s, src in self.series_source.items() if s in kept}
        self.pools = {g: p for g, p in self.pools.items() if g in kept}
