"""``ARTimeBank``: many ``ARTimeDetector``s as numpy columns, updated in one vectorised call.

Row ``i`` holds exactly the state of one scalar ``ARTimeDetector`` and ``update(rows, x)``
runs the scalar ``update`` for every row at once, with the same scores bit for bit. Only
the rows at a downsampling boundary do work, vectorised: the block's value, the level and
running median, the shape features, the match against the row's categories and the
bookkeeping after it. The rare steps run per row with the scalar code's arithmetic: the end
of a probation (through a scalar detector), a merge at capacity, an anomaly's score, a
vigilance update. Categories are kept as bytes (1.3 KB a row at capacity 40, ~1.9 KB in all);
``detector(i)``
and ``set(i, det)`` convert a row, so snapshots keep the scalar ``to_bytes`` format.

>>> import numpy as np
>>> bank = ARTimeBank(ARTimeConfig(probation=600), capacity=2)
>>> rows = np.array([bank.add(), bank.add()])
>>> t = np.arange(3000)
>>> for k in t:
...     out = bank.update(rows, np.array([10 + np.sin(k / 46), 10 + np.sin(k / 46)]))
>>> burst = [bank.update(rows, np.array([10 + np.sin(k / 46), 30.0])) for k in range(40)]
>>> bool(max(b[0] for b in burst) == 0.0), bool(max(b[1] for b in burst) > 0.5)
(True, True)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.artime import (
    DEFAULT,
    DIFF_MAX,
    DIFF_MIN,
    GRID,
    RING_Q,
    SPIKE_SHARE,
    ARTimeConfig,
    ARTimeDetector,
    _Categories,
)

F = npt.NDArray[np.float64]
I = npt.NDArray[np.int64]  # noqa: E741
B = npt.NDArray[np.bool_]
_U16_MAX = 65535
_INTS = ("i", "dsi", "medlevel", "below", "above", "medn", "last_an_i", "last_rho_i",
         "no_new", "ub_n", "an_n")
_FLOATS = ("dma", "dmin", "dmax", "last_an_sim", "ub_sum", "an_sum", "an_last", "lb", "ub")
_FLAGS = ("ready", "mask_after_cat")


class ARTimeBank:
    """Columnar states of ARTime detectors sharing one ``ARTimeConfig``."""

    def __init__(self, cfg: ARTimeConfig = DEFAULT, capacity: int = 1024,
                 max_ends: int | None = None) -> None:
        self.cfg = cfg
        # probations ended per ``update`` at most (None: all). Ending one learns its values
        # through the scalar code, tens of milliseconds; series that started together would
        # all end in one batch. A row over the budget waits, its probation sliding over its
        # latest values, and ends in a later call.
        self.max_ends = max_ends
        self.ends = 0  # probations ended in the current ``update``
        self._proto = ARTimeDetector(cfg)  # a fresh detector: the state of an unused row
        self._trend, self._step = cfg.pairs, cfg.step
        self._mask = self._proto._mask
        self.size = 0
        self._free: list[int] = []
        self.buf: dict[int, list[float]] = {}  # rows in probation: their buffered values
        self._alloc(max(1, capacity))

    # -- rows -----------------------------------------------------------------------------

    def _alloc(self, cap: int) -> None:
        c = self.cfg
        old = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        # the scalar detector's fields, one column each (names as in ARTimeDetector)
        (self.i, self.dsi, self.medlevel, self.below, self.above, self.medn, self.last_an_i,
         self.last_rho_i, self.no_new, self.ub_n, self.an_n) = (
            np.zeros(cap, np.int64) for _ in _INTS)
        (self.dma, self.dmin, self.dmax, self.last_an_sim, self.ub_sum, self.an_sum,
         self.an_last, self.lb, self.ub) = (np.zeros(cap) for _ in _FLOATS)
        self.ready, self.mask_after_cat = (np.zeros(cap, bool) for _ in _FLAGS)
        self.ncat = np.zeros(cap, np.int64)
        self.block = np.zeros((cap, self._step))
        self.levels = np.zeros((cap, c.window), np.uint8)
        self.medbin = np.zeros((cap, c.levels + 1), np.uint16)
        self.sims = np.zeros((cap, self._trend + 1), np.uint8)
        self.diffs = np.zeros((cap, self._trend + 1), np.uint8)
        self.cats = np.zeros((cap, c.capacity, 4 * c.window), np.uint8)
        for k, v in old.items():
            getattr(self, k)[:len(v)] = v
        new = slice(len(old.get("i", ())), cap)  # a fresh detector's state (zeros elsewhere)
        self.i[new] = self.dsi[new] = 1
        self.sims[new] = int(RING_Q)

    def add(self, det: ARTimeDetector | None = None) -> int:
        """A new row (a fresh detector, or a copy of ``det``'s state); its index."""
        if self._free:
            i = self._free.pop()
        else:
            if self.size == len(self.i):
                self._alloc(max(64, len(self.i) * 9 // 8))
            i, self.size = self.size, self.size + 1
        if det is not None:
            self.set(i, det)
        return i

    def free(self, i: int) -> None:
        """Give row ``i`` back (reset, then reused by the next ``add``)."""
        self.set(i, self._proto)
        self.buf.pop(i, None)
        self._free.append(i)

    def set(self, i: int, d: ARTimeDetector) -> None:
        """Row ``i`` takes ``d``'s state."""
        for k in (*_INTS, *_FLOATS, *_FLAGS):
            getattr(self, k)[i] = getattr(d, k)
        self.ncat[i] = len(d.cats)
        self.block[i] = d.block
        self.levels[i] = list(d.levels)
        self.medbin[i] = d.medbin
        self.sims[i], self.diffs[i] = list(d.sims), list(d.diffs)
        self.cats[i] = 0
        self.cats[i, :len(d.cats)] = d.cats
        if d.buf:
            self.buf[i] = list(d.buf)
        else:
            self.buf.pop(i, None)

    def detector(self, i: int) -> ARTimeDetector:
        """Row ``i`` as a scalar detector (for snapshots: ``detector(i).to_bytes()``)."""
        d = ARTimeDetector(self.cfg)
        for k in _INTS:
            setattr(d, k, int(getattr(self, k)[i]))
        for k in _FLOATS:
            setattr(d, k, float(getattr(self, k)[i]))
        for k in _FLAGS:
            setattr(d, k, bool(getattr(self, k)[i]))
        d.block = self.block[i].tolist()
        d.levels = bytearray(self.levels[i].tobytes())
        d.medbin = self.medbin[i].copy()
        d.sims = bytearray(self.sims[i].tobytes())
        d.diffs = bytearray(self.diffs[i].tobytes())
        d.cats = self.cats[i, :self.ncat[i]].astype(np.int64)
        d.buf = list(self.buf.get(i, ()))
        return d

    # -- scoring --------------------------------------------------------------------------

    def update(self, rows: I, x: F) -> F:
        """``ARTimeDetector.update(_, x[k])`` for each (distinct) row ``rows[k]``."""
        rows, x = np.asarray(rows, np.int64), np.asarray(x, np.float64)
        out = np.zeros(len(rows))
        ok = np.isfinite(x)
        r, xv, k = rows[ok], x[ok], np.flatnonzero(ok)
        at = (self.i[r] - 1) % self._step
        self.block[r, at] = xv
        edge = at == self._step - 1
        self.i[r] += 1
        if not edge.any():
            return out
        r, k = r[edge], k[edge]
        ds = self._pick(r)
        self.ends = 0
        ready = self.ready[r]
        if (~ready).any():
            self._buffer(r[~ready], ds[~ready])
        if ready.any():
            out[k[ready]] = self._ready(r[ready], ds[ready])
        return out

    def _pick(self, r: I) -> F:
        w = self.block[r]
        total = w[:, 0].copy()
        for j in range(1, w.shape[1]):  # in order, as Python's sum()
            total += w[:, j]
        mean = total / w.shape[1]
        hi, lo = w.max(axis=1), w.min(axis=1)
        dma = np.where(self.dsi[r] == 1, mean, self.dma[r])
        dma = (dma + mean) / 2
        self.dma[r] = dma
        ds = np.where(np.abs(hi - dma) < np.abs(lo - dma), lo, hi)
        picked: F = np.where(np.abs(ds - mean) < SPIKE_SHARE * mean, mean, ds)
        return picked

    def _buffer(self, r: I, ds: F) -> None:
        """Probation: keep the value; a probation that fills up ends through the scalar code."""
        for row, v in zip(r.tolist(), ds.tolist(), strict=True):
            kept = self.buf.setdefault(row, [])
            kept.append(v)
            if len(kept) < self._trend:
                self.dsi[row] += 1
            elif self.max_ends is not None and self.ends >= self.max_ends:
                del kept[0]  # over the budget: wait, over the latest values
            else:
                self.ends += 1
                d = self.detector(row)
                d._end_probation()
                self.set(row, d)

    def _ready(self, r: I, ds: F) -> F:
        c = self.cfg
        span = self.dmax[r] - self.dmin[r]
        v = np.where(span != 0, (ds - self.dmin[r]) / np.where(span != 0, span, 1.0),
                     ds - self.dmin[r])
        level = np.clip(np.rint(v * c.levels), 0, c.levels).astype(np.int64)
        self._median(r, level)
        med = self.medlevel[r]
        level = np.where(np.abs(level / c.levels - med / c.levels) < c.chomp, med, level)
        lv = np.concatenate([self.levels[r, 1:].astype(np.int64), level[:, None]], axis=1)
        self.levels[r] = lv
        f = np.concatenate([_shape(lv), lv * (GRID // c.levels)], axis=1)
        return self._detect(r, f)

    def _median(self, r: I, level: I) -> None:
        b = self.medbin
        full = b[r, level] == _U16_MAX
        for row, lev in zip(r[full].tolist(), level[full].tolist(), strict=True):
            d = self.detector(row)  # rare: halve the counts as the scalar code does
            d.medbin[lev] = _U16_MAX
            d.medbin //= 2
            d.below = int(d.medbin[:d.medlevel].sum())
            d.above = int(d.medbin[d.medlevel + 1:].sum())
            d.medn = int(d.medbin.sum())
            b[row] = d.medbin
            self.below[row], self.above[row], self.medn[row] = d.below, d.above, d.medn
        b[r, level] += np.uint16(1)
        self.medn[r] += 1
        medpos = self.medn[r] // 2
        ml = np.where(self.medn[r] == 1, level, self.medlevel[r])
        below = self.below[r] + (ml > level)
        above = self.above[r] + (ml < level)
        idx = np.arange(b.shape[1])
        up = medpos < above
        down = ~up & (medpos < below)
        if up.any():
            ru, m = r[up], ml[up]
            below[up] += b[ru, m].astype(np.int64)
            nxt = np.argmax((idx > m[:, None]) & (b[ru] > 0), axis=1)
            above[up] -= b[ru, nxt].astype(np.int64)
            ml[up] = nxt
        if down.any():
            rd, m = r[down], ml[down]
            above[down] += b[rd, m].astype(np.int64)
            mask = (idx < m[:, None]) & (b[rd] > 0)
            prv = b.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
            below[down] -= b[rd, prv].astype(np.int64)
            ml[down] = prv
        self.medlevel[r], self.below[r], self.above[r] = ml, below, above

    def _detect(self, r: I, f: I) -> F:
        i = self.dsi[r]
        since = i - self.last_an_i[r]
        upd_after = since == self._mask
        upd_trend = i - self.last_rho_i[r] >= self._trend // 2
        mask_after = since <= self._mask
        mac = self.mask_after_cat[r]
        mac &= ~((i > self._trend + self._mask) & (self.no_new[r] >= self._mask))
        new_cluster, sim, energy = self._train(r, f)
        self.no_new[r] = np.where(new_cluster, 0, self.no_new[r] + 1)
        self.ub_sum[r] += sim
        self.ub_n[r] += 1
        ub, lb = self.ub[r], self.lb[r]
        self.sims[r] = np.concatenate(
            [self.sims[r, 1:], np.rint(sim * RING_Q).astype(np.uint8)[:, None]], axis=1)
        short = np.minimum(DIFF_MAX, np.maximum(0.0, ub - sim))
        d = np.where(short > DIFF_MIN, np.rint(short * RING_Q), 0).astype(np.uint8)
        self.diffs[r] = np.concatenate([self.diffs[r, 1:], d[:, None]], axis=1)
        an_n, an_last = self.an_n[r], self.an_last[r]
        lower = (since < self._mask) & (an_n > 0) & (sim < an_last)
        self.an_sum[r] = np.where(lower, self.an_sum[r] + (sim - an_last), self.an_sum[r])
        self.an_last[r] = np.where(lower, sim, an_last)
        masking = mac | mask_after
        below_last = sim < self.last_an_sim[r] * np.where(mask_after, 0.90, 0.70)
        alarm = (i > self._trend) & new_cluster & (~masking | below_last)
        out = np.zeros(len(r))
        for k in np.flatnonzero(alarm).tolist():  # rare: the scalar code's arithmetic
            row, s = int(r[k]), float(sim[k])
            det = ARTimeDetector.__new__(ARTimeDetector)
            det.ub, det.lb = float(ub[k]), float(lb[k])
            out[k] = det._confidence(s, float(energy[k]))
            self.an_sum[row] += s
            self.an_n[row] += 1
            self.an_last[row] = self.last_an_sim[row] = s
            self.last_an_i[row] = int(i[k])
        self.mask_after_cat[r] = new_cluster | mac
        adapt = (i > self._trend) & (upd_after | upd_trend)
        for row, at in zip(r[adapt].tolist(), i[adapt].tolist(), strict=True):
            self._adapt(row, at)
        self.dsi[r] += 1
        return out

    def _train(self, r: I, f: I) -> tuple[B, F, F]:
        """``_Categories.train`` for every row at once (rows always hold a category here)."""
        x = np.concatenate([f, GRID - f], axis=1)
        w = self.cats[r]  # bytes all the way: the sums are exact integers as in the scalar
        valid = np.arange(w.shape[1]) < self.ncat[r][:, None]
        em = np.minimum(x.astype(np.uint8)[:, None, :], w)
        size = w.sum(axis=2, dtype=np.int32)
        fs = em.sum(axis=2, dtype=np.int32) / np.where(size > 0, size, 1)
        e = f.shape[1] - 1
        es = ((em[:, :, e].astype(np.int32) + em[:, :, -1])
              / np.maximum(w[:, :, e].astype(np.int32) + w[:, :, -1], 1))
        m = np.where(valid, fs ** 3 * es ** 2, -np.inf)
        best = np.argmax(m, axis=1)
        at = np.arange(len(r))
        sim, energy = m[at, best], es[at, best]
        above = m >= self.ub[r][:, None]
        resonant = above.any(axis=1)
        if resonant.any():
            kk, jj = np.nonzero(above)
            self.cats[r[kk], jj] = em[kk, jj]
        grow = ~resonant
        n = self.ncat[r]
        room = grow & (n < self.cfg.capacity)
        if room.any():
            self.cats[r[room], n[room]] = x[room]
            self.ncat[r[room]] += 1
        for k in np.flatnonzero(grow & ~room).tolist():  # at capacity: merge (scalar)
            cats = _Categories(self.cfg.capacity, self.cats[r[k]].astype(np.int64))
            cats._add(x[k])
            self.cats[r[k]] = cats.w
        return grow & (sim < self.lb[r]), sim, energy

    def _adapt(self, row: int, i: int) -> None:
        d = ARTimeDetector.__new__(ARTimeDetector)
        d._trend = self._trend
        d.sims = bytearray(self.sims[row].tobytes())
        d.diffs = bytearray(self.diffs[row].tobytes())
        for k in ("ub_sum", "an_sum", "lb"):
            setattr(d, k, float(getattr(self, k)[row]))
        d.ub_n, d.an_n = int(self.ub_n[row]), int(self.an_n[row])
        d._adapt(i)
        self.lb[row], self.ub[row] = d.lb, d.ub
        self.last_rho_i[row] = d.last_rho_i
        self.mask_after_cat[row] = d.mask_after_cat


def _shape(lv: I) -> I:
    """The scalar ``_features`` shape part for many rows: scaled Haar, 1/240 units."""
    dw = (lv - lv.min(axis=1, keepdims=True)).astype(np.float64)
    top = dw.max(axis=1, keepdims=True)
    dw = np.where(top > 0, dw / np.where(top > 0, top, 1.0), dw)
    a = dw
    out: list[F] = []
    sq = np.sqrt(2.0)
    while a.shape[1] > 1:
        ev, od = a[:, 0::2], a[:, 1::2]
        out.insert(0, (od - ev) / sq)
        a = (ev + od) / sq
    fw = np.concatenate([a, *out], axis=1)
    fw = fw - fw.min(axis=1, keepdims=True)
    top = fw.max(axis=1, keepdims=True)
    fw = np.where(top > 0, fw / np.where(top > 0, top, 1.0), fw)
    shape: I = np.rint(fw * GRID).astype(np.int64)
    return shape
