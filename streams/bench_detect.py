"""Detection bench: 100k+ active series scored in one process; points/s and bytes/series.

Each series is a metric window (one feature, ``mean``) scored by the same ``WindowScorer``
the worker runs, in batches like the stage's ``getmany``. It measures the in-process
scoring path (decode excluded); the Kafka round trip is the ingest bench's business.
"""

from __future__ import annotations

import gc
import json
import math
import resource
import time
from datetime import UTC, datetime

from detectors.detection_settings import DetectionSettings
from detectors.scoring import WindowScorer
from schemas.windows import WindowStats

T0 = 1_767_225_600


def _windows(n_series: int, step: int) -> list[WindowStats]:
    start = datetime.fromtimestamp(T0 + 10 * step, UTC)
    end = datetime.fromtimestamp(T0 + 10 * step + 10, UTC)
    return [WindowStats.model_construct(
        series=f"svc{i % 500}/m{i}", service=f"svc{i % 500}", scope="metric", route="",
        name=f"m{i}", window_s=10, start=start, end=end,
        mean=50.0 + 10 * math.sin(step / 30 + i) + (i * step % 7)) for i in range(n_series)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n_series: int = 100_000, rounds: int = 6) -> dict[str, object]:
    """Score ``rounds`` windows of ``n_series`` series; prints and returns one JSON line."""
    gc.collect()
    rss0 = _rss_mb()
    scorer = WindowScorer(DetectionSettings(window_s=(10,)))
    points, seconds = 0, 0.0
    for step in range(rounds):
        batch = _windows(n_series, step)
        t = time.perf_counter()
        scorer.score_batch(batch)
        seconds += time.perf_counter() - t
        points += n_series
        del batch
    gc.collect()
    sample = list(scorer.states.values())[:1000]
    state_bytes = sum(len(st.to_bytes()) for st in sample) / len(sample)
    det_bytes = sum(len(d.to_bytes()) for st in sample for d in st.dets.values()) / len(sample)
    out = {"benchmark": "detect", "series": n_series, "points": points,
           "points_per_s": round(points / seconds), "seconds": round(seconds, 2),
           "state_bytes_per_series": round(state_bytes), "model_bytes_per_series":
           round(det_bytes), "rss_mb": round(_rss_mb()),
           "rss_bytes_per_series": round((_rss_mb() - rss0) * 1024 * 1024 / n_series)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    run()
