"""``WindowScorer`` scores a batch through ``SeriesBank`` exactly like scalar detectors do."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.scoring import WindowScorer
from detectors.series_batch import SeriesBank
from detectors.settings import DetectionSettings, VariantConfig
from schemas.anomalies import AnomalyEvent
from schemas.windows import WindowStats

T0 = 1_700_000_000
SETTINGS = DetectionSettings(window_s=(10, 60), challenger=VariantConfig(
    version="c", threshold_q=4.0, warmup=20, cooldown_s=60.0))


class ScalarScorer(WindowScorer):
    """The reference: every point through ``SeriesDetector.update``, one at a time."""

    @staticmethod
    def _update(bank: SeriesBank, at: npt.NDArray[np.int64], rows: npt.NDArray[np.int64],
                ts: npt.NDArray[np.float64], xs: npt.NDArray[np.float64],
                res: npt.NDArray[np.float64], n_before: npt.NDArray[np.int64]) -> None:
        for k, r, t, x in zip(at.tolist(), rows.tolist(), ts.tolist(), xs.tolist(),
                              strict=True):
            det = bank.detector(r)
            n_before[k] = det.n
            res[:, k] = det.update(t, x)
            bank.set(r, det)


def _win(series: str, scope: str, i: int, ws: int = 10, **kw: Any) -> WindowStats:
    t = T0 + 10 * i
    return WindowStats(series=series, service=series.split("/")[0].split("#")[0], scope=scope,
                       route="/x" if scope == "route" else "", window_s=ws,
                       start=datetime.fromtimestamp(t - ws, UTC),
                       end=datetime.fromtimestamp(t, UTC), **kw)


def _traffic(rng: random.Random, i: int, errors: float = 0.0, slow: float = 0.0,
             rate: float = 50.0) -> dict[str, Any]:
    r = max(rate + rng.gauss(0, 2), 0.0)
    return dict(count=int(r * 10), rate_per_s=r, error_rate=abs(rng.gauss(0.01, 0.005)) + errors,
                p95=100 + rng.gauss(0, 5) + slow, p99=150 + rng.gauss(0, 8) + 2 * slow)


def _steps(seed: int) -> list[list[WindowStats]]:
    """Windows per 10 s step: services, a route, a metric, a template; incidents late on."""
    rng = random.Random(seed)
    steps: list[list[WindowStats]] = []
    for i in range(1, 421):
        ws = [_win("db", "service", i, **_traffic(rng, i, slow=400.0 * (i in (340, 341)))),
              _win("db/q", "route", i, **_traffic(rng, i, rate=8.0, errors=0.5 * (i == 350))),
              _win("api/cpu", "metric", i, mean=0.5 + rng.gauss(0, 0.02) + 0.5 * (i >= 380)),
              _win("api#t1", "template", i, count=rng.randint(0, 3) + 40 * (i == 390))]
        if not 360 <= i < 372:  # api goes silent for two minutes
            ws.append(_win("api", "service", i, **_traffic(rng, i, errors=0.4 * (i == 320))))
            if i % 6 == 0:
                ws.append(_win("api", "service", i, ws=60, **_traffic(rng, i)))
        if i % 37 == 0:
            ws.append(steps[-3][0])  # a replayed window: skipped by both
        rng.shuffle(ws)
        steps.append(ws)
    return steps


def _batches(steps: list[list[WindowStats]]) -> list[list[WindowStats]]:
    """Batches of 1 to 4 steps: a series often appears several times in one batch."""
    rng, out, at = random.Random(3), [], 0
    while at < len(steps):
        k = rng.randint(1, 4)
        out.append([w for s in steps[at:at + k] for w in s])
        at += k
    return out


def _same(a: AnomalyEvent, b: AnomalyEvent) -> bool:
    da, db = a.model_dump(), b.model_dump()
    for k, v in da.items():
        if isinstance(v, float):
            if not (math.isnan(v) and math.isnan(db[k])) and abs(v - db[k]) > 1e-9 * max(
                    1.0, abs(v)):
                return False
        elif k == "contributing":
            if list(v) != list(db[k]) or any(abs(v[f] - db[k][f]) > 1e-9 for f in v):
                return False
        elif v != db[k]:
            return False
    return True


def test_batched_scoring_gives_the_scalar_anomalies_and_scores() -> None:
    fast, slow = WindowScorer(SETTINGS), ScalarScorer(SETTINGS)
    got, want = [], []
    for batch in _batches(_steps(11)):
        got += fast.score_batch(batch)
        want += slow.score_batch(batch)
    assert len(want) >= 12  # incidents, silence and the challenger's extra alarms
    assert {(a.series, a.feature) for a in want} >= {
        ("api", "error_rate"), ("db", "p99"), ("db/q", "error_rate"), ("api", "rate_per_s"),
        ("api/cpu", "mean"), ("api#t1", "count")}
    assert {a.variant for a in want} == {"champion", "challenger"}
    assert [a.id for a in got] == [a.id for a in want]
    assert all(_same(a, b) for a, b in zip(got, want, strict=True))
    assert fast.scored == slow.scored
    for series, st in slow.states.items():  # and the learnt states agree
        for key, det in st.dets.items():
            other = fast.states[series].dets[key]
            assert other.n == det.n and abs(other.level - det.level) <= 1e-9 * abs(det.level)


def test_snapshots_restore_into_bank_rows_and_forgotten_rows_are_reused() -> None:
    a = WindowScorer(SETTINGS)
    for batch in _batches(_steps(5)[:300]):
        a.score_batch(batch)
    snap = a.snapshot()
    b = WindowScorer(SETTINGS)
    for series, raw in snap.items():
        b.restore(series, raw)
        b.restore(series, raw)  # a second copy replaces the first, its rows are given back
    assert {s: st.to_bytes() for s, st in b.states.items()} == snap
    assert b.banks["rate_per_s"].size == 3  # db, db/q, api: no leaked rows
    b.forget(keep=["db"])
    b.score_batch([_win("web", "service", 301, **_traffic(random.Random(1), 301))])
    assert b.banks["rate_per_s"].size == 3 and set(b.states) == {"db", "web"}


def test_a_service_window_split_over_batches_is_one_event_as_in_one_batch() -> None:
    """A worker's windows come in batches of whatever its consumer read (the windows topic
    is keyed by series), so one service's windows of one end can arrive apart: a full-speed
    replay splits them otherwise than a run lived through. Each (service, window end) is
    still one event, unless a later one is more severe or of a broader scope."""

    def run(order: int, batched: bool) -> tuple[list[AnomalyEvent], WindowScorer]:
        scorer, rng, out = WindowScorer(SETTINGS), random.Random(5), []
        for i in range(1, 200):
            slow = 600.0 if i in (150, 151) else 0.0
            ws = [_win("db", "service", i, **_traffic(rng, i, slow=slow)),
                  _win("db/q", "route", i, **_traffic(rng, i, rate=30.0, slow=slow))][::order]
            if batched:
                out += scorer.score_batch(ws)
            else:
                for w in ws:
                    out += scorer.score_batch([w])
        return out, scorer

    def keys(events: list[AnomalyEvent]) -> list[tuple[str, int, str]]:
        return sorted((a.service, a.ts, a.variant) for a in events)

    whole, _ = run(1, batched=True)
    assert whole and len(keys(whole)) == len(set(keys(whole)))
    broad_first, scorer = run(1, batched=False)
    assert keys(broad_first) == keys(whole) and scorer.merged_late >= 2
    assert {a.scope for a in broad_first} == {"service"}
    # the route's first: the service's, broader, still goes out after it
    narrow_first, scorer = run(-1, batched=False)
    assert sorted(set(keys(narrow_first))) == keys(whole)
    assert len(narrow_first) == 2 * len(whole) and scorer.merged_late == 0


def test_a_window_maybe_cut_short_is_scored_once_it_closes_not_before() -> None:
    """A flush emits the last window while it is open: if the stream stopped inside it (a
    replay's end), its count is cut short, no drop. The scorer waits for the closed
    version; a stream that stops leaves nothing to score."""
    rng = random.Random(3)

    def run(tail: list[WindowStats]) -> list[AnomalyEvent]:
        scorer = WindowScorer(DetectionSettings(window_s=(10,)))
        for i in range(1, 200):
            scorer.score_batch([_win("api", "service", i, **_traffic(rng, i))])
        return scorer.score_batch(tail)

    partial = _win("api", "service", 200, count=40, rate_per_s=4.0, error_rate=0.01,
                   p95=100.0, p99=150.0)
    assert run([partial])  # as a closed window, a 90 % drop is an anomaly
    assert run([partial.model_copy(update={"partial": True})]) == []
    closed = _win("api", "service", 200, **_traffic(rng, 200))
    assert run([partial.model_copy(update={"partial": True}), closed]) == []
