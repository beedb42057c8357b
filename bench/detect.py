"""Detection bench: 100k+ active series scored in one process; points/s and bytes/series.

Each series is a metric window (one feature, ``mean``) scored by the same ``WindowScorer``
the worker runs, in batches like the stage's ``getmany``. It measures the in-process
scoring path (decode excluded); the Kafka round trip is the ingest bench's business.
``bank_bytes_per_series`` is the detectors' numpy memory (``SeriesBank`` rows, spare
capacity included); ``vector_*`` figures score the same values with a bare ``SeriesBank``
(the detector alone, no window objects, no rules). ``artime_*`` figures are ARTime (NAB's
default; live behind a variant's ``artime`` switch): ``artime_bank_*`` its ``ARTimeBank``
over the same number of series, each started from one detector past its probation (the
steady state), ``artime_points_per_s`` / ``artime_state_bytes`` one scalar detector on one
long series, and ``artime_variant_*`` the scorer with a challenger that lets ARTime decide
its gauges, against the scorer without one (the same windows, taken in turns; its ARTime
rows past their probation).
``levels_cost`` is the share of the scoring time spent on the gauges' levels
(``detectors.levels``), against the same run with them off.
"""

from __future__ import annotations

import gc
import json
import math
import resource
import time
from datetime import UTC, datetime

import numpy as np

from detectors.artime import ARTimeConfig, ARTimeDetector
from detectors.artime_batch import ARTimeBank
from detectors.scoring import STREAM, WindowScorer
from detectors.series_batch import SeriesBank
from detectors.settings import DetectionSettings, VariantConfig
from schemas.windows import WindowStats

T0 = 1_767_225_600


def _windows(n_series: int, step: int) -> list[WindowStats]:
    start = datetime.fromtimestamp(T0 + 10 * step, UTC)
    end = datetime.fromtimestamp(T0 + 10 * step + 10, UTC)
    return [WindowStats.model_construct(
        series=f"svc{i % 500}/m{i}", service=f"svc{i % 500}", scope="metric", route="",
        name=f"m{i}", window_s=10, start=start, end=end,
        mean=50.0 + 10 * math.sin(step / 30 + i) + (i * step % 7)) for i in range(n_series)]


def _vector(n_series: int, rounds: int) -> tuple[float, float]:
    """Points/s and in-memory bytes per series of the ``SeriesBank`` on the same values."""
    bank = SeriesBank(STREAM, capacity=n_series)
    rows = np.array([bank.add() for _ in range(n_series)])
    i = np.arange(n_series)
    seconds = 0.0
    for step in range(rounds):
        x = 50.0 + 10 * np.sin(step / 30 + i) + (i * step % 7)
        t = time.perf_counter()
        bank.update(rows, np.full(n_series, T0 + 10.0 * step + 10), x)
        seconds += time.perf_counter() - t
    return n_series * rounds / seconds, _nbytes(bank) / len(bank.n)


def _artime(points: int = 200_000) -> tuple[float, int]:
    """Points/s and largest state (bytes) of one ARTime detector on a 5-minute daily cycle
    with noise, an occasional spike and a level shift half way."""
    rng = np.random.default_rng(0)
    i = np.arange(points)
    x = 50 + 10 * np.sin(2 * np.pi * i / 288) + rng.normal(0, 1, points)
    x[::4999] += 40
    x[points // 2:] += 25
    det = ARTimeDetector(ARTimeConfig(probation=750))
    size, t = 0, time.perf_counter()
    for k, v in enumerate(x.tolist()):
        det.update(300.0 * k, v)
        if k % 10_000 == 0:
            size = max(size, len(det.to_bytes()))
    return points / (time.perf_counter() - t), size


def _artime_bank(n_series: int, rounds: int = 20) -> tuple[float, float]:
    """Points/s and numpy bytes per series of an ``ARTimeBank`` in its steady state."""
    rng = np.random.default_rng(0)
    cfg = ARTimeConfig(probation=600)
    det = ARTimeDetector(cfg)
    for k in range(2000):
        det.update(0.0, 50 + 10 * math.sin(k / 46) + rng.normal(0, 1))
    bank = ARTimeBank(cfg, capacity=n_series)
    rows = np.array([bank.add() for _ in range(n_series)])
    bank.set(0, det)
    for v in vars(bank).values():  # every row starts from that state, at its own phase
        if isinstance(v, np.ndarray) and v.shape[:1] == (n_series,):
            v[1:] = v[0]
    bank.i += rng.integers(0, cfg.step, n_series)
    i = np.arange(n_series)
    seconds = 0.0
    for step in range(rounds):
        x = 50 + 10 * np.sin((2000 + step) / 46 + i) + rng.normal(0, 1, n_series)
        x[rng.random(n_series) < 0.001] += 60
        t = time.perf_counter()
        bank.update(rows, x)
        seconds += time.perf_counter() - t
    size = sum(v.nbytes for v in vars(bank).values() if isinstance(v, np.ndarray))
    return n_series * rounds / seconds, size / n_series


def _nbytes(bank: SeriesBank) -> int:
    return sum(a.nbytes for a in vars(bank).values() if isinstance(a, np.ndarray))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _score(settings: DetectionSettings, n_series: int, rounds: int
           ) -> tuple[WindowScorer, int, float]:
    """The scorer after ``rounds`` windows of ``n_series`` series, points, seconds."""
    scorer = WindowScorer(settings)
    points, seconds = 0, 0.0
    for step in range(rounds):
        batch = _windows(n_series, step)
        t = time.perf_counter()
        scorer.score_batch(batch)
        seconds += time.perf_counter() - t
        points += n_series
        del batch
    return scorer, points, seconds


def _with_artime(n_series: int = 100_000, rounds: int = 6) -> dict[str, float]:
    """The scorer with and without a challenger whose gauges ARTime decides, on the same
    windows, taken in turns each round (a noisy machine slows both alike). After the first
    window every ARTime row starts from one detector past its probation: the steady state
    (ending a probation costs ~65 ms a series, spread over calls: ``ARTIME_ENDS``)."""
    plain = WindowScorer(DetectionSettings(window_s=(10,)))
    settings = DetectionSettings(window_s=(10,), challenger=VariantConfig(version="2",
                                                                          artime=True))
    art = WindowScorer(settings)
    det = ARTimeDetector(ARTimeConfig(probation=settings.artime_probation))
    for k in range(2 * settings.artime_probation):
        det.update(0.0, 50 + 10 * math.sin(k / 30) + k % 7)
    took = {"plain": 0.0, "artime": 0.0}
    for step in range(rounds + 1):
        batch = _windows(n_series, step)
        for name, scorer in ((("plain", plain), ("artime", art))[::1 if step % 2 else -1]):
            t = time.perf_counter()
            scorer.score_batch(batch)
            took[name] += (time.perf_counter() - t) if step else 0.0
        if step == 0:
            for bank in art.banks.art_by_key.values():
                for row in range(bank.size):
                    bank.set(row, det)
    sample = list(art.states.values())[:1000]
    return {"artime_variant_points_per_s": round(n_series * rounds / took["artime"]),
            "artime_variant_ratio": round(took["plain"] / took["artime"], 3),
            "artime_variant_state_bytes_per_series":
                round(sum(len(st.to_bytes()) for st in sample) / len(sample))}


def run(n_series: int = 100_000, rounds: int = 6) -> dict[str, object]:
    """Score ``rounds`` windows of ``n_series`` series; prints and returns one JSON line."""
    # the baseline of the same run: the gauges' levels (``detectors.levels``) off
    _, base_points, base_seconds = _score(DetectionSettings(window_s=(10,), seen_levels=False),
                                          n_series, rounds)
    gc.collect()
    rss0 = _rss_mb()
    scorer, points, seconds = _score(DetectionSettings(window_s=(10,)), n_series, rounds)
    gc.collect()
    sample = list(scorer.states.values())[:1000]
    state_bytes = sum(len(st.to_bytes()) for st in sample) / len(sample)
    det_bytes = sum(len(d.to_bytes()) for st in sample for d in st.dets.values()) / len(sample)
    bank_bytes = sum(_nbytes(b) for b in scorer.banks.by_key.values())
    out = {"benchmark": "detect", "series": n_series, "points": points,
           "points_per_s": round(points / seconds), "seconds": round(seconds, 2),
           "levels_off_points_per_s": round(base_points / base_seconds),
           "levels_cost": round(1 - base_seconds / seconds, 3),
           "state_bytes_per_series": round(state_bytes), "model_bytes_per_series":
           round(det_bytes), "bank_bytes_per_series": round(bank_bytes / n_series),
           "rss_mb": round(_rss_mb()),
           "rss_bytes_per_series": round((_rss_mb() - rss0) * 1024 * 1024 / n_series)}
    vec_rate, vec_bytes = _vector(n_series, rounds)
    out |= {"vector_points_per_s": round(vec_rate), "vector_bytes_per_series": round(vec_bytes)}
    bank_rate, bank_bytes_art = _artime_bank(n_series)
    art_rate, art_bytes = _artime()
    out |= {"artime_bank_points_per_s": round(bank_rate),
            "artime_bank_bytes_per_series": round(bank_bytes_art),
            "artime_points_per_s": round(art_rate), "artime_state_bytes": art_bytes}
    out |= _with_artime()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    run()
