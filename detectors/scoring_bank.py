"""What ``WindowScorer`` keeps: the features of a window, per-series state, banks, batches.

A window of scope ``service``/``route`` gives rate_per_s, error_rate, p95 and p99 (a route
also its p50: its typical latency, where a service's median mostly follows its route mix); a
metric window its mean; a template window its count. A metric named ``*_total`` is a counter (the
OpenMetrics naming rule): its value only grows, so its level says nothing; it is scored on
its increase per second since the series' previous window (a drop is a counter reset).

>>> from datetime import UTC, datetime
>>> from schemas.windows import WindowStats
>>> def metric(name, t, last):
...     return WindowStats(series=f"api/{name}", service="api", scope="metric", name=name,
...         window_s=10, start=datetime.fromtimestamp(t - 10, UTC),
...         end=datetime.fromtimestamp(t, UTC), mean=last, last=last)
>>> [(s.name, v) for s, v in features(metric("cpu_percent", 20, 40.0))]
[('mean', 40.0)]
>>> [(s.name, v) for s, v in features(metric("requests_total", 20, 900.0), 10, 600.0)]
[('increase_per_s', 30.0)]
>>> counter_rate(50.0, 10, 900.0)  # a reset: the counter restarted from zero
5.0
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
import orjson
import structlog

from detectors.artime import ARTimeConfig, ARTimeDetector
from detectors.artime_batch import ARTimeBank
from detectors.levels import Levels
from detectors.multivariate import ServiceModel
from detectors.series import SeriesConfig, SeriesDetector
from detectors.series_batch import SeriesBank
from detectors.slow_calls import Calls, Reference
from schemas.windows import WindowStats

Dir = Literal["up", "down"]
log = structlog.get_logger(__name__)


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
# A route's median is its typical latency; a service's is mostly its mix of routes.
_MEDIAN = FeatureSpec("p50", ("up",), 10.0, 0.5, "warning", 1.0)
SPECS: dict[str, tuple[FeatureSpec, ...]] = {
    "service": _TRAFFIC, "route": (*_TRAFFIC, _MEDIAN),
    # a dependency edge (caller->callee): its calls fail or slow down; how often a caller
    # calls follows the caller's own traffic, scored on the caller
    "edge": (*_TRAFFIC[1:], _MEDIAN),
    "metric": (FeatureSpec("mean", ("down", "up"), 0.0, 0.1, "warning"),),
    "counter": (FeatureSpec("increase_per_s", ("down", "up"), 0.0, 0.1, "warning"),),
    "template": (FeatureSpec("count", ("up",), 5.0, 1.0, "warning", 1.0),),
}
COUNTER = SPECS["counter"]
FLOORS = {spec.name: spec.floor for specs in SPECS.values() for spec in specs}
# Streaming default: NAB's settings, but a 5-minute (30 window) silence after an alarm, and
# alarms kept out of the calibration (the next incident must not look "seen before").
# The first 10 points are learnt unclipped: a series often starts with a partial window.
STREAM = SeriesConfig(hold_points=0, suppress=1.0, learn_alarms=False, free_points=10)


def is_counter(w: WindowStats) -> bool:
    """A cumulative counter: a metric named ``*_total`` (OpenMetrics' rule for counters)."""
    return w.scope == "metric" and w.name.endswith("_total")


def specs_of(w: WindowStats) -> tuple[FeatureSpec, ...]:
    """The features scored for ``w``'s kind of series."""
    return SPECS["counter" if is_counter(w) else w.scope] if w.scope in SPECS else ()


def counter_rate(last: float, seconds: float, previous: float | None) -> float:
    """A counter's increase per second since ``previous`` (NaN without one; a drop is a
    reset, so the whole of ``last`` is new)."""
    if previous is None or not math.isfinite(last) or not math.isfinite(previous):
        return math.nan
    return (last - previous if last >= previous else last) / max(seconds, 1e-9)


def features(w: WindowStats, seconds: float = 0.0,
             previous: float | None = None) -> list[tuple[FeatureSpec, float]]:
    """The (feature, value) pairs scored for a window; NaN means not observed.

    A counter needs its ``previous`` value, ``seconds`` before this window's."""
    out = []
    for spec in specs_of(w):  # (``WindowScorer._accept`` inlines this)
        if spec.name == "count":
            v = float(w.count)
        elif spec.name == "increase_per_s":
            v = counter_rate(w.last, seconds, previous)
        elif spec.name == "error_rate" and w.count == 0:
            v = math.nan  # no requests: the error rate is unknown, not 0
        else:
            v = float(getattr(w, spec.name))
        out.append((spec, v))
    return out


def severity_of(spec: FeatureSpec, direction: Dir, observed: float, expected: float) -> str:
    """Critical for errors up and traffic collapsing; warning otherwise."""
    if spec.name == "rate_per_s":
        return "critical" if direction == "down" and observed < 0.2 * expected else "warning"
    return spec.severity


def bank_key(feature: str, ws: int) -> str:
    """The ``Banks`` key of a feature at a window size: ``p95``, or ``p95@60`` (not 10 s)."""
    return feature if ws == 10 else f"{feature}@{ws}"


@lru_cache(maxsize=256)
def config_for(base: SeriesConfig, key: str) -> SeriesConfig:
    """The detector settings of a ``<feature>[@<window_s>]`` key: ``base`` + its floor."""
    return replace(base, floor=FLOORS.get(key.split("@")[0], 0.0))


# The features ARTime scores when a variant asks for it: NAB's kind of series, a gauge's
# level or a counter's rate. Traffic, errors and latency keep the calibrated tests
# (``significance``) that a shape detector has no counterpart for.
ARTIME_FEATURES = frozenset(("mean", "increase_per_s"))
# ARTime probations ended per feature key and scoring call at most (tens of ms each: ~65 ms
# at a probation of 180 windows): gauges that started together do not stall the worker
ARTIME_ENDS = 8


class Banks:
    """The ``SeriesBank`` of each feature key (``<feature>[@<window_s>]``: its own floor),
    and, with ``art`` settings, the ``ARTimeBank`` of each ARTime feature key."""

    def __init__(self, cfg: SeriesConfig, art: ARTimeConfig | None = None) -> None:
        self.cfg = cfg
        self.by_key: dict[str, SeriesBank] = {}
        self.art_cfg = art
        self.art_by_key: dict[str, ARTimeBank] = {}

    def __getitem__(self, key: str) -> SeriesBank:
        bank = self.by_key.get(key)
        if bank is None:
            bank = self.by_key[key] = SeriesBank(config_for(self.cfg, key), capacity=64)
        return bank

    def art(self, key: str) -> ARTimeBank:
        """The ARTime bank of a feature key (only with ``art`` settings)."""
        bank = self.art_by_key.get(key)
        if bank is None:
            assert self.art_cfg is not None, "ARTime is off"
            bank = self.art_by_key[key] = ARTimeBank(self.art_cfg, capacity=64,
                                                     max_ends=ARTIME_ENDS)
        return bank


# an alarm that takes its series back into the normal band recorded when the series' last
# alarm episode began (the other way, this soon after: within one half-hour bucket of the
# daily profile, so that band still applies) is a recovery, not news
RECOVERY_MS = 30 * 60_000


class SeriesState:
    """Everything learnt about one series: its detector rows, clocks, cooldowns, adjustments."""

    __slots__ = ("adj", "art", "banks", "base", "calls", "cool", "discrete", "disp", "episodes",
                 "imputed", "last_end", "levels", "meta", "mv", "pending", "prev", "quantum",
                 "ref", "rows", "runs", "slow", "timed")

    def __init__(self, meta: tuple[str, str, str, str], banks: Banks) -> None:
        self.meta = meta  # service, scope, route, name
        self.banks = banks
        self.rows: dict[str, int] = {}  # "<feature>@<window_s>" -> its row in banks[key]
        self.art: dict[str, int] = {}  # the same -> its row in banks.art(key) (ARTime)
        self.last_end: dict[int, int] = {}  # window_s -> last window end scored (ms)
        # window_s -> the first window end of the silence imputed since the last real
        # window (``WindowScorer._silences``): a real window late for it is still scored
        self.imputed: dict[int, int] = {}
        self.timed: dict[int, int] = {}  # window_s -> end of its last window with latencies
        self.cool: dict[str, int] = {}  # "<variant>|<detector>|<feature>" -> last alarm (ms)
        self.adj: dict[str, float] = {}  # variant -> threshold adjustment (-log p units)
        # "<variant>|series|<feature>@<ws>" -> (last alarm ms, +1 up / -1 down, lo, hi): the
        # normal band when the alarm's episode began (``WindowScorer._recovery``)
        self.episodes: dict[str, tuple[int, int, float, float]] = {}
        self.prev: dict[int, float] = {}  # window_s -> a counter's last value
        # "<variant>|series|<feature>@<ws>" -> (end ms, requests beyond) of an unconfirmed run
        self.pending: dict[str, tuple[int, float]] = {}
        # window_s -> a route's run of windows with errors (``significance.error_run``)
        self.runs: dict[int, tuple[int, int, float, float, float]] = {}
        # "<feature>@<ws>" of a latency percentile -> (last window end ms, the -log p of its
        # last ``SLOW_WINDOWS`` windows with requests, oldest first, 0 where it was lower;
        # their requests, 0 where it was lower): ``scoring.slow_run``
        self.slow: dict[str, tuple[int, tuple[float, ...], tuple[int, ...]]] = {}
        # "<feature>@<ws>" of a latency percentile -> (first window end ms, expected value,
        # typical error) when its run of slow windows began: ``WindowScorer._run_start``
        self.base: dict[str, tuple[int, float, float]] = {}
        # window_s -> decayed sums of its windows, error lines and their squares: error
        # lines to a failure (``significance.dispersion``)
        self.disp: dict[int, tuple[float, float, float]] = {}
        self.mv: ServiceModel | None = None
        self.discrete = True  # a metric whose every reading so far was a whole number
        self.quantum = 0  # ... and the greatest common divisor of those readings
        self.levels: Levels | None = None  # a gauge's readings (``detectors.levels``)
        # a route's or edge's past calls, and per window_s its last windows' (calls, slow
        # calls, null share) with the end of the newest: ``detectors.slow_calls``
        self.ref: Reference | None = None
        self.calls: dict[int, tuple[int, tuple[Calls, ...]]] = {}

    @property
    def dets(self) -> dict[str, SeriesDetector]:
        """Each feature's detector, as a scalar copy of its bank row."""
        return {key: self.banks[key].detector(i) for key, i in self.rows.items()}

    def release(self) -> None:
        """Give the detector rows back to their banks (the state is forgotten)."""
        for key, i in self.rows.items():
            self.banks[key].free(i)
        for key, i in self.art.items():
            self.banks.art(key).free(i)
        self.rows, self.art = {}, {}

    def to_bytes(self) -> bytes:
        """Compact snapshot: a JSON head, then each detector's ``to_bytes``."""
        now = max(self.last_end.values(), default=0)
        # an episode older than RECOVERY_MS decides nothing any more: not kept
        self.episodes = {k: ep for k, ep in self.episodes.items() if now - ep[0] <= RECOVERY_MS}
        head = orjson.dumps({"m": self.meta, "l": self.last_end, "c": self.cool,
                             "a": self.adj, "p": self.prev, "u": self.pending,
                             "r": self.runs, "d": list(self.rows), "q": self.discrete,
                             "g": self.quantum, "e": self.episodes, "s": self.slow,
                             "v": self.disp, "b": self.base,
                             "h": None if self.levels is None else self.levels.to_json(),
                             "f": None if self.ref is None else self.ref.to_json(),
                             "k": self.calls, "t": list(self.art)},
                            option=orjson.OPT_NON_STR_KEYS)
        parts = [struct.pack("<I", len(head)), head]
        raws = [*(det.to_bytes() for det in self.dets.values()),
                *(self.banks.art(key).detector(i).to_bytes() for key, i in self.art.items())]
        for raw in raws:
            parts += [struct.pack("<I", len(raw)), raw]
        if self.mv is not None:  # its own format, never pickle (the topic is not trusted)
            parts.append(self.mv.to_bytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes, banks: Banks) -> SeriesState:
        """Rebuild a state written by ``to_bytes`` (its detectors become rows of ``banks``).

        Malformed bytes raise ValueError. A service model in any other format (an old
        pickle, a forged one) is refused: logged, and the service starts a fresh model."""
        try:
            return cls._from_bytes(raw, banks)
        except (struct.error, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"unreadable series state: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def _from_bytes(cls, raw: bytes, banks: Banks) -> SeriesState:
        (n,) = struct.unpack_from("<I", raw)
        head = orjson.loads(raw[4:4 + n])
        st = cls(tuple(head["m"]), banks)
        st.last_end = {int(k): int(v) for k, v in head["l"].items()}
        st.cool, st.adj = dict(head["c"]), dict(head["a"])
        st.prev = {int(k): float(v) for k, v in head.get("p", {}).items()}
        st.pending = {k: (v, 2.0) if isinstance(v, int) else (int(v[0]), float(v[1]))
                      for k, v in head.get("u", {}).items()}  # (an int: before runs)
        st.runs = {int(k): (int(v[0]), int(v[1]), float(v[2]), float(v[3]), float(v[4]))
                   for k, v in head.get("r", {}).items()}
        st.discrete = bool(head.get("q", True))
        st.quantum = int(head.get("g", 0))
        st.episodes = {k: (int(v[0]), int(v[1]), float(v[2]), float(v[3]))
                       for k, v in head.get("e", {}).items()}
        st.slow = {k: (int(v[0]), tuple(float(q) for q in v[1]), tuple(int(n) for n in v[2]))
                   for k, v in head.get("s", {}).items()}
        st.disp = {int(k): (float(v[0]), float(v[1]), float(v[2]))
                   for k, v in head.get("v", {}).items()}
        st.base = {k: (int(v[0]), float(v[1]), float(v[2])) for k, v in head.get("b", {}).items()}
        if head.get("h") is not None:
            st.levels = Levels.from_json(head["h"])
        if head.get("f") is not None:
            st.ref = Reference.from_json(head["f"])
        st.calls = {int(k): (int(v[0]), tuple((int(c[0]), int(c[1]), float(c[2]))
                                              for c in v[1]))
                    for k, v in head.get("k", {}).items()}
        at = 4 + n
        try:
            for key in head["d"]:
                (size,) = struct.unpack_from("<I", raw, at)
                bank = banks[str(key)]
                st.rows[key] = bank.add(SeriesDetector.from_bytes(raw[at + 4:at + 4 + size],
                                                                  bank.cfg))
                at += 4 + size
            for key in head.get("t", ()):
                (size,) = struct.unpack_from("<I", raw, at)
                st._restore_art(str(key), raw[at + 4:at + 4 + size])
                at += 4 + size
        except BaseException:
            st.release()  # give back the rows already taken
            raise
        if at < len(raw):
            try:
                st.mv = ServiceModel.from_bytes(raw[at:])
            except ValueError as exc:
                log.warning("service_model_refused", stage="detect", service=st.meta[0],
                            error=str(exc), bytes=len(raw) - at)
        return st


    def _restore_art(self, key: str, raw: bytes) -> None:
        """One ARTime detector of a snapshot; one written with other settings, or read
        while ARTime is off, is dropped (logged): a gauge learns its shapes again."""
        cfg = self.banks.art_cfg
        try:
            if cfg is None:
                raise ValueError("ARTime is off")
            det = ARTimeDetector.from_bytes(raw, cfg)
        except ValueError as exc:
            log.info("artime_state_dropped", stage="detect", series=self.meta[0], key=key,
                     reason=str(exc))
            return
        self.art[key] = self.banks.art(key).add(det)


Columns = tuple[list[int], list[int], list[float], list[float]]  # point, row, ts (s), value


class Batch:
    """The windows of one scoring call as flat columns: a few lists, not objects per point
    (100k windows a batch would otherwise keep the garbage collector busy)."""

    def __init__(self, banks: Banks) -> None:
        self.banks = banks
        self.st: list[SeriesState] = []  # per window: its state, series, window_s, end (ms),
        self.series: list[str] = []  # event count, latencies and first point
        self.ws: list[int] = []
        self.end: list[int] = []
        self.count: list[int] = []
        self.samples: list[int] = []  # latencies behind its percentiles
        self.median: list[float] = []  # its median latency (NaN: none)
        self.prior: list[int] = []  # end of the series' previous window with latencies
        self.calls_q: list[float] = []  # its slow calls' -log p (``detectors.slow_calls``)
        self.first: list[int] = []
        self.spec: list[FeatureSpec] = []  # per point: feature and value
        self.x: list[float] = []
        self.by_key: dict[str, Columns] = {}  # the points of each feature key
        # per window with events: (its error_rate point, state, window_s, error lines, events)
        self.errors: list[tuple[int, SeriesState, int, float, int]] = []
        # the points ARTime also scores, per feature key: (point, ARTime row)
        self.art_feats = ARTIME_FEATURES if banks.art_cfg is not None else frozenset()
        self.art_by_key: dict[str, tuple[list[int], list[int]]] = {}

    def window(self, st: SeriesState, series: str, ws: int, end: int, count: int,
               samples: int, median: float = math.nan, prior: int = -1,
               calls_q: float = 0.0) -> None:
        """Start a window; its points follow."""
        self.st.append(st)
        self.series.append(series)
        self.ws.append(ws)
        self.end.append(end)
        self.count.append(count)
        self.samples.append(samples)
        self.median.append(median)
        self.prior.append(prior)
        self.calls_q.append(calls_q)
        self.first.append(len(self.x))

    def point(self, st: SeriesState, ws: int, end: int, spec: FeatureSpec, x: float) -> None:
        """One (feature, value) of the current window."""
        key = bank_key(spec.name, ws)
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
        if spec.name in self.art_feats:
            art = st.art.get(key)
            if art is None:
                art = st.art[key] = self.banks.art(key).add()
            acols = self.art_by_key.get(key)
            if acols is None:
                acols = self.art_by_key[key] = ([], [])
            acols[0].append(len(self.x))
            acols[1].append(art)
        self.spec.append(spec)
        self.x.append(x)


def occurrences(rows: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
    """The passes that update ``rows`` of a bank in order, each row at most once a pass: a
    row seen k times in a batch is in k passes (usually one pass: every index)."""
    if len(np.unique(rows)) == len(rows):
        return [np.arange(len(rows))]
    occ = np.empty(len(rows), np.int64)
    seen: dict[int, int] = {}
    for k, r in enumerate(rows.tolist()):
        occ[k] = seen[r] = seen.get(r, -1) + 1
    return [np.flatnonzero(occ == k) for k in range(int(occ.max()) + 1)]


def update_rows(bank: SeriesBank, at: npt.NDArray[np.int64], rows: npt.NDArray[np.int64],
                ts: npt.NDArray[np.float64], xs: npt.NDArray[np.float64],
                res: npt.NDArray[np.float64], n_before: npt.NDArray[np.int64]) -> None:
    """Score points ``at`` of a batch (rows, times, values) into ``res`` (score, expected,
    lo, hi, raw) and ``n_before``: one ``bank.update`` per pass of ``occurrences``."""
    for sel in occurrences(rows):
        n_before[at[sel]] = bank.n[rows[sel]]
        got = bank.update(rows[sel], ts[sel], xs[sel])
        for j, col in enumerate(got):
            res[j, at[sel]] = col
