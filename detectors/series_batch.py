"""``SeriesBank``: many ``SeriesDetector``s as numpy columns, updated in one vectorised call.

Row ``i`` holds exactly the state of one scalar ``SeriesDetector`` (same float32 seasonal
profiles, same two ``TailHistogram``s), and ``update(rows, ts, x)`` runs the scalar
``update`` for every row at once: same inputs give the same scores (to rounding, ~1e-12).
A row converts to and from a ``SeriesDetector`` (``detector(i)`` / ``add(det)`` /
``set(i, det)``), so snapshots keep the scalar ``to_bytes`` format (~1.7 KB a series).
Unused rows are kept fresh, so ``add()`` is O(1); ``free(i)`` gives a row back for reuse.

>>> import numpy as np
>>> bank = SeriesBank()
>>> rows = np.array([bank.add(), bank.add()])
>>> for i in range(300):
...     out = bank.update(rows, np.full(2, 10.0 * i), np.array([5.0 + i % 3, 50.0 + i % 4]))
>>> spike = bank.update(rows, np.full(2, 3000.0), np.array([5.0, 500.0]))
>>> bool(spike.score[0] < 0.9), bool(spike.score[1] > 0.999)
(True, True)
"""

from __future__ import annotations

import math
from array import array
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from detectors.calibration import BIN_W, BINS
from detectors.series import DAY_BUCKETS, DEFAULT, WEEK_BUCKETS, SeriesConfig, SeriesDetector

F = npt.NDArray[np.float64]
I = npt.NDArray[np.int64]  # noqa: E741
_SCALARS = ("last_ts", "step", "level", "mag", "e0", "ed", "ew", "od", "ow", "short", "peak",
            "hz_t", "hz_w", "hs_t", "hs_w")


class Scores(NamedTuple):
    """``SeriesDetector.update``'s ``Score`` fields, one array each."""

    score: F
    expected: F
    lo: F
    hi: F
    raw: F


class SeriesBank:
    """Columnar states of detectors sharing one ``SeriesConfig``."""

    def __init__(self, cfg: SeriesConfig = DEFAULT, capacity: int = 1024) -> None:
        self.cfg = cfg
        self.size = 0
        self._free: list[int] = []
        self._alloc(max(1, capacity))

    def _alloc(self, cap: int) -> None:
        old = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        self.n = np.zeros(cap, np.int64)
        self.hold = np.zeros(cap, np.int64)
        self.last_ts, self.step, self.level, self.mag = (np.zeros(cap) for _ in range(4))
        self.e0, self.ed, self.ew, self.od, self.ow = (np.zeros(cap) for _ in range(5))
        self.short, self.peak = np.zeros(cap), np.zeros(cap)
        self.hz_t, self.hz_w, self.hs_t, self.hs_w = (np.zeros(cap) for _ in range(4))
        self.day = np.zeros((cap, DAY_BUCKETS), np.float32)
        self.week = np.zeros((cap, WEEK_BUCKETS), np.float32)
        self.hz_c = np.zeros((cap, BINS))
        self.hs_c = np.zeros((cap, BINS))
        for k, v in old.items():
            getattr(self, k)[:len(v)] = v
        self._fresh(slice(len(old.get("n", ())), cap))

    def _fresh(self, r: slice | int) -> None:
        """Rows ``r`` as a new ``SeriesDetector``: unused rows are always fresh."""
        self.n[r] = self.hold[r] = 0
        self.last_ts[r] = -np.inf
        for a in (self.step, self.level, self.mag, self.od, self.ow, self.short, self.peak,
                  self.hz_t, self.hs_t, self.hz_c, self.hs_c):
            a[r] = 0.0
        self.e0[r] = self.ed[r] = self.ew[r] = np.inf
        self.hz_w[r] = self.hs_w[r] = 1.0
        self.day[r] = self.week[r] = np.nan

    def add(self, det: SeriesDetector | None = None) -> int:
        """A new row (a fresh detector, or a copy of ``det``'s state); its index."""
        if self._free:
            i = self._free.pop()
        else:
            if self.size == len(self.n):
                self._alloc(max(64, len(self.n) * 9 // 8))  # spare rows: at most 12.5%
            i, self.size = self.size, self.size + 1
        if det is not None:  # unused rows are kept fresh
            self.set(i, det)
        return i

    def set(self, i: int, d: SeriesDetector) -> None:
        """Row ``i`` takes ``d``'s state."""
        self.n[i], self.hold[i] = d.n, d.hold
        for k, v in zip(_SCALARS, (d.last_ts, d.step, d.level, d.mag, d.e0, d.ed, d.ew, d.od,
                                   d.ow, d.short, d.peak, d.hz.total, d.hz.weight,
                                   d.hshort.total, d.hshort.weight), strict=True):
            getattr(self, k)[i] = v
        self.day[i], self.week[i] = d.day, d.week
        self.hz_c[i], self.hs_c[i] = d.hz.counts, d.hshort.counts

    def free(self, i: int) -> None:
        """Give row ``i`` back (reset, then reused by the next ``add``)."""
        self._fresh(i)
        self._free.append(i)

    def detector(self, i: int) -> SeriesDetector:
        """Row ``i`` as a scalar detector (for snapshots: ``detector(i).to_bytes()``)."""
        d = SeriesDetector(self.cfg)
        d.n, d.hold = int(self.n[i]), int(self.hold[i])
        (d.last_ts, d.step, d.level, d.mag, d.e0, d.ed, d.ew, d.od, d.ow, d.short, d.peak,
         d.hz.total, d.hz.weight, d.hshort.total, d.hshort.weight) = (
            float(getattr(self, k)[i]) for k in _SCALARS)
        d.day, d.week = array("f", self.day[i].tobytes()), array("f", self.week[i].tobytes())
        d.hz.counts = array("d", self.hz_c[i].tobytes())
        d.hshort.counts = array("d", self.hs_c[i].tobytes())
        return d

    def update(self, rows: I, ts: F, x: F) -> Scores:
        """``SeriesDetector.update(ts[k], x[k])`` for each (distinct) row ``rows[k]``."""
        c = self.cfg
        rows, ts, x = np.asarray(rows), np.asarray(ts, float), np.asarray(x, float)
        level = self.level[rows]
        out = Scores(np.zeros(len(rows)), level.copy(), level.copy(), level.copy(),
                     np.full(len(rows), np.nan))
        ok = np.isfinite(x) & np.isfinite(ts)
        first = ok & (self.n[rows] == 0)
        if first.any():  # the first point only sets the level
            r, v = rows[first], x[first]
            self.n[r], self.last_ts[r], self.level[r], self.mag[r] = 1, ts[first], v, abs(v)
            self.e0[r] = 0.01 * abs(v) + 1e-9
            for a in out[1:4]:
                a[first] = v
            out.raw[first] = 0.0
        k = np.flatnonzero(ok & ~first)
        if len(k):
            res = self._step(rows[k], ts[k], x[k], c)
            for a, v in zip(out, res, strict=True):
                a[k] = v
        return out

    def _step(self, r: I, ts: F, x: F, c: SeriesConfig) -> tuple[F, F, F, F, F]:
        dt = ts - self.last_ts[r]
        st = self.step[r]
        moved = dt > 0
        st = np.where(moved, np.where(st == 0, dt, st + 0.05 * (np.minimum(dt, 4 * st) - st)),
                      st)
        self.step[r], self.last_ts[r] = st, np.where(moved, ts, self.last_ts[r])
        step = np.where(st != 0, st, 300.0)
        bd = (ts // 1800).astype(np.int64) % DAY_BUCKETS
        bw = (ts // 3600).astype(np.int64) % WEEK_BUCKETS
        sd = self.day[r, bd].astype(np.float64)
        sw = self.week[r, bw].astype(np.float64)
        n = self.n[r]
        seen = n * step
        od, ow, ed, ew = self.od[r], self.ow[r], self.ed[r], self.ew[r]
        hd, hw = ~np.isnan(sd), ~np.isnan(sw)
        pd = np.where(hd & (seen > 2 * 86400), sd + od, np.nan)
        pw = np.where(hw & (seen > 14 * 86400), sw + ow, np.nan)
        expected, err = self.level[r].copy(), self.e0[r].copy()
        use = ~np.isnan(pd) & (ed < err)
        expected, err = np.where(use, pd, expected), np.where(use, ed, err)
        use = ~np.isnan(pw) & (ew < err)
        expected, err = np.where(use, pw, expected), np.where(use, ew, err)
        scale = err + 1e-3 * self.mag[r] + c.floor + 1e-9
        z = np.abs(x - expected) / scale

        s = np.log1p(z)
        short = self.short[r] + c.short_rate * (s - self.short[r])
        p = np.minimum(self._tail(self.hz_c, self.hz_t, self.hz_w, r, s),
                       self._tail(self.hs_c, self.hs_t, self.hs_w, r, short))
        score = 1.0 - p
        with np.errstate(divide="ignore"):
            q = np.where(p > 0, -np.log(np.where(p > 0, p, 1.0)), 700.0)
        hold, peak = self.hold[r], self.peak[r]
        damp = (q <= peak) | (hold > 0)
        outs = np.where(damp, score * c.suppress, score)
        hold = np.where(~damp & (q > c.hold_q), c.hold_points + 1, hold)
        self.hold[r] = np.maximum(hold - 1, 0)
        self.peak[r] = np.maximum(peak * c.decay, q)
        self.short[r] = short
        keep = np.ones(len(r), bool) if c.learn_alarms else q <= c.hold_q
        self._add(self.hz_c, self.hz_t, self.hz_w, r[keep], s[keep])
        self._add(self.hs_c, self.hs_t, self.hs_w, r[keep], short[keep])
        lim = np.where(n > c.free_points, c.clip * scale, np.inf)
        self._learn(r, x, step, bd, bw, sd, sw, pd, pw, lim, c)
        return outs, expected, expected - c.band * scale, expected + c.band * scale, z

    def tail(self, row: int, z: float) -> float:
        """The calibrated tail probability of a raw statistic ``z`` for one row (its
        histogram of single points, as ``update`` reads it; no short-term mean)."""
        r = np.array([row])
        return float(self._tail(self.hz_c, self.hz_t, self.hz_w, r,
                                np.array([math.log1p(max(z, 0.0))]))[0])

    @staticmethod
    def _tail(counts: F, total: F, weight: F, r: I, s: F) -> F:
        pos = s / BIN_W
        b = pos.astype(np.int64)
        inside = b < BINS
        bi = np.minimum(b, BINS - 1)
        rows = counts[r]
        beyond = np.where(np.arange(BINS) > bi[:, None], rows, 0.0).sum(axis=1)
        mass = np.where(inside, beyond + rows[np.arange(len(r)), bi] * (bi + 1 - pos), 0.0)
        pw = weight[r]
        return (mass + pw * np.exp(-s)) / (total[r] + pw)

    def _add(self, counts: F, total: F, weight: F, r: I, s: F) -> None:
        w = weight[r]
        counts[r, np.minimum((s / BIN_W).astype(np.int64), BINS - 1)] += w
        total[r] += w
        w = w / (1.0 - self.cfg.hist_rate)
        big = w > 1e6
        if big.any():  # rescale so the numbers stay small; tails are unchanged
            rb, wb = r[big], w[big]
            counts[rb] /= wb[:, None]
            total[rb] /= wb
            w[big] = 1.0
        weight[r] = w

    def _learn(self, r: I, x: F, step: F, bd: I, bw: I, sd: F, sw: F, pd: F, pw: F, lim: F,
               c: SeriesConfig) -> None:
        self.mag[r] += 0.01 * (np.abs(x) - self.mag[r])
        res = x - self.level[r]
        e0 = self.e0[r] + c.err_rate * (np.minimum(np.abs(res), lim) - self.e0[r])
        self.e0[r] = e0
        self.level[r] += c.level_rate * np.clip(res, -lim, lim)
        for prof, off, erra, s, p, b, period in (
                (self.day, self.od, self.ed, sd, pd, bd, 1800),
                (self.week, self.ow, self.ew, sw, pw, bw, 3600)):
            has, pred = ~np.isnan(s), ~np.isnan(p)
            e = np.minimum(np.abs(x - p), lim)
            old = erra[r]
            with np.errstate(invalid="ignore"):  # inf - inf where the first error is set
                grown = old + c.err_rate * (e - old)
            erra[r] = np.where(pred, np.where(old == np.inf, 2 * e0, grown), old)
            o = off[r]
            o = np.where(has, o + c.offset_rate * np.clip(x - s - o, -lim, lim), o)
            off[r] = o
            rate = np.minimum(0.5, np.maximum(0.01, step / (period * c.season_cycles)))
            prof[r, b] = np.where(has, s + rate * (x - o - s), x - o).astype(np.float32)
        self.n[r] += 1
