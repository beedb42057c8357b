"""Online anomaly detector for one univariate series: cheap, seasonal, calibrated.

Per point it predicts the value three ways and trusts whichever has been most accurate
lately (each tracks its own mean absolute error):

- level: a fast exponentially weighted level, which follows trends and level shifts;
- daily: a 48-bucket (half-hour) profile of the day plus a fast offset;
- weekly: a 168-bucket (hour of week) profile plus a fast offset.

The seasonal profiles only compete once two days / two weeks have been seen, so a new
series works from its second point on the level alone. Updates are clipped at
``clip`` typical errors (Huber-like), so one outlier barely moves the model, while a real
level shift is adopted within a few dozen points (the error scale grows as it persists).

The raw statistic is ``z = |x - expected| / typical error``. Two ``TailHistogram``s turn
``log1p(z)`` and its short-term mean (for changes in noise or density rather than single
spikes) into tail probabilities ``p``; ``score = 1 - min(p)``. An alarm (``p`` below
``exp(-hold_q)``) then silences the series for ``hold_points`` points, and a score that does
not beat the recent peak is damped, so an anomaly gives one sharp score at its onset.

Why not River: ``river.anomaly.GaussianScorer`` assumes Gaussian errors (heavy-tailed
metrics then alarm all day) and has no seasonality; a default HalfSpaceTrees is ~170 KB.
This model serialises to ~1.6 KB with no randomness (runs repeat exactly), and its state
is a fixed set of floats, so a numpy version over many series is a direct translation.

>>> import math
>>> det = SeriesDetector()
>>> day = [10 + 5 * math.sin(2 * math.pi * i / 288) + (i * 7919 % 13) / 13 for i in range(2000)]
>>> scores = [det.update(300.0 * i, v) for i, v in enumerate(day)]
>>> max(s.score for s in scores[600:]) < 0.99
True
>>> spike = det.update(300.0 * 2000, 40.0)
>>> spike.score > 0.999, spike.lo < spike.expected < spike.hi < 40.0
(True, True)
"""

from __future__ import annotations

import math
import struct
from array import array
from dataclasses import dataclass
from typing import NamedTuple

from detectors.calibration import TailHistogram

DAY_BUCKETS = 48  # half-hours of the day
WEEK_BUCKETS = 168  # hours of the week
_SCALARS = struct.Struct("<6I15d")  # layout of the scalar state in to_bytes()


class Score(NamedTuple):
    """What the detector says about one point."""

    score: float  # calibrated anomaly score in [0, 1]; alarm when close to 1
    expected: float  # the predicted value
    lo: float  # the band of normal values
    hi: float
    raw: float  # |value - expected| / typical error


@dataclass(frozen=True)
class SeriesConfig:
    """Knobs of ``SeriesDetector``; the defaults are the ones evaluated on NAB."""

    level_rate: float = 0.2  # fast level (EWMA) learning rate
    err_rate: float = 0.01  # learning rate of the typical absolute errors
    clip: float = 4.0  # updates are clipped at this many typical errors
    season_cycles: float = 1.5  # memory of a seasonal bucket, in cycles
    offset_rate: float = 0.2  # learning rate of the seasonal offsets
    hist_rate: float = 0.002  # forgetting rate of the calibration (≈ 500 points)
    short_rate: float = 0.1  # rate of the short-term mean of the statistic
    decay: float = 0.995  # per point decay of the remembered peak of -log p
    suppress: float = 0.2  # factor on scores that do not beat the peak, or during a hold
    hold_q: float = 6.5  # -log p that counts as an alarm (p ≈ 0.0015)
    hold_points: int = 150  # points silenced after an alarm
    band: float = 4.0  # half-width of the band, in typical absolute errors
    floor: float = 0.0  # absolute floor on the typical error (a feature's noise unit)
    free_points: int = 0  # the first points are learnt unclipped (a cold start adopts the level)
    learn_alarms: bool = True  # False: alarming points stay out of the calibration, so a
    # recurring incident is not "normal" because the last one was remembered


DEFAULT = SeriesConfig()


class SeriesDetector:
    """Streaming detector for one series; ``update(ts, value)`` scores then learns."""

    __slots__ = ("_cfg", "day", "e0", "ed", "ew", "hold", "hshort", "hz", "last_ts", "level",
                 "mag", "n", "od", "ow", "peak", "short", "step", "week")

    def __init__(self, cfg: SeriesConfig = DEFAULT) -> None:
        self._cfg = cfg
        self.n = 0  # points learnt
        self.hold = 0  # points left in the silence after an alarm
        self.last_ts = -math.inf
        self.step = 0.0  # typical sampling step, seconds
        self.level = 0.0
        self.mag = 0.0  # typical |value|, for the error floor
        self.e0 = self.ed = self.ew = math.inf  # typical |error| of level, daily, weekly
        self.od = self.ow = 0.0  # fast offsets of the daily / weekly profiles
        self.short = 0.0  # short-term mean of log1p(z)
        self.peak = 0.0  # decaying peak of -log p
        self.day = array("f", [math.nan]) * DAY_BUCKETS
        self.week = array("f", [math.nan]) * WEEK_BUCKETS
        self.hz = TailHistogram(cfg.hist_rate)
        self.hshort = TailHistogram(cfg.hist_rate)

    def update(self, ts: float, value: float) -> Score:
        """Score ``value`` at epoch seconds ``ts`` using only the past, then learn it."""
        c = self._cfg
        x = float(value)
        if not math.isfinite(x) or not math.isfinite(ts):  # a missing point: skip it
            return Score(0.0, self.level, self.level, self.level, math.nan)
        if self.n == 0:
            self.n, self.last_ts, self.level, self.mag = 1, ts, x, abs(x)
            self.e0 = 0.01 * abs(x) + 1e-9
            return Score(0.0, x, x, x, 0.0)
        dt = ts - self.last_ts
        if dt > 0:  # duplicates and out-of-order points don't move the clock
            self.step = dt if self.step == 0 else self.step + 0.05 * (
                min(dt, 4 * self.step) - self.step)
            self.last_ts = ts
        step = self.step or 300.0
        bd = int(ts // 1800) % DAY_BUCKETS
        bw = int(ts // 3600) % WEEK_BUCKETS
        sd, sw = self.day[bd], self.week[bw]

        # predict: the candidate with the smallest recent error wins
        seen = self.n * step
        expected, err = self.level, self.e0
        pd = sd + self.od if sd == sd and seen > 2 * 86400 else math.nan
        pw = sw + self.ow if sw == sw and seen > 14 * 86400 else math.nan
        if pd == pd and self.ed < err:
            expected, err = pd, self.ed
        if pw == pw and self.ew < err:
            expected, err = pw, self.ew
        scale = err + 1e-3 * self.mag + c.floor + 1e-9
        z = abs(x - expected) / scale

        # calibrate: tail probability of z (and of its short mean) under the recent past
        s = math.log1p(z)
        short = self.short + c.short_rate * (s - self.short)
        p = min(self.hz.tail(s), self.hshort.tail(short))
        score = 1.0 - p
        q = -math.log(p) if p > 0 else 700.0
        if q <= self.peak or self.hold > 0:
            out = score * c.suppress
        else:
            out = score
            if q > c.hold_q:
                self.hold = c.hold_points + 1
        self.hold = max(self.hold - 1, 0)
        self.peak = max(self.peak * c.decay, q)
        self.short = short
        if c.learn_alarms or q <= c.hold_q:
            self.hz.add(s)
            self.hshort.add(short)
        lim = c.clip * scale if self.n > c.free_points else math.inf
        self._learn(x, ts, step, bd, bw, sd, sw, pd, pw, lim)
        return Score(out, expected, expected - c.band * scale, expected + c.band * scale, z)

    def _learn(self, x: float, ts: float, step: float, bd: int, bw: int, sd: float, sw: float,
               pd: float, pw: float, lim: float) -> None:
        c = self._cfg
        self.mag += 0.01 * (abs(x) - self.mag)
        r = x - self.level
        self.e0 += c.err_rate * (min(abs(r), lim) - self.e0)
        self.level += c.level_rate * max(-lim, min(lim, r))
        if sd == sd:
            if pd == pd:
                e = min(abs(x - pd), lim)
                self.ed = 2 * self.e0 if self.ed == math.inf else self.ed + c.err_rate * (
                    e - self.ed)
            self.od += c.offset_rate * max(-lim, min(lim, x - sd - self.od))
            rate = min(0.5, max(0.01, step / (1800 * c.season_cycles)))
            self.day[bd] = sd + rate * (x - self.od - sd)
        else:
            self.day[bd] = x - self.od
        if sw == sw:
            if pw == pw:
                e = min(abs(x - pw), lim)
                self.ew = 2 * self.e0 if self.ew == math.inf else self.ew + c.err_rate * (
                    e - self.ew)
            self.ow += c.offset_rate * max(-lim, min(lim, x - sw - self.ow))
            rate = min(0.5, max(0.01, step / (3600 * c.season_cycles)))
            self.week[bw] = sw + rate * (x - self.ow - sw)
        else:
            self.week[bw] = x - self.ow
        self.n += 1

    # -- snapshots ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The learnt state as compact bytes (settings not included), ~1.6 KB."""
        head = _SCALARS.pack(
            1, self.n, self.hold, DAY_BUCKETS, WEEK_BUCKETS, 0, self.last_ts, self.step,
            self.level, self.mag, self.e0, self.ed, self.ew, self.od, self.ow, self.short,
            self.peak, 0.0, 0.0, 0.0, 0.0)
        return (head + self.day.tobytes() + self.week.tobytes() + self.hz.to_bytes()
                + self.hshort.to_bytes())

    @classmethod
    def from_bytes(cls, raw: bytes, cfg: SeriesConfig = DEFAULT) -> SeriesDetector:
        """Rebuild a detector from ``to_bytes`` output; ValueError for anything else."""
        if len(raw) != STATE_BYTES:
            raise ValueError(f"a SeriesDetector state is {STATE_BYTES} bytes, not {len(raw)}")
        if _SCALARS.unpack_from(raw)[0] != 1:
            raise ValueError("unknown SeriesDetector state version")
        det = cls(cfg)
        (_, det.n, det.hold, _, _, _, det.last_ts, det.step, det.level, det.mag, det.e0,
         det.ed, det.ew, det.od, det.ow, det.short, det.peak, *_) = _SCALARS.unpack_from(raw)
        at = _SCALARS.size
        det.day = array("f", raw[at:at + 4 * DAY_BUCKETS])
        at += 4 * DAY_BUCKETS
        det.week = array("f", raw[at:at + 4 * WEEK_BUCKETS])
        at += 4 * WEEK_BUCKETS
        det.hz.load_bytes(raw[at:at + TailHistogram.size()])
        det.hshort.load_bytes(raw[at + TailHistogram.size():])
        return det

    def state_size(self) -> int:
        """Bytes of the detector's snapshot (``to_bytes``; settings travel apart)."""
        return len(self.to_bytes())


STATE_BYTES = _SCALARS.size + 4 * (DAY_BUCKETS + WEEK_BUCKETS) + 2 * TailHistogram.size()
