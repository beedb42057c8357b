"""Levels a gauge has been at: a move back to one of them is not news.

Many gauges switch between a few regimes. A latency percentile read from a histogram jumps
between bucket bounds (5 ms, 49 ms, 28.8 s) as a minute has one slow request or none; a
batch job's CPU or syscalls go from 60 to 330 and back every few minutes. The series
detector scores each point against the recent level, so every switch looks like a break,
however often the series has made it before.

``Levels`` is a forgetting histogram of the readings themselves (a histogram-based
outlier score, as in HBOS: Goldstein and Dengel, 2012). A gauge's anomaly stands only if
its reading is rare as a level: ``seen(x, "up")`` is the share of the recent readings at or
above x (its bin included), and an alarm whose share is at least ``SEEN_P`` = 1 %, from
at least 3 readings (``SEEN_MIN``), is the series going where it often goes. A CPU stuck
at 80 % that never went above 10 %, or a disk filling past every level it had, stays an
anomaly.

Bins are relative (``BINS_PER_OCTAVE`` = 4 a doubling, about 19 % wide, with the sign), so
the test does not depend on the unit. The last ``LAG`` = 2 readings wait before they are
counted: the run of points that makes an alarm (``metric_run``) is not its own history.
Memory: the readings fade by ``1 - RATE`` each (about 500 readings, as the detector's
calibration); at most ``MAX_BINS`` bins (a JSON state of ~0.3 KB on the Nezha gauges, at
most 1.1 KB). Assumption: the series' recent past is mostly normal; a fault that held a
level for more than ~1 % of the memory makes that level normal until it fades.

>>> lv = Levels()
>>> for i in range(300):
...     lv.add(28.8 if i % 20 < 3 else 0.005)  # at 28.8 s for 3 minutes in every 20
>>> round(lv.seen(28.8, "up"), 2), lv.seen(60.0, "up"), round(lv.seen(0.005, "down"), 2)
(0.15, 0.0, 0.85)
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

RATE = 0.002  # each reading fades by 1 - RATE per later reading (~500 readings' memory)
BINS_PER_OCTAVE = 4  # bins per doubling of |x|: ~19 % wide
SEEN_P = 0.01  # a level with at least this share of the recent readings is within range
SEEN_MIN = 2.5  # ... and at least this many readings' weight (3 readings, faded a little)
LAG = 2  # the newest readings, not counted yet
MAX_BINS = 64  # past it the lightest bin goes (a rare level forgotten: news again)
_RESCALE = 1e6


def level_bin(x: float) -> int:
    """A bin of ``x``, ordered as x: relative width, the sign kept, 0 in its own bin.

    >>> [level_bin(v) for v in (-2.0, 0.0, 1e-12, 1.0, 1.18, 1.2, 2.0)]
    [-204, 0, 40, 200, 200, 201, 204]
    """
    return level_bins(np.array([x]))[0] if math.isfinite(x) else 0


def level_bins(xs: npt.NDArray[np.float64]) -> list[int]:
    """``level_bin`` of many readings at once (NaN and infinities: -1, skipped by ``add_bin``).

    >>> level_bins(np.array([-2.0, 0.0, 1e-12, 1.0, 1.18, 1.2, 2.0, np.nan]))
    [-204, 0, 40, 200, 200, 201, 204, -1]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.clip(np.floor(np.log2(np.abs(xs)) * BINS_PER_OCTAVE), -199, 4000) + 200
    out = np.where(xs == 0, 0, np.copysign(o, xs))
    return np.where(np.isfinite(xs), out, -1).astype(np.int64).tolist()  # type: ignore[no-any-return]


class Levels:
    """Forgetting histogram of a gauge's readings: how often it was at or beyond a level."""

    __slots__ = ("bins", "recent", "weight")

    def __init__(self) -> None:
        self.bins: dict[int, float] = {}
        self.recent: list[int] = []  # the bins of readings not counted yet (the newest last)
        self.weight = 1.0  # the weight of the next reading (grows instead of fading all)

    def add(self, x: float) -> None:
        """A new reading; the one ``LAG`` readings older joins the histogram."""
        if math.isfinite(x):
            self.add_bin(level_bin(x))

    def add_bin(self, bin_: int) -> None:
        """A new reading by its bin (``level_bins``; -1 is a missing one, skipped)."""
        if bin_ == -1:
            return
        self.recent.append(bin_)
        while len(self.recent) > LAG:
            b = self.recent.pop(0)
            self.bins[b] = self.bins.get(b, 0.0) + self.weight
            self.weight /= 1.0 - RATE
            if len(self.bins) > MAX_BINS:
                del self.bins[min(self.bins, key=self.bins.__getitem__)]
        if self.weight > _RESCALE:  # keep the numbers small; shares are unchanged
            w, small = self.weight, sum(self.bins.values()) * 1e-9
            self.bins = {b: c / w for b, c in self.bins.items() if c > small}
            self.weight = 1.0

    def seen(self, x: float, direction: Literal["up", "down"]) -> float:
        """The share of the counted readings at or beyond ``x`` that way (0 with fewer
        than ``SEEN_MIN`` of them)."""
        b = level_bin(x)
        mass = sum(c for k, c in self.bins.items() if (k >= b if direction == "up" else k <= b))
        if mass < SEEN_MIN * self.weight:
            return 0.0
        return mass / sum(self.bins.values())

    def usual(self, x: float, direction: Literal["up", "down"]) -> bool:
        """Whether ``x`` is a level this series often reaches (``SEEN_P``)."""
        return self.seen(x, direction) >= SEEN_P

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-able values."""
        return {"b": self.bins, "w": self.weight, "r": self.recent}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Levels:
        """Rebuild from ``to_json`` (bin keys may come back as strings)."""
        lv = cls()
        lv.bins = {int(k): float(c) for k, c in d.get("b", {}).items()}
        lv.weight = float(d.get("w", 1.0))
        lv.recent = [int(v) for v in d.get("r", [])][-LAG:]
        return lv
