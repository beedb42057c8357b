"""Practical significance, one event per service, and incidents that recur."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings
from detectors.significance import (
    RATE_FLOOR,
    RUN_Q,
    beyond,
    collapse,
    confirmed,
    error_run,
    poisson_tail_q,
    run_q,
    significant,
    single_window,
)
from evaluation.incidents import match
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
    assert not confirmed(beyond("p99", 150), run=None)  # p99 over 150 requests: 1.5 beyond
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
    assert single_window("p95", samples=500) and not single_window("p95", samples=60)
    assert not single_window("p99", samples=500) and single_window("error_rate", samples=1)
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


def test_a_percentile_is_supported_by_timed_requests_not_by_every_line() -> None:
    # a service logs 300 lines a window; only 150 are requests with a duration, and two
    # windows in a row have two slow ones: over 150 requests, that is p99 noise
    found: dict[int, list[int]] = {}
    for samples in (150, 300):
        sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
        found[samples] = []
        for i in range(320):
            p99 = 900.0 if i in (300, 301) else 150.0 + i % 5
            found[samples] += [i for a in sc.score_batch([win(
                i, count=300, samples=samples, rate_per_s=30.0 + i % 3, p99=p99)])]
    assert found == {150: [], 300: [301]}  # 300 timed requests: confirmed, second window


def test_an_unusual_mix_needs_a_change_that_one_window_can_show() -> None:
    # over 300 requests p99 is significant, but one window of it must be confirmed: the
    # multivariate model does not alarm on it alone either
    sc = WindowScorer(DetectionSettings())
    found = []
    for i in range(400):
        p99 = 900.0 if i in (300, 350) else 150.0 + i % 5
        errors = 0.3 if i == 380 else 0.01 * (i % 2)
        found += [(i, a.detector) for a in sc.score_batch([win(
            i, count=300, rate_per_s=30.0 + i % 3, p99=p99, error_rate=errors)])]
    assert [f[0] for f in found] == [380]


def test_a_new_incident_soon_after_the_last_one_is_not_lost_in_its_cooldown() -> None:
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    found = []
    for i in range(700):
        # two bursts 2 minutes apart (the cooldown is 5), later one lasting 4 minutes
        burst = i in range(300, 308) or i in range(320, 328) or i in range(500, 524)
        found += [i for a in sc.score_batch([win(i, error_rate=0.3 if burst else 0.0)])]
    assert found == [300, 320, 500]


def test_an_anomaly_says_since_when_its_service_has_been_bad_without_a_break() -> None:
    """Errors for 4 minutes, then latency too: the latency anomaly comes inside the error
    alarm's cooldown, and its ``since`` is the first error window (the service never calmed
    in between); after a calm spell the next episode (traffic collapsing) starts afresh."""
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    found: list[tuple[int, str, int | None]] = []
    for i in range(700):
        bad = 300 <= i < 330
        w = win(i, error_rate=0.3 if bad else 0.01 * (i % 2),
                rate_per_s=5.0 if 600 <= i < 610 else 50.0 + i % 3,
                p95=900.0 + i % 7 if 324 <= i < 330 else 100.0 + i % 7)
        found += [(i, a.feature, a.since) for a in sc.score_batch([w])]
    t = lambda i: (1_700_000_000 + 10 * i) * 1000  # noqa: E731
    assert found[0] == (300, "error_rate", t(300))
    late = [f for f in found if f[1] == "p95"]
    assert late and late[0][0] >= 324 and late[0][2] == t(300)
    assert found[-1][0] >= 600 and found[-1][2] == t(600)


def test_a_regression_over_few_requests_is_confirmed_by_its_slow_requests_in_a_row() -> None:
    # 39 requests a window: under 2 requests beyond the p95 in any one window, so no single
    # window says much; three windows in a row do (about 6 slow requests)
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    route: dict[str, Any] = {"scope": "route", "count": 39, "rate_per_s": 3.9}
    found = []
    for i in range(420):
        p95 = 300.0 if i >= 400 else 100.0 + i % 7
        found += [(i, a.feature) for a in sc.score_batch([win(i, "api GET /x", p95=p95, **route)])]
    assert found == [(402, "p95")]


def test_a_route_median_shows_a_regression_its_tail_hides() -> None:
    # the p95 of a route is noisy (its slowest few requests); its median quadruples
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    route: dict[str, Any] = {"scope": "route", "count": 45, "rate_per_s": 4.5}
    found = []
    for i in range(330):
        p50 = 40.0 + i % 3 if i >= 300 else 10.0 + i % 3
        p95 = 60.0 + 40 * (i % 4 == 0)
        found += [(i, a.feature) for a in sc.score_batch([win(
            i, "api GET /x", p50=p50, p95=p95, p99=p95, **route)])]
    assert found == [(300, "p50")]


def test_a_service_median_that_follows_its_route_mix_is_not_scored() -> None:
    # one window where the slow route is most of the traffic moves the service's median
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    found = []
    for i in range(320):
        found += [i for a in sc.score_batch([win(i, p50=37.0 if i == 300 else 5.0 + i % 3)])]
    assert found == []


def quiet_route(seed: int, bursts: dict[int, int], n: int = 2000, rate: float = 0.003
                ) -> list[tuple[int, str]]:
    """A route of ~12 requests a window, errors at ``rate`` plus ``bursts`` (window ->
    errors); the (window, feature) of every series anomaly the scorer raises on it."""
    rng = random.Random(seed)
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    found = []
    for i in range(n):
        count = rng.randint(9, 15)
        errors = bursts.get(i, sum(rng.random() < rate for _ in range(count)))
        w = win(i, series="shop GET /cart", scope="route", count=count, samples=count,
                rate_per_s=count / 10, error_rate=errors / count)
        found += [(i, a.feature) for a in sc.score_batch([w]) if a.detector == "series"]
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_error_burst_on_a_quiet_route_is_caught_in_its_third_window(seed: int) -> None:
    burst = dict.fromkeys(range(1500, 1508), 2)  # 2 of ~12 requests failing, 80 s long
    found = quiet_route(seed, burst)
    assert found and found[0] == (1502, "error_rate")  # 6 errors in a row: 30 s in
    assert all(i >= 1500 for i, _ in found)  # nothing before it
    assert quiet_route(seed, {}) == []  # the same route without it: no alarm in 2000
    assert quiet_route(seed, {}, rate=0.03) == []  # nor failing 3 % all along


def test_a_run_of_errors_is_rare_only_against_the_rate_before_it() -> None:
    run = None
    for k in range(3):
        run = error_run(run, 10_000 * k, 10, 2, 12, base=0.002)
    assert run is not None and run_q(run) > RUN_Q
    assert error_run(run, 50_000, 10, 2, 12, 0.002) == (50_000, 1, 2.0, 12.0, RATE_FLOOR)
    busy = None  # the same errors on a route that always fails 20 %: not rare
    for k in range(3):
        busy = error_run(busy, 10_000 * k, 10, 2, 12, base=0.2)
    assert busy is None
    one = error_run(None, 0, 10, 9, 12, base=0.002)
    assert one is not None and run_q(one) == 0.0  # one window: the calibrated score's job
    assert poisson_tail_q(3, 0.5) == pytest.approx(-math.log(1 - 0.9856123), rel=1e-4)


def test_a_run_in_progress_survives_a_snapshot() -> None:
    sc = WindowScorer(DetectionSettings())
    for i in range(200):
        errors = 2 if i >= 198 else 0
        sc.score_batch([win(i, series="shop GET /cart", scope="route", count=12, samples=12,
                            rate_per_s=1.2, error_rate=errors / 12)])
    assert sc.states["shop GET /cart"].runs[10][1:3] == (2, 4.0)
    again = WindowScorer(DetectionSettings())
    again.restore("shop GET /cart", sc.snapshot()["shop GET /cart"])
    assert again.states["shop GET /cart"].runs == sc.states["shop GET /cart"].runs


def test_a_lasting_rise_in_errors_is_news_once_not_every_cooldown() -> None:
    rng = random.Random(4)
    bursts = {i: sum(rng.random() < 0.4 for _ in range(12)) for i in range(1500, 2500)}
    found = quiet_route(4, bursts, n=2500)
    assert found and 1500 <= found[0][0] < 1506  # the rise is caught at once
    assert len(found) <= 3  # then it is the new normal: 1000 windows, not one alarm per 5 min


def test_an_error_run_reports_its_own_rate_against_the_band_of_its_base_rate() -> None:
    # each window's 2 of ~12 failing is within one window's band; the run is not, and its
    # evidence must say so: the run's rate above the highest its base rate gives
    rng = random.Random(1)
    sc = WindowScorer(DetectionSettings(champion={"multivariate": False}))
    events = []
    for i in range(1510):
        count = rng.randint(9, 15)
        errors = 2 if i >= 1500 else sum(rng.random() < 0.003 for _ in range(count))
        w = win(i, series="shop GET /cart", scope="route", count=count, samples=count,
                rate_per_s=count / 10, error_rate=errors / count)
        events += [a for a in sc.score_batch([w]) if a.feature == "error_rate"]
    (first, *_) = events
    assert first.observed > first.hi >= first.lo == 0.0
    assert first.expected < first.hi
