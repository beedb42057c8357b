"""Score windowed series online: features per window, one ``SeriesDetector`` per feature.

The detectors live as rows of numpy ``SeriesBank``s (one per feature key): a batch of
windows is one vectorised update per feature, then each window goes through the rules in
arrival order, exactly as the scalar detectors would have scored it. Snapshots keep the
scalar detectors' bytes.

A window of scope ``service``/``route`` gives rate_per_s, error_rate, p95 and p99; a metric
window its mean; a template window its count. Each (series, feature) is one univariate
series. What counts as bad follows the feature: more errors or latency, a request rate
collapsing (or surging), a metric moving either way. Series that go silent get zero-rate
windows scored, so "the service stopped answering" is seen. Per service, a multivariate
``ServiceModel`` scores the feature vector. Every variant (champion, challenger) applies its
own thresholds to the same calibrated scores: the shadow costs no second model. A rare
value is only an anomaly when the change matters (``significance``: beyond the Poisson noise
of the window's events), and the anomalies of one service in one window are one event.

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
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
import orjson

from detectors.detection_settings import DetectionSettings, VariantConfig
from detectors.feedback import ChangeLog
from detectors.multivariate import ServiceModel
from detectors.series import Score, SeriesConfig, SeriesDetector
from detectors.series_batch import SeriesBank
from detectors.significance import collapse, significant
from schemas.anomalies import AnomalyEvent, anomaly_id
from schemas.windows import WindowStats

VERSION = "series-1"
MV_VERSION = "hst-1"
Dir = Literal["up", "down"]


@dataclass(frozen=True)
class FeatureSpec:
    """One scored feature: which directions are bad and how large a change must be."""

    name: str
    bad: tuple[Dir, ...]
    min_abs: float  # a smaller absolute change is never an anomaly ...
    min_rel: float  # ... nor one smaller than this fraction of the expected value
    severity: Literal["critical", "warning"]
    floor: float = 0.0  # noise unit: errors smaller than this are never "surprising"


_TRAFFIC = (
    FeatureSpec("rate_per_s", ("down", "up"), 0.5, 0.5, "warning", 0.1),
    FeatureSpec("error_rate", ("up",), 0.05, 0.0, "critical", 0.01),
    FeatureSpec("p95", ("up",), 20.0, 0.5, "warning", 2.0),
    FeatureSpec("p99", ("up",), 30.0, 0.5, "warning", 3.0),
)
SPECS: dict[str, tuple[FeatureSpec, ...]] = {
    "service": _TRAFFIC, "route": _TRAFFIC,
    "metric": (FeatureSpec("mean", ("down", "up"), 0.0, 0.1, "warning"),),
    "template": (FeatureSpec("count", ("up",), 5.0, 1.0, "warning", 1.0),),
}
FLOORS = {spec.name: spec.floor for specs in SPECS.values() for spec in specs}
# Streaming default: NAB's settings, but a 5-minute (30 window) silence after an alarm, and
# alarms kept out of the calibration (the next incident must not look "seen before").
# The first 10 points are learnt unclipped: a series often starts with a partial window.
STREAM = SeriesConfig(hold_points=0, suppress=1.0, learn_alarms=False, free_points=10)


def features(w: WindowStats) -> list[tuple[FeatureSpec, float]]:
    """The (feature, value) pairs scored for a window; NaN means not observed."""
    out = []
    for spec in SPECS.get(w.scope, ()):
        v = float(w.count) if spec.name == "count" else float(getattr(w, spec.name))
        if spec.name == "error_rate" and w.count == 0:
            v = math.nan  # no requests: the error rate is unknown, not 0
        out.append((spec, v))
    return out


def severity_of(spec: FeatureSpec, direction: Dir, observed: float, expected: float) -> str:
    """Critical for errors up and traffic collapsing; warning otherwise."""
    if spec.name == "rate_per_s":
        return "critical" if direction == "down" and observed < 0.2 * expected else "warning"
    return spec.severity


@lru_cache(maxsize=256)
def config_for(base: SeriesConfig, key: str) -> SeriesConfig:
    """The detector settings of a ``<feature>[@<window_s>]`` key: ``base`` + its floor."""
    return replace(base, floor=FLOORS.get(key.split("@")[0], 0.0))


class Banks:
    """The ``SeriesBank`` of each feature key (``<feature>[@<window_s>]``: its own floor)."""

    def __init__(self, cfg: SeriesConfig) -> None:
        self.cfg = cfg
        self.by_key: dict[str, SeriesBank] = {}

    def __getitem__(self, key: str) -> SeriesBank:
        bank = self.by_key.get(key)
        if bank is None:
            bank = self.by_key[key] = SeriesBank(config_for(self.cfg, key), capacity=64)
        return bank


class SeriesState:
    """Everything learnt about one series: its detector rows, clocks, cooldowns, adjustments."""

    __slots__ = ("adj", "banks", "cool", "last_end", "meta", "mv", "rows")

    def __init__(self, meta: tuple[str, str, str, str], banks: Banks) -> None:
        self.meta = meta  # service, scope, route, name
        self.banks = banks
        self.rows: dict[str, int] = {}  # "<feature>@<window_s>" -> its row in banks[key]
        self.last_end: dict[int, int] = {}  # window_s -> last window end scored (ms)
        self.cool: dict[str, int] = {}  # "<variant>|<detector>|<feature>" -> last alarm (ms)
        self.adj: dict[str, float] = {}  # variant -> threshold adjustment (-log p units)
        self.mv: ServiceModel | None = None

    @property
    def dets(self) -> dict[str, SeriesDetector]:
        """Each feature's detector, as a scalar copy of its bank row."""
        return {key: self.banks[key].detector(i) for key, i in self.rows.items()}

    def release(self) -> None:
        """Give the detector rows back to their banks (the state is forgotten)."""
        for key, i in self.rows.items():
            self.banks[key].free(i)
        self.rows = {}

    def to_bytes(self) -> bytes:
        """Compact snapshot: a JSON head, then each detector's ``to_bytes``."""
        head = orjson.dumps({"m": self.meta, "l": self.last_end, "c": self.cool,
                             "a": self.adj, "d": list(self.rows)},
                            option=orjson.OPT_NON_STR_KEYS)
        parts = [struct.pack("<I", len(head)), head]
        for det in self.dets.values():
            raw = det.to_bytes()
            parts += [struct.pack("<I", len(raw)), raw]
        if self.mv is not None:
            import pickle  # the small HST model: own internal state topic, trusted bytes
            parts.append(pickle.dumps(self.mv, protocol=pickle.HIGHEST_PROTOCOL))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes, banks: Banks) -> SeriesState:
        """Rebuild a state written by ``to_bytes`` (its detectors become rows of ``banks``)."""
        (n,) = struct.unpack_from("<I", raw)
        head = orjson.loads(raw[4:4 + n])
        st = cls(tuple(head["m"]), banks)
        st.last_end = {int(k): int(v) for k, v in head["l"].items()}
        st.cool, st.adj = dict(head["c"]), dict(head["a"])
        at = 4 + n
        for key in head["d"]:
            (size,) = struct.unpack_from("<I", raw, at)
            bank = banks[key]
            st.rows[key] = bank.add(SeriesDetector.from_bytes(raw[at + 4:at + 4 + size],
                                                              bank.cfg))
            at += 4 + size
        if at < len(raw):
            import pickle
            st.mv = pickle.loads(raw[at:])
        return st


Scored = list[tuple[FeatureSpec, float, Score, int]]
Columns = tuple[list[int], list[int], list[float], list[float]]  # point, row, ts (s), value


class Batch:
    """The windows of one scoring call as flat columns: a few lists, not objects per point
    (100k windows a batch would otherwise keep the garbage collector busy)."""

    def __init__(self, banks: Banks) -> None:
        self.banks = banks
        self.st: list[SeriesState] = []  # per window: its state, series, window_s, end (ms),
        self.series: list[str] = []  # event count and first point
        self.ws: list[int] = []
        self.end: list[int] = []
        self.count: list[int] = []
        self.first: list[int] = []
        self.spec: list[FeatureSpec] = []  # per point: feature and value
        self.x: list[float] = []
        self.by_key: dict[str, Columns] = {}  # the points of each feature key

    def window(self, st: SeriesState, series: str, ws: int, end: int, count: int) -> None:
        """Start a window; its points follow."""
        self.st.append(st)
        self.series.append(series)
        self.ws.append(ws)
        self.end.append(end)
        self.count.append(count)
        self.first.append(len(self.x))

    def point(self, st: SeriesState, ws: int, end: int, spec: FeatureSpec, x: float) -> None:
        """One (feature, value) of the current window."""
        key = spec.name if ws == 10 else f"{spec.name}@{ws}"
        row = st.rows.get(key)
        if row is None:
            row = st.rows[key] = self.banks[key].add()
        cols = self.by_key.get(key)
        if cols is None:
            cols = self.by_key[key] = ([], [], [], [])
        cols[0].append(len(self.x))
        cols[1].append(row)
        cols[2].append(end / 1000.0)
        cols[3].append(x)
        self.spec.append(spec)
        self.x.append(x)


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
        self.banks = Banks(series_cfg)
        self.states: dict[str, SeriesState] = {}
        self.dirty: set[str] = set()
        self.watermark: dict[int, int] = {}  # window_s -> latest window end seen (ms)
        self.scored = 0

    def score_batch(self, windows: Iterable[WindowStats]) -> list[AnomalyEvent]:
        """Score (then learn) each window; after the batch, score the silent series."""
        before = dict(self.watermark)
        batch = Batch(self.banks)
        for w in windows:
            if w.window_s in self.settings.window_s:
                end = int(w.end.timestamp() * 1000)
                self._accept(batch, w, end)
                self.watermark[w.window_s] = max(self.watermark.get(w.window_s, end), end)
        out = self._score_all(batch)
        for ws, mark in before.items():
            if self.watermark[ws] > mark:
                out += self._score_all(self._silences(ws, mark))
        return collapse(out) if len(out) > 1 else out

    def _accept(self, batch: Batch, w: WindowStats, end: int) -> None:
        """Add the window's features to ``batch``, unless it is a revision or a replay."""
        st = self.states.get(w.series)
        if st is None:
            st = self.states[w.series] = SeriesState((w.service, w.scope, w.route, w.name),
                                                     self.banks)
        ws = w.window_s
        if end <= st.last_end.get(ws, -1):
            return  # already learnt
        st.last_end[ws] = end
        self.dirty.add(w.series)
        batch.window(st, w.series, ws, end, w.count)
        for spec in SPECS.get(w.scope, ()):
            if spec.name == "count":
                x = float(w.count)
            elif spec.name == "error_rate" and w.count == 0:
                x = math.nan  # as in ``features``
            else:
                x = float(getattr(w, spec.name))
            batch.point(st, ws, end, spec, x)

    def _score_all(self, batch: Batch) -> list[AnomalyEvent]:
        """Update every detector of ``batch`` (vectorised per bank), then apply the rules."""
        n_points = len(batch.x)
        self.scored += n_points
        res = np.zeros((5, n_points))  # score, expected, lo, hi, raw
        n_before = np.zeros(n_points, np.int64)
        for key, (at, rows, ts, xs) in batch.by_key.items():
            self._update(self.banks[key], np.array(at), np.array(rows), np.array(ts),
                         np.array(xs), res, n_before)
        # the common case: nothing near any threshold (0.9 = -log p 2.3) or still warming up
        warm = min(v.warmup for _, v in self.variants)
        hot = np.flatnonzero((res[0] > 0.9) & (n_before >= warm))
        out: list[AnomalyEvent] = []
        if not len(hot) and not any(st.meta[1] == "service" for st in batch.st):
            return out
        cols, nb = res.T.tolist(), n_before.tolist()
        marks = np.zeros(n_points + 1, np.int64)
        marks[hot + 1] = 1
        hot_before = np.cumsum(marks).tolist()  # hot points before each point
        bounds = [*batch.first, n_points]
        for i, st in enumerate(batch.st):
            a, b = bounds[i], bounds[i + 1]
            if hot_before[a] == hot_before[b] and st.meta[1] != "service":
                continue
            scored = [(batch.spec[k], batch.x[k], Score(*cols[k]), nb[k]) for k in range(a, b)]
            out += self._rules(st, batch.series[i], batch.ws[i], batch.end[i], scored,
                               batch.count[i])
        return out

    @staticmethod
    def _update(bank: SeriesBank, at: npt.NDArray[np.int64], rows: npt.NDArray[np.int64],
                ts: npt.NDArray[np.float64], xs: npt.NDArray[np.float64],
                res: npt.NDArray[np.float64], n_before: npt.NDArray[np.int64]) -> None:
        """One ``bank.update`` per pass; a row seen k times is updated in k passes, in order."""
        passes = [np.arange(len(rows))]
        if len(np.unique(rows)) < len(rows):
            occ = np.empty(len(rows), np.int64)
            seen: dict[int, int] = {}
            for k, r in enumerate(rows.tolist()):
                occ[k] = seen[r] = seen.get(r, -1) + 1
            passes = [np.flatnonzero(occ == k) for k in range(int(occ.max()) + 1)]
        for sel in passes:
            n_before[at[sel]] = bank.n[rows[sel]]
            got = bank.update(rows[sel], ts[sel], xs[sel])
            for j, col in enumerate(got):
                res[j, at[sel]] = col

    def _rules(self, st: SeriesState, series: str, ws: int, end: int, scored: Scored,
               count: int) -> list[AnomalyEvent]:
        """Significance, thresholds, cooldowns and severity: one window's anomaly events."""
        out: list[AnomalyEvent] = []
        zs = {spec.name: round(s.raw, 2) for spec, _, s, _ in scored if s.raw == s.raw}
        for variant, v in self.variants:
            thr_q = v.threshold_q + st.adj.get(variant, 0.0)
            for spec, x, s, n in scored:
                if n < v.warmup or not math.isfinite(x) or s.score <= 0:
                    continue
                q = -math.log(max(1.0 - s.score, 1e-300))
                direction: Dir = "up" if x > s.expected else "down"
                need = max(spec.min_abs, spec.min_rel * abs(s.expected)) * v.min_change
                if q < thr_q or direction not in spec.bad or abs(x - s.expected) < need:
                    continue
                if not significant(spec.name, x, s.expected, count, ws):
                    continue
                if not self._cooled(st, f"{variant}|series|{spec.name}@{ws}", end, v):
                    continue
                out.append(self._event(st, series, ws, end, variant, v, "series", VERSION,
                                       spec.name, x, s.expected, s.lo, s.hi, s.score, thr_q,
                                       direction, severity_of(spec, direction, x, s.expected),
                                       zs))
        if st.meta[1] == "service" and ws == 10 and any(v.multivariate for _, v in self.variants):
            out += self._multivariate(st, series, end, {sp.name: x for sp, x, _, _ in scored},
                                      zs)
        return out

    def _multivariate(self, st: SeriesState, series: str, end: int, x: dict[str, float],
                      zs: dict[str, float]) -> list[AnomalyEvent]:
        if not math.isfinite(x.get("rate_per_s", math.nan)) or x["rate_per_s"] <= 0:
            return []  # silence is the univariate detectors' business
        if st.mv is None:
            st.mv = ServiceModel()
        q, raw = st.mv.update(x)
        if max(zs.values(), default=0.0) < self.series_cfg.band:
            return []  # every feature inside its band: an unusual mix, not a practical change
        out = []
        for variant, v in self.variants:
            thr_q = v.mv_threshold_q + st.adj.get(variant, 0.0)
            if v.multivariate and q >= thr_q and self._cooled(st, f"{variant}|hst", end, v):
                out.append(self._event(st, series, 10, end, variant, v, "hst", MV_VERSION,
                                       "vector", raw, 0.0, 0.0, 0.0, 1.0 - math.exp(-q),
                                       thr_q, "up", "warning", zs))
        return out

    @staticmethod
    def _cooled(st: SeriesState, key: str, end: int, v: VariantConfig) -> bool:
        last = st.cool.get(key)
        if last is not None and end - last < v.cooldown_s * 1000:
            return False
        st.cool[key] = end
        return True

    def _silences(self, ws: int, upto: int) -> Batch:
        """Zero-traffic windows for service/route series missing windows up to ``upto``."""
        out = Batch(self.banks)
        step, key = ws * 1000, "rate_per_s" if ws == 10 else f"rate_per_s@{ws}"
        gap_limit = self.settings.max_gap_windows * step
        for series, st in self.states.items():
            last = st.last_end.get(ws)
            if last is None or last >= upto or upto - last > gap_limit:
                continue
            row = st.rows.get(key)
            if row is None or self.banks[key].level[row] < self.settings.min_alive_rate:
                continue
            for end in range(last + step, upto + 1, step):
                st.last_end[ws] = end
                out.window(st, series, ws, end, 0)
                for spec in SPECS[st.meta[1]]:
                    out.point(st, ws, end, spec, 0.0 if spec.name == "rate_per_s" else math.nan)
            self.dirty.add(series)
        return out

    def _event(self, st: SeriesState, series: str, ws: int, end: int, variant: str,
               v: VariantConfig, detector: str, version: str, feature: str, x: float,
               expected: float, lo: float, hi: float, score: float, thr_q: float,
               direction: Dir, severity: str, zs: dict[str, float]) -> AnomalyEvent:
        service, scope, route, _ = st.meta
        lookback = int(self.settings.change_lookback_s * 1000)
        return AnomalyEvent(
            id=anomaly_id(variant, detector, series, feature, ws, end), ts=end,
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
