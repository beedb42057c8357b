"""The scoring stage's pure parts: features, anomaly events, silence, variants, state."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

from detectors.feedback import Calibrator, ChangeLog, Quality
from detectors.scoring import WindowScorer, features
from detectors.settings import DetectionSettings, VariantConfig
from evaluation.incidents import evaluate
from schemas.anomalies import AnomalyEvent
from schemas.windows import WindowStats

T0 = 1_700_000_000


def win(i: int, series: str = "api", scope: str = "service", **kw: Any) -> WindowStats:
    t = T0 + 10 * i
    base: dict[str, Any] = dict(count=500, rate_per_s=50.0 + i % 3, error_rate=0.01 * (i % 2),
                                p95=100.0 + i % 7, p99=150.0 + i % 5)
    base.update(kw)
    return WindowStats(series=series, service=series.split()[0], scope=scope,
                       window_s=10, start=datetime.fromtimestamp(t - 10, UTC),
                       end=datetime.fromtimestamp(t, UTC), **base)


def warm(sc: WindowScorer, n: int = 300, **kw: Any) -> list[AnomalyEvent]:
    return [a for i in range(n) for a in sc.score_batch([win(i, **kw)])]


def test_features_follow_the_scope() -> None:
    names = [s.name for s, _ in features(win(1))]
    assert names == ["rate_per_s", "error_rate", "p95", "p99"]
    route = [s.name for s, _ in features(win(1, "api GET /a", scope="route"))]
    assert route == [*names, "p50"]  # a route's median is its latency, a service's its mix
    empty = dict(features(win(1, count=0, rate_per_s=0.0)))
    assert math.isnan(next(v for s, v in empty.items() if s.name == "error_rate"))
    metric = WindowStats(series="api/cpu", service="api", scope="metric", window_s=10,
                         start=datetime.fromtimestamp(T0, UTC),
                         end=datetime.fromtimestamp(T0 + 10, UTC), mean=0.7)
    assert [(s.name, v) for s, v in features(metric)] == [("mean", 0.7)]


def test_error_burst_is_a_critical_anomaly_with_band_and_changes() -> None:
    changes = ChangeLog()
    changes.add_edge("web", "api")
    changes.add((T0 + 2990) * 1000, "web", "deploy", "web 1.2.3")
    changes.add((T0 + 10) * 1000, "web", "deploy", "too old to matter")
    sc = WindowScorer(DetectionSettings(), changes)
    assert warm(sc) == []
    found = [a for a in sc.score_batch([win(300, error_rate=0.4)]) if a.detector == "series"]
    assert [(a.feature, a.severity, a.direction) for a in found] == [
        ("error_rate", "critical", "up")]
    a = found[0]
    assert a.observed == 0.4 and a.lo <= a.expected < a.hi < 0.4
    assert a.score >= a.threshold and a.variant == "champion" and a.ts == (T0 + 3000) * 1000
    assert next(iter(a.contributing)) == "error_rate"
    assert [c.description for c in a.changes] == ["web 1.2.3"]


def test_better_is_not_an_anomaly_but_silence_is() -> None:
    sc = WindowScorer(DetectionSettings())
    warm(sc)
    assert [a for a in sc.score_batch([win(300, p95=5.0, p99=6.0)]) if a.detector == "series"
            ] == []
    other = [win(i, series="db") for i in range(301, 304)]  # the fleet goes on, api is silent
    warm(sc, 300, series="db")
    found = [a for w in other for a in sc.score_batch([w]) if a.series == "api"]
    assert ("rate_per_s", "down", "critical") in {(a.feature, a.direction, a.severity)
                                                  for a in found}


def test_silence_goes_no_further_than_the_series_own_source() -> None:
    """Replayed at full speed one ingest partition runs ahead of another: a service whose
    partition lags is not silent. One that stops while its partition goes on is, and so is
    every service of a partition that stopped sending (after ``SOURCE_IDLE_S``)."""
    sc = WindowScorer(DetectionSettings())
    clock = [1000.0]
    sc.clock = lambda: clock[0]
    a, b = {"source": "logs:0"}, {"source": "logs:1"}
    for i in range(300):
        assert sc.score_batch([win(i, "api", **a), win(i, "web", **a), win(i, "db", **b)]) == []

    def silent(found: list[AnomalyEvent]) -> set[str]:
        return {x.service for x in found if x.feature == "rate_per_s" and x.direction == "down"}

    # logs:1 runs a minute ahead; logs:0's windows are still on their way
    ahead = [x for i in range(300, 306) for x in sc.score_batch([win(i, "db", **b)])]
    assert silent(ahead) == set()
    caught_up = [x for i in range(300, 306)
                 for x in sc.score_batch([win(i, "api", **a), win(i, "web", **a)])]
    assert silent(caught_up) == set()
    # web stops while api, on the same partition, goes on: web is silent
    stopped = [x for i in range(306, 312)
               for x in sc.score_batch([win(i, "api", **a), win(i, "db", **b)])]
    assert silent(stopped) == {"web"}
    # logs:0 sends nothing more; after SOURCE_IDLE_S it stopped rather than lagged
    clock[0] += 31.0
    gone = [x for i in range(312, 318) for x in sc.score_batch([win(i, "db", **b)])]
    assert "api" in silent(gone)


def test_challenger_is_tagged_and_stricter_variant_fires_less() -> None:
    strict = VariantConfig(version="strict", threshold_q=30.0, multivariate=False)
    sc = WindowScorer(DetectionSettings(challenger=strict))
    warm(sc)
    found = sc.score_batch([win(300, error_rate=0.4)])
    assert {a.variant for a in found} == {"champion"}
    assert all(a.version.endswith("/1") for a in found)


def test_restored_state_scores_like_the_uninterrupted_one() -> None:
    a, b = WindowScorer(DetectionSettings()), WindowScorer(DetectionSettings())
    warm(a)
    for series, raw in a.snapshot().items():
        b.restore(series, raw)
    assert a.snapshot() == {}  # dirty marks cleared
    for i in range(300, 340):
        w = win(i, error_rate=0.4 if i == 320 else 0.01)
        got_a, got_b = a.score_batch([w]), b.score_batch([w])
        assert [x.model_dump() for x in got_a] == [x.model_dump() for x in got_b]
        if i == 320:
            assert any(x.feature == "error_rate" for x in got_b)  # a warm model, not warm-up
    assert a.states["api"].dets["p95"].to_bytes() == b.states["api"].dets["p95"].to_bytes()
    assert b.states["api"].dets["p95"].n == 340  # no new warm-up


def test_calibrator_bounds_and_quality_figures() -> None:
    c = Calibrator(raise_q=1.0, lower_q=0.25, max_q=2.5)
    adj = 0.0
    for _ in range(4):
        adj = c.apply(adj, "false")
    assert adj == 2.5
    assert c.apply(adj, "true") == 2.25 and c.apply(adj, "unsure") == 2.5
    assert c.apply(0.0, "true") == 0.0
    q = Quality()
    q.add("series", "champion", "api", "true")
    figures = q.add("series", "champion", "api", "false")
    assert figures["precision"] == 0.5 and figures["false_alert_rate"] == 0.5
    assert q.add("series", "challenger", "api", "unsure")["precision"] == 1.0


def test_false_positive_feedback_raises_the_series_threshold() -> None:
    sc = WindowScorer(DetectionSettings())
    warm(sc)
    st = sc.states["api"]
    st.adj["champion"] = 30.0  # what a run of "false" verdicts would lead to (unbounded here)
    assert [a for a in sc.score_batch([win(300, error_rate=0.4)]) if a.detector == "series"
            ] == []


def test_compare_metrics_per_variant() -> None:
    labels = [{"id": "i1", "kind": "error_burst", "severity": "critical", "service": "a",
               "services": ["a"], "start_ms": 100_000, "end_ms": 200_000},
              {"id": "i2", "kind": "disk_full", "severity": "warning", "service": "b",
               "services": ["b"], "start_ms": 500_000, "end_ms": 600_000}]
    anomalies = [
        {"id": "c1", "ts": 130_000, "service": "a", "variant": "champion"},
        {"id": "c2", "ts": 700_000, "service": "a", "variant": "champion"},
        {"id": "h1", "ts": 110_000, "service": "a", "variant": "challenger"},
        {"id": "h2", "ts": 510_000, "service": "b", "variant": "challenger"},
    ]
    r = evaluate(anomalies, labels, hours=0.5, feedback={"c1": "true", "c2": "false"})
    champ, chall = r["champion"], r["challenger"]
    assert (champ["recall"], champ["critical_recall"], champ["false_alarms"]) == (0.5, 1.0, 1)
    assert champ["false_per_hour"] == 2.0 and champ["ttd_max_s"] == 30.0
    assert champ["feedback_precision"] == 0.5
    assert (chall["recall"], chall["false_alarms"], chall["ttd_mean_s"]) == (1.0, 0, 10.0)


def _counter(i: int, last: float) -> WindowStats:
    t = T0 + 10 * i
    return WindowStats(series="api/http_requests_total", service="api", scope="metric",
                       name="http_requests_total", window_s=10,
                       start=datetime.fromtimestamp(t - 10, UTC),
                       end=datetime.fromtimestamp(t, UTC), count=1, mean=last, last=last)


def test_a_counter_is_scored_on_its_rate_not_its_growing_value() -> None:
    sc = WindowScorer(DetectionSettings())
    total, found = 0.0, []
    for i in range(400):
        if i == 300:
            total = 0.0  # the process restarted: a counter reset is not an anomaly
        rate = 0.0 if i >= 380 else 20.0 + i % 3  # from 380 on nothing is counted
        total += 10 * rate
        found += [(i, a.feature, a.direction) for a in sc.score_batch([_counter(i, total)])]
    assert found == [(381, "increase_per_s", "down")]  # its second point in a row
    assert sc.states["api/http_requests_total"].prev == {10: total}
    gauge = _counter(1, 5.0).model_copy(update={"name": "queue_depth"})
    assert [s.name for s, _ in features(gauge)] == ["mean"]


def test_a_dependency_called_every_few_seconds_that_slows_tenfold_alarms_on_its_second_window(
        ) -> None:
    """One or two calls a window on an edge, each ten times slower than usual (a starved
    or delayed dependency): no window has many requests beyond the p95, but two windows in
    a row whose median is beyond it do, over a window without calls; a lone slow window
    does not."""
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))

    def call(i: int, ms: float, n: int = 1) -> WindowStats:
        return win(i, "web->auth", "edge", name="auth", count=n, samples=n,
                   rate_per_s=n / 10, error_rate=0.0, p50=ms, p95=ms, p99=ms)

    quiet = [a for i in range(300) for a in sc.score_batch([call(i, 5.0 + i % 4, 1 + i % 2)])]
    lone = sc.score_batch([call(300, 60.0, 2)]) + sc.score_batch([call(301, 6.0, 1)])
    found = [(a.feature, a.ts // 1000 - T0) for i, ms in ((310, 55.0), (312, 70.0))
             for a in sc.score_batch([call(i, ms, 2 if i == 310 else 1)])]
    assert quiet == [] and lone == []
    assert found and {ts for _, ts in found} == {3120}  # the second slow window, after a gap


def test_a_slow_service_with_few_requests_is_seen_late_windows_and_all() -> None:
    """Three timed requests a window (of ten), all of them 30x slower: the whole distribution moved
    (its median is above the usual p95), so two such windows in a row confirm it; its
    windows arrive after the scorer imputed silence for them (they closed late) and are
    still scored."""
    sc = WindowScorer(DetectionSettings())

    def slow(i: int, p: float) -> WindowStats:
        return win(i, "shop", count=10, samples=3, rate_per_s=1.0, error_rate=0.0,
                   p50=p, p95=p, p99=p)

    warm_up = [a for i in range(300) for a in sc.score_batch([
        slow(i, 10.0 + i % 3), win(i, "other")])]
    assert warm_up == []
    # the fleet goes on to window 310 before the shop's slow windows arrive
    sc.score_batch([win(i, "other") for i in range(300, 311)])
    silent = sc.score_batch([win(311, "other")])  # the shop's silence imputed up to 310
    assert [(a.feature, a.direction) for a in silent if a.service == "shop"] == [
        ("rate_per_s", "down")]
    late = [slow(300, 300.0), slow(301, 310.0), slow(303, 290.0), slow(304, 320.0)]
    found = [a for a in sc.score_batch(late) if a.service == "shop" and a.detector == "series"]
    assert [(a.feature, a.scope, a.ts // 1000 - T0) for a in found] == [
        ("p95", "service", 3010)]  # window 301: two medians in a row beyond the usual p95


def test_latency_that_stays_high_alarms_though_no_window_is_rarer_than_the_usual_spikes(
        ) -> None:
    """An edge with two calls a window and a heavy-tailed history (log-normal, sigma 1.2
    around 5 ms: a tenfold window every 30 or so): two 11x windows in a row are what it
    often does and raise nothing; four in a row are not, and Fisher's method over the run
    names the edge. A restored state carries the run on."""
    def call(i: int, ms: float) -> WindowStats:
        return win(i, "web->db", "edge", name="db", count=2, samples=2, rate_per_s=0.2,
                   error_rate=0.0, p50=ms, p95=ms, p99=ms)

    rng = random.Random(1)
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    history = [a for i in range(3000)
               for a in sc.score_batch([call(i, rng.lognormvariate(math.log(5.0), 1.2))])]
    assert history == []
    two = [a for i in (3000, 3001) for a in sc.score_batch([call(i, 55.0)])]
    assert two == []
    twin = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    for series, raw in sc.snapshot().items():
        twin.restore(series, raw)
    for scorer in (sc, twin):
        run = [(a.scope, a.series, a.ts // 1000 - T0) for i in range(3002, 3006)
               for a in scorer.score_batch([call(i, 55.0)])]
        assert run[:1] == [("edge", "web->db", 10 * 3003)], run


def test_a_dependency_that_stays_twice_as_slow_is_seen_though_the_level_follows_it() -> None:
    """An edge of 14-40 calls a window whose median wanders (log-normal, sigma 0.3 around 180
    ms) gets a network delay: 365 ms and it stays. The detector's level follows the shift
    within a few windows, so each window alone is less surprising than the last; scored
    from where the run began, the windows in a row are an anomaly within a minute. The same
    doubling spread over five minutes or more (a daily peak) is not."""
    def call(i: int, ms: float, n: int) -> WindowStats:
        return win(i, "checkout->payments", "edge", name="payments", count=n, samples=n,
                   rate_per_s=n / 10, error_rate=0.0, p50=ms, p95=ms * 1.3, p99=ms * 1.5)

    def replay(run_start: bool, ramp: int) -> tuple[list[AnomalyEvent], list[int]]:
        rng = random.Random(2)
        sc = WindowScorer(DetectionSettings(champion={"multivariate": False},
                                            run_start=run_start))
        history = [a for i in range(2000) for a in sc.score_batch(
            [call(i, rng.lognormvariate(math.log(180), 0.3), rng.randint(14, 40))])]
        slower = [i - 2000 for i in range(2000, 2000 + ramp + 30) for a in sc.score_batch(
            [call(i, 180 * (1 + min(1.0, (i - 1999) / ramp)) * rng.uniform(0.93, 1.07),
                  rng.randint(14, 40))]) if a.scope == "edge"]
        return history, slower

    history, found = replay(True, 1)
    assert history == [] and found and found[0] <= 5, found
    assert replay(False, 1)[1] == []  # the rule is what finds it
    assert replay(True, 30)[1] == [] and replay(True, 60)[1] == []
