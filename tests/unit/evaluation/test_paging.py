"""Paging evaluation: the shipped rules through grouping and routing, in event time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerting.config import load_alerting
from evaluation.paging import score, simulate, totals, worst_first
from schemas.windows import WindowStats

SHIPPED = Path(__file__).resolve().parents[3] / "deploy/config/alerting.yaml"
T0 = 1_795_000_000.0  # a 10 s boundary
GRACE = 30.0


def win(service: str, start: float, error_rate: float = 0.01, count: int = 60,
        scope: str = "service", name: str = "", **kw: float) -> WindowStats:
    series = service if scope == "service" else f"{service}/{name}"
    return WindowStats(series=series, service=service, scope=scope,
                       name=name, window_s=10, start=datetime.fromtimestamp(start, tz=UTC),
                       end=datetime.fromtimestamp(start + 10, tz=UTC), count=count,
                       error_count=int(count * error_rate), error_rate=error_rate, **kw)


def fleet(minutes: int, burst: tuple[float, float] | None = None) -> list[WindowStats]:
    """Two services' 10 s windows; ``api`` fails half its requests inside ``burst``."""
    out = []
    for k in range(minutes * 6):
        t = T0 + 10 * k
        bad = burst is not None and burst[0] <= t - T0 < burst[1]
        out += [win("api", t, 0.5 if bad else 0.01), win("web", t)]
    return out


def pod_anomaly(ts: float) -> dict[str, Any]:
    """A raw per-pod gauge anomaly: a queue depth going 0 -> 2."""
    return {"ts": int(ts * 1000), "series": "api/queue_depth{pod=api-7f}", "service": "api",
            "scope": "metric", "name": "queue_depth", "feature": "mean", "score": 0.9999,
            "severity": "warning", "direction": "up", "observed": 2.0, "expected": 0.1,
            "lo": 0.0, "hi": 1.0, "id": "an-pod", "variant": "champion"}


def test_an_error_burst_pages_within_a_minute_with_the_shipped_rules() -> None:
    cfg = load_alerting(SHIPPED)
    sim = simulate(cfg, fleet(10, burst=(120, 240)), [], GRACE)
    label = {"id": "i1", "kind": "error_burst", "severity": "critical", "service": "api",
             "services": ["api"], "start_ms": int((T0 + 120) * 1000),
             "end_ms": int((T0 + 240) * 1000)}
    r = score(sim, [label], hours=10 / 60)
    inc = r["incidents"][0]
    assert r["criticals_paged_60s"] == 1 and inc["page_s"] is not None
    # two bad 10 s windows (20 s), the windows' grace (30 s): paged at once, group_wait 0
    assert inc["alert_s"] == 20.0 and inc["page_s"] == 50.0
    assert r["false_pages"] == 0 and r["false_alerts"] == 0
    assert {e.rule for e in sim.episodes} == {"HighErrorRate"}


def test_per_pod_gauge_anomalies_alert_no_one_and_quiet_runs_count_false_alerts(
        tmp_path: Path) -> None:
    cfg = load_alerting(SHIPPED)
    sim = simulate(cfg, fleet(10), [pod_anomaly(T0 + 300)], GRACE)
    r = score(sim, [], hours=10 / 60)
    assert sim.episodes == [] and r["notifications"] == 0  # evidence on the dashboard only
    # a rules file that does alert on them: each such alert in a quiet run is false
    gauges = tmp_path / "alerting.yaml"
    gauges.write_text(SHIPPED.read_text().replace("rules:\n", (
        "rules:\n  - name: GaugeAnomaly\n    kind: anomaly\n    severity: info\n"
        "    select: {scope: metric, service: \".*\", name: \".*\"}\n"), 1))
    sim = simulate(load_alerting(gauges), fleet(10), [pod_anomaly(T0 + 300)], GRACE)
    r = score(sim, [], hours=10 / 60)
    assert [e.rule for e in sim.episodes] == ["GaugeAnomaly"]
    assert r["pages"] == 0 and r["false_alerts"] == 1
    assert r["false_alerts_per_day"] == 144.0  # one in ten minutes


def test_a_silent_service_pages_on_event_time_not_on_the_wall_clock() -> None:
    cfg = load_alerting(SHIPPED)
    windows = [w for w in fleet(10) if not (w.service == "api" and 200 <= w.start.timestamp()
                                            - T0 < 400)]
    sim = simulate(cfg, windows, [], GRACE)
    down = [e for e in sim.episodes if e.rule == "ServiceDown"]
    assert [(e.labels["service"], e.trigger_ts - T0) for e in down] == [("api", 260.0)]
    # proven once the watermark passed last data + for + one window + settle (300 s), which
    # the window ending then shows when it closes (grace), at the first tick after it
    assert down[0].known_at - T0 == 200 + 60 + 10 + 30 + GRACE + 10
    # a replay that simply stops raises nothing: the clock stops with it
    assert [e.rule for e in simulate(cfg, fleet(3), [], GRACE).episodes] == []


def test_runs_sort_worst_first() -> None:
    base = {"criticals": 2, "false_pages": 0, "page_s_worst": 40.0, "false_alerts": 0,
            "alerts": 3, "pages": 2, "notifications": 2, "hours": 0.5, "incidents": [],
            "criticals_paged": 2}
    runs = [{**base, "criticals_paged_60s": 2}, {**base, "criticals_paged_60s": 1},
            {**base, "criticals_paged_60s": 2, "false_pages": 3}]
    ordered = sorted(runs, key=worst_first)
    assert [r["criticals_paged_60s"] for r in ordered] == [1, 2, 2]
    assert ordered[1]["false_pages"] == 3
    assert totals(runs)["false_pages_per_day"] == 48.0


def test_fault_cases_are_scored_by_pages_within_two_minutes() -> None:
    """``evaluation.nezha.pages``: a fault on ``api`` (its caller ``web`` affected too) whose
    errors start 40 s after the recorded injection pages within the 2-minute target; the
    call graph comes from the labels."""
    from evaluation.nezha import pages

    start_ms = int((T0 + 120) * 1000)
    labels = {"call_graph": {"web": {"api": 10}}, "incidents": [
        {"id": "F1", "kind": "exception", "root_cause_service": "api",
         "affected_services": ["api", "web"], "start_ms": start_ms - 40_000,
         "end_ms": start_ms + 140_000, "severity": "critical"}]}
    got = pages(labels, fleet(10, burst=(120, 240)), [], SHIPPED)
    assert got["faults"] == 1 and got["paged_2min"] == 1 and got["false_pages"] == 0
    assert got["paged_2min_by_kind"] == {"exception": "1/1"}
    late = {**labels, "incidents": [{**labels["incidents"][0], "start_ms": start_ms - 100_000}]}
    assert pages(late, fleet(10, burst=(120, 240)), [], SHIPPED)["paged_2min"] == 0


def test_a_service_silent_alone_is_down_but_a_fleet_wide_log_gap_pages_nobody() -> None:
    """ServiceDown (absence, 1 min) with the shipped rules: ``api`` silent while ``web``
    goes on is down; both silent while only the metrics go on (a log shipper outage, a
    recording with gaps) is not a page per service."""
    cfg = load_alerting(SHIPPED)

    def run(silent: set[str]) -> set[str]:
        out = []
        for k in range(60):
            t = T0 + 10 * k
            gap = 12 <= k < 30
            out += [win(s, t) for s in ("api", "web") if not (gap and s in silent)]
            out.append(win("api", t, scope="metric", name="cpu", mean=0.5))
        sim = simulate(cfg, out, [], GRACE)
        return {e.labels.get("service", "") for e in sim.episodes if e.rule == "ServiceDown"}

    assert run({"api"}) == {"api"}
    assert run({"api", "web"}) == set()


def test_a_service_that_sends_little_must_be_silent_longer_to_be_down() -> None:
    """``cron`` logs in one 10 s window of three: a 70 s pause is its normal (arrivals at
    its rate leave 80 s empty one time in 25); 6 minutes is an absence, after about
    160 s of silence (one window in three had data: 170 s in the long run).
    Logging 5 lines at once instead of one does not make it sooner: a burst of lines is
    one arrival."""
    cfg = load_alerting(SHIPPED)

    def run(pause: tuple[int, int], lines: int = 1) -> list[float]:
        out = []
        for k in range(150):
            t = T0 + 10 * k
            out.append(win("api", t))
            if k % 3 == 0 and not pause[0] <= k < pause[1]:
                out.append(win("cron", t, count=lines, error_rate=0.0))
        sim = simulate(cfg, out, [], GRACE)
        return [e.trigger_ts - T0 for e in sim.episodes if e.rule == "ServiceDown"]

    assert run((91, 97)) == [] == run((91, 97), lines=5)  # lines at 900 s and 990 s
    got = run((91, 130))  # from 910 s to 1290 s: no line
    assert len(got) == 1 and 910 + 150 <= got[0] < 910 + 240
    assert run((91, 100), lines=5) == []  # 90 s without its bursts: still its normal
    assert run((91, 130), lines=5) == got
