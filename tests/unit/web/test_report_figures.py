"""Report figures: KPIs from alert history, latency regressions with their cause, forecasts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from web.reports import forecast, kpis, regressions

T = datetime(2024, 5, 1, tzinfo=UTC)


def test_kpis_ignore_missing_acks_and_count_noise() -> None:
    hist = [{"trigger_at": T, "fired_at": T + timedelta(seconds=20),
             "acked_at": T + timedelta(seconds=80), "resolved_at": T + timedelta(seconds=320),
             "acked": 1, "flapping": 0},
            {"trigger_at": T, "fired_at": T + timedelta(seconds=40), "acked_at": None,
             "resolved_at": None, "acked": 0, "flapping": 0}]
    fb = [{"target_kind": "alert", "verdict": "false"}, {"target_kind": "alert",
                                                         "verdict": "true"},
          {"target_kind": "category", "verdict": "false"}]
    k = kpis(hist, fb)
    assert (k["alerts"], k["mttd_s"], k["mtta_s"], k["mttr_s"]) == (2, 30.0, 60.0, 300.0)
    assert k["noise_ratio"] == 0.5 and k["false_alert_rate"] == 0.5


def test_regressions_name_route_change_and_size() -> None:
    routes = [{"service": "checkout", "route": "/pay", "requests": 10, "p95_before": 100.0,
               "p95_after": 180.0},
              {"service": "search", "route": "/q", "requests": 10, "p95_before": 100.0,
               "p95_after": 105.0}]
    changes = [{"service": "checkout", "ts": "2024-05-01T10:00:00", "kind": "deploy",
                "description": "v42"}]
    (r,) = regressions(routes, changes)
    assert r["route"] == "/pay" and "+80%" in r["advice"] and "v42" in r["advice"]


def test_forecast_days_to_limit() -> None:
    usage = [{"service": "a", "bucket": T + timedelta(days=d), "peak_rate_per_s": 100.0 + 10 * d}
             for d in range(5)]
    (f,) = forecast(usage, limit_per_s=200.0)
    assert round(f["growth_per_day"]) == 10 and round(f["days_to_limit"]) == 6
