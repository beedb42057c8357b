"""Practical significance, one event per service, and incidents that recur."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detectors.detection_settings import DetectionSettings
from detectors.incident_match import match
from detectors.scoring import WindowScorer
from detectors.significance import collapse, significant, single_window
from schemas.anomalies import AnomalyEvent
from schemas.windows import WindowStats


def win(i: int, series: str = "api", scope: str = "service", **kw: Any) -> WindowStats:
    t = 1_700_000_000 + 10 * i
    base: dict[str, Any] = dict(count=500, rate_per_s=50.0 + i % 3, error_rate=0.01 * (i % 2),
                                p95=100.0 + i % 7, p99=150.0 + i % 5)
    base.update(kw)
    return WindowStats(series=series, service=series.split()[0], scope=scope, window_s=10,
                       start=datetime.fromtimestamp(t - 10, UTC),
                       end=datetime.fromtimestamp(t, UTC), **base)


def _event(series: str, feature: str, severity: str, score: float) -> AnomalyEvent:
    return AnomalyEvent(id=f"{series}{feature}", ts=1000, series=series, service="api",
                        feature=feature, observed=1.0, expected=0.0, lo=0.0, hi=0.0,
                        score=score, threshold=0.99, severity=severity)


def test_count_changes_must_beat_poisson_noise() -> None:
    assert not significant("error_rate", 0.5, 0.0, count=2, ws=10)  # one error in two
    assert significant("error_rate", 0.3, 0.01, count=100, ws=10)
    assert not significant("rate_per_s", 0.0, 0.5, count=0, ws=10)  # 5 expected, 0 seen
    assert significant("rate_per_s", 0.0, 20.0, count=0, ws=10)
    assert not significant("p99", 2000.0, 100.0, count=150, ws=10)
    assert significant("mean", 2.0, 1.0, count=1, ws=10)  # metrics: no count noise


def test_simultaneous_anomalies_of_a_service_are_one_event() -> None:
    out = collapse([_event("api GET /a", "p95", "warning", 0.999),
                    _event("api", "error_rate", "critical", 0.99),
                    _event("api", "p99", "warning", 0.9999)])
    assert len(out) == 1 and out[0].feature == "error_rate"
    assert set(out[0].contributing) == {"api GET /a:p95", "api:p99"}


def test_an_incident_in_progress_wins_over_the_slack_of_the_last_one() -> None:
    labels: list[dict[str, Any]] = [
        {"id": "old", "service": "a", "start_ms": 0, "end_ms": 100_000},
        {"id": "new", "service": "a", "start_ms": 150_000, "end_ms": 250_000}]
    assert match({"ts": 160_000, "service": "a"}, labels)["id"] == "new"  # type: ignore[index]
    assert match({"ts": 120_000, "service": "a"}, labels)["id"] == "old"  # type: ignore[index]


def test_a_recurring_error_burst_is_detected_each_time() -> None:
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    found = []
    for i in range(900):
        burst = 0.3 if i in range(300, 308) or i in range(500, 508) else 0.0
        found += [(i, a.feature) for a in sc.score_batch([win(i, error_rate=burst)])]
    assert (300, "error_rate") in found and (500, "error_rate") in found


def test_one_error_on_a_quiet_route_is_not_an_anomaly() -> None:
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    quiet = {"count": 4, "rate_per_s": 0.4, "error_rate": 0.0, "p95": 50.0, "p99": 60.0}
    for i in range(300):
        sc.score_batch([win(i, series="api GET /x", scope="route", **quiet)])
    one_error = {**quiet, "error_rate": 0.25}
    assert sc.score_batch([win(300, series="api GET /x", scope="route", **one_error)]) == []


def test_a_percentile_over_few_requests_must_hold_for_two_windows() -> None:
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    route: dict[str, Any] = {"scope": "route", "count": 60, "rate_per_s": 6.0}
    found = []
    for i in range(420):
        # one window 2.5x slower (three slow requests), later a lasting 3x regression
        p95 = 250.0 if i == 300 else 300.0 if i >= 400 else 100.0 + i % 7
        found += [(i, a.feature) for a in sc.score_batch([win(i, "api GET /x", p95=p95, **route)])]
    assert found == [(401, "p95")]  # the regression, confirmed by its second window


def test_a_percentile_over_many_requests_needs_one_window() -> None:
    assert single_window("p95", count=500) and not single_window("p95", count=60)
    assert not single_window("p99", count=500) and single_window("error_rate", count=1)
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    found = []
    for i in range(320):
        p95 = 250.0 if i == 300 else 100.0 + i % 7
        found += [(i, a.feature) for a in sc.score_batch([win(i, p95=p95)])]  # 500 requests
    assert found == [(300, "p95")]


def test_an_unusual_mix_needs_a_feature_that_changed_beyond_its_noise() -> None:
    sc = WindowScorer(DetectionSettings())
    found = []
    for i in range(400):
        # over 100 requests, p99 is the slowest one: a single slow request moves it
        slow = 700.0 if i in (300, 350) else 0.0
        errors = 0.3 if i == 380 else 0.01 * (i % 2)
        found += [(i, a.detector, a.feature) for a in sc.score_batch([win(
            i, count=100, rate_per_s=10.0 + i % 3, p99=150.0 + i % 5 + slow,
            error_rate=errors)])]
    assert [f[0] for f in found] == [380]  # only the error burst
