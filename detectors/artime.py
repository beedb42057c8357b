"""ARTime: a series is anomalous when its recent shape resonates with nothing it has learnt.

The method is Mark Hampton's ARTime (2021; github.com/markNZed/ARTimeNAB.jl, in NAB as
``nab/detectors/ARTime``), the best published detector on NAB. Per point:

1. Downsample: every ``step`` points (``step`` ≈ probation / 104) keep one value, the
   block's extreme furthest from a running average (its mean if within 10 % of it).
2. Normalise into [0, 1] and quantise to ``levels`` levels; snap values within ``chomp``
   of the running median to it (noise around the usual level is not a shape).
3. Features of the last ``window`` (8) downsampled values: their Haar wavelet transform,
   min-max scaled (the shape), next to the values themselves (the level).
4. A dual-vigilance fuzzy ART (Brito da Silva et al., 2019) keeps categories: hyperboxes in
   feature space. Matching one above the upper vigilance ``rho_ub`` widens it; above the
   lower ``rho_lb`` adds a category to the same cluster; below both starts a new cluster,
   and that (unless masked right after another) is an anomaly whose score grows with how
   far below the vigilances the best match fell. Both vigilances adapt to the series: the
   upper to the mean match, the lower to the worst recent match and past anomalies.

The probation's values (``probation`` points, 600 by default: two days of 5-minute points)
are learnt in one batch once collected, which also sizes the initial vigilance.

What differs from the published detector, and why (``docs/detection.md`` has the figures):

- No look-ahead. NAB hands its detectors each file's minimum, maximum and length; a live
  series has none of them. The range is the probation's min..max widened by ``margin`` of
  it on each side, values beyond clip to the edge; the probation is a setting (NAB's
  replay passes its own: 15 % of a file, at most 750 rows).
- Bounded memory. ARTime adds categories forever (up to 827 on an 18k-point NAB file).
  Here at ``capacity`` categories the two whose union box is tightest merge (fuzzy-ART
  learning of one into the other), which frees a slot: state stays under 2 KB.
- Integer features. Features sit on a 1/240 grid, so categories are exact bytes: the state
  round-trips through ``to_bytes`` and a restored detector continues identically.

No randomness anywhere: the same points give the same scores. Timestamps are not used; a
missing (NaN) value is skipped.

>>> import math
>>> det = ARTimeDetector(ARTimeConfig(probation=600))
>>> wave = [10 + 5 * math.sin(2 * math.pi * i / 288) for i in range(3000)]
>>> quiet = [det.update(300.0 * i, v) for i, v in enumerate(wave)]
>>> max(quiet[1200:])
0.0
>>> burst = [det.update(300.0 * (3000 + i), 25.0) for i in range(40)]
>>> max(burst) > 0.5
True
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

GRID = 240  # feature units: 1/240, a multiple of the 80 levels (levels must divide it)
RING_Q = 250.0  # match similarities are kept in 1/250 steps (one byte each)
SPIKE_SHARE = 0.1  # a block's extreme must differ from its mean by 10 % to be kept
MASK_FACTOR = 1.5  # points (in windows) masked after an anomaly: 1.5 windows
LB_GAIN = 0.19  # how fast the lower vigilance rises toward the worst recent match
DIFF_MIN, DIFF_MAX = 0.05, 0.37  # shortfalls below the upper vigilance that lower it
UB_CAP = 0.97  # the upper vigilance never exceeds this
_SQRT2 = math.sqrt(2)
_U16_MAX = 65535
_VERSION = 1
_HEAD = struct.Struct("<BBHHHQQQqqQIIIIQdddddddddd")

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ARTimeConfig:
    """Knobs of ``ARTimeDetector``; defaults as evaluated on NAB (``docs/detection.md``)."""

    probation: int = 600  # points learnt before any alarm (NAB replay: 15 % of a file, ≤ 750)
    window: int = 8  # downsampled values per shape (a power of two: Haar transform)
    windows_per_probation: int = 13  # sets the downsampling step: probation / (window * 13)
    chomp: float = 0.075  # values this close to the running median snap to it
    levels: int = 80  # quantisation levels of the normalised value (must divide GRID)
    initial_rho: float = 0.80  # vigilance of the probe that sizes the first vigilances
    margin: float = 0.5  # the range is the probation's min..max widened by this share per side
    capacity: int = 40  # categories kept; at capacity the two tightest together merge

    @property
    def pairs(self) -> int:
        """Downsampled values in the probation (an even count of points, as ARTime)."""
        return (self.probation - self.probation % 2) // self.step

    @property
    def step(self) -> int:
        """Points per downsampled value."""
        even = self.probation - self.probation % 2
        return max(1, even // (self.window * self.windows_per_probation))


DEFAULT = ARTimeConfig()


class ARTimeDetector:
    """Streaming ARTime for one series; ``update(ts, value)`` scores then learns."""

    def __init__(self, cfg: ARTimeConfig = DEFAULT) -> None:
        if GRID % cfg.levels or cfg.window & (cfg.window - 1) or cfg.probation < 4 * cfg.window:
            raise ValueError("levels must divide 240, window be a power of two, "
                             "probation hold four windows")
        self.cfg = cfg
        self._trend = cfg.pairs
        self._step = cfg.step
        self._mask = int(cfg.window * MASK_FACTOR)
        self.i = 1  # 1-based index of the next point (as ARTime)
        self.dsi = 1  # 1-based index of the next downsampled value
        self.ready = False  # the probation is over: range set, categories learnt
        self.dma = self.dmin = self.dmax = 0.0  # running average; the range
        self.medlevel = self.below = self.above = self.medn = 0
        self.last_an_i = self.last_rho_i = 0
        self.last_an_sim = 0.0
        self.mask_after_cat = False
        self.no_new = 0
        self.ub_sum, self.ub_n = 0.0, 0  # running mean of the matches: the upper vigilance
        self.an_sum, self.an_n, self.an_last = 0.0, 0, 0.0  # matches of past anomalies
        self.lb = self.ub = 0.0  # the vigilances
        self.block = [0.0] * cfg.step  # the points of the current downsampling block
        self.levels = bytearray(cfg.window)  # the last downsampled values, as levels
        self.medbin = np.zeros(cfg.levels + 1, np.uint16)  # counts per level (running median)
        self.sims = bytearray([int(RING_Q)]) * (self._trend + 1)  # last matches, 1/250
        self.diffs = bytearray(self._trend + 1)  # last shortfalls below rho_ub, 1/250
        self.cats = np.zeros((0, 4 * cfg.window), np.int64)  # complement-coded boxes, 1/240
        self.buf: list[float] = []  # downsampled raw values of the probation

    # -- scoring --------------------------------------------------------------------------

    def update(self, ts: float, value: float) -> float:
        """Anomaly score in [0, 1] of ``value`` (0 between downsampled points), then learn it.

        ``ts`` is accepted for the per-series model protocol and not used."""
        x = float(value)
        if not math.isfinite(x):
            return 0.0
        step = self._step
        at = (self.i - 1) % step
        self.block[at] = x
        out = 0.0
        if at == step - 1:
            out = self._downsampled(self._pick(self.block))
        self.i += 1
        return out

    def _pick(self, w: list[float]) -> float:
        """The block's value: its extreme furthest from the running average, or its mean."""
        mean, hi, lo = sum(w) / len(w), max(w), min(w)
        if self.dsi == 1:
            self.dma = mean
        self.dma = (self.dma + mean) / 2
        ds = lo if abs(hi - self.dma) < abs(lo - self.dma) else hi
        return mean if abs(ds - mean) < SPIKE_SHARE * mean else ds

    def _downsampled(self, ds: float) -> float:
        if self.ready:
            out = self._detect(self._features(ds), self.dsi)
            self.dsi += 1
            return out
        self.buf.append(ds)
        if len(self.buf) < self._trend:
            self.dsi += 1
            return 0.0
        self._end_probation()
        return 0.0

    def _end_probation(self) -> None:
        """Set the range from the probation, then learn its values in one batch (as ARTime)."""
        lo, hi = min(self.buf), max(self.buf)
        widen = self.cfg.margin * (hi - lo)
        self.dmin, self.dmax = lo - widen, hi + widen
        self.ready, self.dsi = True, 1
        feats = []
        for v in self.buf:
            feats.append(self._features(v))
            self.dsi += 1
        self.buf = []
        x = np.array(feats[self.cfg.window - 1:], np.int64)
        self.lb = self.ub = self._initial_rho(x)
        for fi, f in enumerate(feats, 1):
            self._detect(f, fi)

    def _features(self, ds: float) -> I64:
        """Level, running median, and the shape features of the last window, in 1/240."""
        c = self.cfg
        span = self.dmax - self.dmin
        v = (ds - self.dmin) / span if span else ds - self.dmin
        level = min(max(round(v * c.levels), 0), c.levels)
        self._median(level)
        if abs(level / c.levels - self.medlevel / c.levels) < c.chomp:  # as ARTime
            level = self.medlevel
        self.levels = self.levels[1:] + bytes([level])
        if self.dsi < c.window:
            return np.zeros(2 * c.window, np.int64)
        # small vectors: plain floats beat numpy here (same IEEE operations, same results)
        low = min(self.levels)
        dw = [float(v - low) for v in self.levels]
        top = max(dw)
        if top:
            dw = [v / top for v in dw]
        fw = _haar(dw)
        low_f = min(fw)
        fw = [v - low_f for v in fw]
        top = max(fw)
        if top:
            fw = [v / top for v in fw]
        unit = GRID // c.levels
        return np.array([round(v * GRID) for v in fw] + [v * unit for v in self.levels],
                        np.int64)

    def _median(self, level: int) -> None:
        """ARTime's running median over all levels seen (one level per step)."""
        if self.medbin[level] == _U16_MAX:  # halve the counts, keep the order
            self.medbin //= 2
            self.below = int(self.medbin[:self.medlevel].sum())
            self.above = int(self.medbin[self.medlevel + 1:].sum())
            self.medn = int(self.medbin.sum())
        self.medbin[level] += 1
        self.medn += 1
        medpos = self.medn // 2
        if self.medn == 1:
            self.medlevel = level
        if self.medlevel > level:
            self.below += 1
        elif self.medlevel < level:
            self.above += 1
        b = self.medbin
        if medpos < self.above:
            self.below += int(b[self.medlevel])
            self.medlevel += 1
            while b[self.medlevel] == 0:
                self.medlevel += 1
            self.above -= int(b[self.medlevel])
        elif medpos < self.below:
            self.above += int(b[self.medlevel])
            self.medlevel -= 1
            while b[self.medlevel] == 0:
                self.medlevel -= 1
            self.below -= int(b[self.medlevel])

    def _initial_rho(self, x: I64) -> float:
        """ARTime's first vigilance: the mean match of a probe ART (rho 0.8) trained on the
        probation's shapes from the least to the most typical (by cosine similarity)."""
        xf = x.astype(np.float64)
        norms = np.linalg.norm(xf, axis=1)
        sim = (xf @ xf.T) / np.where(norms[:, None] * norms[None, :] > 0,
                                     norms[:, None] * norms[None, :], 1.0)
        z = norms == 0  # ARTime: 1 - |other| when one side is all zeros (unit features)
        sim = np.where(z[:, None], 1 - norms[None, :] / GRID, sim)
        sim = np.where(z[None, :], 1 - norms[:, None] / GRID, sim)
        np.fill_diagonal(sim, 1.0)
        probe = _Categories(len(x) + 1)
        r = self.cfg.initial_rho
        matches = [probe.train(x[j], r, r, learn=True)[1]
                   for j in np.argsort(sim.sum(axis=0), kind="stable")]
        return float(np.mean(matches[self._trend // 2 - 1:]))

    def _detect(self, f: I64, i: int) -> float:
        c = self.cfg
        upd_after = i - self.last_an_i == self._mask
        upd_trend = i - self.last_rho_i >= self._trend // 2
        mask_after = i - self.last_an_i <= self._mask
        if (i > self._trend + self._mask and self.mask_after_cat
                and self.no_new >= self._mask):
            self.mask_after_cat = False
        cats = _Categories(c.capacity, self.cats)
        learn = i >= c.window
        new_cluster, sim, energy = cats.train(f, self.lb, self.ub, learn)
        self.cats = cats.w
        if not learn:
            new_cluster = True
        self.no_new = 0 if new_cluster else self.no_new + 1
        self.ub_sum += sim
        self.ub_n += 1
        # the rings keep 1/250 steps (a byte each), so a restored detector repeats exactly
        self.sims = self.sims[1:] + bytes([round(sim * RING_Q)])
        short = min(DIFF_MAX, max(0.0, self.ub - sim))
        self.diffs = self.diffs[1:] + bytes([round(short * RING_Q) if short > DIFF_MIN else 0])
        if i - self.last_an_i < self._mask and self.an_n and sim < self.an_last:
            self.an_sum += sim - self.an_last
            self.an_last = sim
        masking = self.mask_after_cat or mask_after
        below_last = sim < self.last_an_sim * (0.90 if mask_after else 0.70)
        out = 0.0
        if i > self._trend and new_cluster and (not masking or below_last):
            out = self._confidence(sim, energy)
            self.an_sum, self.an_n, self.an_last = self.an_sum + sim, self.an_n + 1, sim
            self.last_an_sim, self.last_an_i = sim, i
        self.mask_after_cat = new_cluster or self.mask_after_cat
        if i > self._trend and (upd_after or upd_trend):
            self._adapt(i)
        return out

    def _adapt(self, i: int) -> None:
        """ARTime's vigilance update: upper = mean match; lower rises toward the worst
        recent match, or falls by the recent shortfalls, never below past anomalies."""
        recent = min(self.sims[-(self._trend // 2 + 1):]) / RING_Q
        ub = min(UB_CAP, self.ub_sum / self.ub_n)
        lb = self.lb
        if lb <= recent:
            lb += (recent - lb) * LB_GAIN
        else:
            decr = 0.0
            if i > self._trend * 2:
                short = [d / RING_Q for d in self.diffs if d]
                decr = sum(short) / len(short) if short else 0.0
            lb -= max(0.01, decr) / 2
            if self.an_n:
                lb = max(self.an_sum / self.an_n, lb)
        self.lb, self.ub = min(ub, lb), ub
        self.last_rho_i = i
        self.mask_after_cat = True

    def _confidence(self, sim: float, energy: float) -> float:
        s = min(0.999, sim)
        above_ub = ((1 - s) - (1 - self.ub)) / (1 - s)
        above_lb = ((1 - s) - (1 - self.lb)) / (1 - s)
        return round(min(1.0, above_ub * 0.35 + above_lb * 0.65 + (1.0 - energy) * 1.5), 6)

    # -- snapshots ------------------------------------------------------------------------

    def _layout(self) -> int:
        """The settings that shape the bytes, packed into one number to check on load."""
        c = self.cfg
        return (self._step | self._trend << 16 | c.window << 32 | c.levels << 40
                | c.capacity << 48)

    def to_bytes(self) -> bytes:
        """The learnt state as compact bytes (settings not included), under 2 KB."""
        head = _HEAD.pack(
            _VERSION, self.ready | (self.mask_after_cat << 1), len(self.cats), len(self.buf),
            self.medlevel, self.i, self.dsi, self.medn, self.last_an_i, self.last_rho_i,
            self.ub_n, self.below, self.above, self.no_new, self.an_n, self._layout(), self.dma,
            self.dmin, self.dmax, self.last_an_sim, self.ub_sum, self.an_sum, self.an_last,
            self.lb, self.ub, 0.0)
        return b"".join((
            head, struct.pack(f"<{len(self.block)}d", *self.block), bytes(self.levels),
            self.medbin.tobytes(), bytes(self.sims), bytes(self.diffs),
            self.cats.astype(np.uint8).tobytes(), np.array(self.buf, np.float64).tobytes()))

    @classmethod
    def from_bytes(cls, raw: bytes, cfg: ARTimeConfig = DEFAULT) -> ARTimeDetector:
        """Rebuild a detector from ``to_bytes`` output (made with the same settings)."""
        d = cls(cfg)
        (version, flags, ncat, nbuf, d.medlevel, d.i, d.dsi, d.medn, d.last_an_i,
         d.last_rho_i, d.ub_n, d.below, d.above, d.no_new, d.an_n, layout, d.dma, d.dmin,
         d.dmax, d.last_an_sim, d.ub_sum, d.an_sum, d.an_last, d.lb, d.ub,
         _) = _HEAD.unpack_from(raw)
        if version != _VERSION:
            raise ValueError(f"unknown ARTime state version {version}")
        if layout != d._layout():
            raise ValueError("ARTime state written with other settings (step, probation, "
                             "window, levels or capacity)")
        d.ready, d.mask_after_cat = bool(flags & 1), bool(flags & 2)
        at = _HEAD.size
        sizes = (8 * cfg.step, cfg.window, 2 * (cfg.levels + 1), d._trend + 1, d._trend + 1,
                 ncat * 4 * cfg.window, 8 * nbuf)
        parts = []
        for n in sizes:
            parts.append(raw[at:at + n])
            at += n
        if at != len(raw) or ncat > cfg.capacity:
            raise ValueError(f"ARTime state of {len(raw)} bytes, {at} expected")
        d.block = list(struct.unpack(f"<{cfg.step}d", parts[0]))
        d.levels = bytearray(parts[1])
        d.medbin = np.frombuffer(parts[2], np.uint16).copy()
        d.sims, d.diffs = bytearray(parts[3]), bytearray(parts[4])
        d.cats = np.frombuffer(parts[5], np.uint8).astype(np.int64).reshape(
            ncat, 4 * cfg.window)
        d.buf = np.frombuffer(parts[6], np.float64).tolist()
        return d


class _Categories:
    """Dual-vigilance fuzzy ART over complement-coded integer features (ARTime's DVFA)."""

    def __init__(self, capacity: int, w: I64 | None = None) -> None:
        self.capacity = capacity
        self.w: I64 = np.zeros((0, 0), np.int64) if w is None else w

    def train(self, f: I64, lb: float, ub: float, learn: bool) -> tuple[bool, float, float]:
        """Match ``f``; learn it if ``learn``. Returns (new cluster?, best match, its energy
        match): a new cluster is a mismatch with every category, ARTime's anomaly."""
        x = np.concatenate([f, GRID - f])
        if not len(self.w):  # ARTime starts from one all-ones category
            self.w = np.full((1, len(x)), GRID, np.int64)
            return False, 0.0, 0.0
        w = self.w
        em = np.minimum(x, w)
        size = w.sum(axis=1)
        fs = em.sum(axis=1) / np.where(size > 0, size, 1)
        e = len(f) - 1  # the energy: the newest level (and its complement)
        es = (em[:, e] + em[:, -1]) / np.maximum(w[:, e] + w[:, -1], 1)
        m = fs ** 3 * es ** 2
        best = int(np.argmax(m))
        sim, energy = float(m[best]), float(es[best])
        if not learn:
            return True, sim, energy
        above = m >= ub
        if above.any():  # resonance: every category above rho_ub widens to include x
            w[above] = em[above]
            return False, sim, energy
        self._add(x)
        return sim < lb, sim, energy

    def _add(self, x: I64) -> None:
        if len(self.w) < self.capacity:
            self.w = np.vstack([self.w, x])
            return
        w = self.w  # full: merge the pair whose union box loses least, reuse a slot
        union = np.minimum(w[:, None, :], w[None, :, :])
        size = w.sum(axis=1)
        loss = np.maximum(size[:, None], size[None, :]) - union.sum(axis=2)
        np.fill_diagonal(loss, np.iinfo(np.int64).max)
        a, b = np.unravel_index(int(np.argmin(loss)), loss.shape)
        w[a] = union[a, b]
        w[b] = x


def _haar(v: list[float]) -> list[float]:
    """Full orthonormal Haar transform, coarsest first (as Julia's Wavelets.jl dwt)."""
    a = v
    out: list[float] = []
    while len(a) > 1:
        ev, od = a[0::2], a[1::2]
        out = [(o - e) / _SQRT2 for e, o in zip(ev, od, strict=True)] + out
        a = [(e + o) / _SQRT2 for e, o in zip(ev, od, strict=True)]
    return a + out
