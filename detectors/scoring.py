"""Score windowed series online: features per window, one ``SeriesDetector`` per feature.

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

import orjson

from detectors.detection_settings import DetectionSettings, VariantConfig
from detectors.feedback import ChangeLog
from detectors.multivariate import ServiceModel
from detectors.series import SeriesConfig, SeriesDetector
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


class SeriesState:
    """Everything learnt about one series: its detectors, clocks, cooldowns, adjustments."""

    __slots__ = ("adj", "cool", "dets", "last_end", "meta", "mv")

    def __init__(self, meta: tuple[str, str, str, str]) -> None:
        self.meta = meta  # service, scope, route, name
        self.dets: dict[str, SeriesDetector] = {}  # "<feature>@<window_s>"
        self.last_end: dict[int, int] = {}  # window_s -> last window end scored (ms)
        self.cool: dict[str, int] = {}  # "<variant>|<detector>|<feature>" -> last alarm (ms)
        self.adj: dict[str, float] = {}  # variant -> threshold adjustment (-log p units)
        self.mv: ServiceModel | None = None

    def to_bytes(self) -> bytes:
        """Compact snapshot: a JSON head, then each detector's ``to_bytes``."""
        head = orjson.dumps({"m": self.meta, "l": self.last_end, "c": self.cool,
                             "a": self.adj, "d": list(self.dets)},
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
    def from_bytes(cls, raw: bytes, cfg: SeriesConfig = STREAM) -> SeriesState:
        """Rebuild a state written by ``to_bytes``."""
        (n,) = struct.unpack_from("<I", raw)
        head = orjson.loads(raw[4:4 + n])
        st = cls(tuple(head["m"]))
        st.last_end = {int(k): int(v) for k, v in head["l"].items()}
        st.cool, st.adj = dict(head["c"]), dict(head["a"])
        at = 4 + n
        for key in head["d"]:
            (size,) = struct.unpack_from("<I", raw, at)
            st.dets[key] = SeriesDetector.from_bytes(raw[at + 4:at + 4 + size],
                                                     config_for(cfg, key))
            at += 4 + size
        if at < len(raw):
            import pickle
            st.mv = pickle.loads(raw[at:])
        return st


class WindowScorer:
    """All series of one worker: ``score_batch(windows)`` -> anomalies (every variant)."""

    def __init__(self, settings: DetectionSettings, changes: ChangeLog | None = None,
                 series_cfg: SeriesConfig = STREAM) -> None:
        self.settings = settings
        self.variants: list[tuple[str, VariantConfig]] = [("champion", settings.champion)]
        if settings.challenger is not None:
            self.variants.append(("challenger", settings.challenger))
        self.changes = changes or ChangeLog()
        self.series_cfg = series_cfg
        self.states: dict[str, SeriesState] = {}
        self.dirty: set[str] = set()
        self.watermark: dict[int, int] = {}  # window_s -> latest window end seen (ms)
        self.scored = 0

    def score_batch(self, windows: Iterable[WindowStats]) -> list[AnomalyEvent]:
        """Score (then learn) each window; after the batch, score the silent series."""
        out: list[AnomalyEvent] = []
        before = dict(self.watermark)
        for w in windows:
            if w.window_s in self.settings.window_s:
                end = int(w.end.timestamp() * 1000)
                out += self.score_window(w, end)
                self.watermark[w.window_s] = max(self.watermark.get(w.window_s, end), end)
        for ws, mark in before.items():
            if self.watermark[ws] > mark:
                out += self._silences(ws, mark)
        return collapse(out) if len(out) > 1 else out

    def score_window(self, w: WindowStats, end: int) -> list[AnomalyEvent]:
        """Score one window ending at ``end`` (ms); revisions and replays are skipped."""
        st = self.states.get(w.series)
        if st is None:
            st = self.states[w.series] = SeriesState((w.service, w.scope, w.route, w.name))
        if end <= st.last_end.get(w.window_s, -1):
            return []  # a revision or a replayed window: already learnt
        st.last_end[w.window_s] = end
        self.dirty.add(w.series)
        return self._score(st, w.series, w.window_s, end, features(w), w.count)

    def _score(self, st: SeriesState, series: str, ws: int, end: int,
               feats: list[tuple[FeatureSpec, float]], count: int) -> list[AnomalyEvent]:
        scored = []
        for spec, x in feats:
            key = spec.name if ws == 10 else f"{spec.name}@{ws}"
            det = st.dets.get(key)
            if det is None:
                det = st.dets[key] = SeriesDetector(config_for(self.series_cfg, key))
            n = det.n
            scored.append((spec, x, det.update(end / 1000.0, x), n))
        self.scored += len(scored)
        out: list[AnomalyEvent] = []
        if not any(s.score > 0.9 for _, _, s, _ in scored) and st.meta[1] != "service":
            return out  # the common case: nothing near any threshold (0.9 = -log p 2.3)
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

    def _silences(self, ws: int, upto: int) -> list[AnomalyEvent]:
        """Zero-traffic windows for service/route series missing windows up to ``upto``."""
        out: list[AnomalyEvent] = []
        step, key = ws * 1000, "rate_per_s" if ws == 10 else f"rate_per_s@{ws}"
        gap_limit = self.settings.max_gap_windows * step
        for series, st in self.states.items():
            last = st.last_end.get(ws)
            if last is None or last >= upto or upto - last > gap_limit:
                continue
            det = st.dets.get(key)
            if det is None or det.level < self.settings.min_alive_rate:
                continue
            for end in range(last + step, upto + 1, step):
                st.last_end[ws] = end
                feats = [(spec, 0.0 if spec.name == "rate_per_s" else math.nan)
                         for spec in SPECS[st.meta[1]]]
                out += self._score(st, series, ws, end, feats, 0)
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
        if raw:
            self.states[series] = SeriesState.from_bytes(raw, self.series_cfg)
        else:
            self.states.pop(series, None)

    def forget(self, keep: Iterable[str] = ()) -> None:
        """Drop every state except ``keep`` (after a rebalance took partitions away)."""
        kept = set(keep)
        self.states = {s: st for s, st in self.states.items() if s in kept}
