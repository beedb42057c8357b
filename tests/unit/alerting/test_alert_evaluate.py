"""Rule evaluation over windows, anomaly scores, template events and composites."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerting.evaluate import (
    SeriesState,
    TemplateSignal,
    on_anomaly,
    on_composites,
    on_template,
    on_tick,
    on_window,
)
from alerting.lifecycle import Signal, apply_signal
from alerting.rules import RuleSet
from schemas.windows import WindowStats

T0 = 1_700_000_040.0  # a minute boundary


def win(i: int, service: str = "api", **kw: float) -> WindowStats:
    start = datetime.fromtimestamp(T0 + 60 * i, tz=UTC)
    end = datetime.fromtimestamp(T0 + 60 * (i + 1), tz=UTC)
    fields = {"count": 100, **kw}
    return WindowStats(series=service, service=service, scope="service", window_s=60,
                       start=start, end=end, **fields)


def rules(*items: dict[str, object]) -> RuleSet:
    return RuleSet.model_validate({"rules": list(items)})


def run(rs: RuleSet, windows: list[WindowStats]) -> tuple[SeriesState | None, list[Signal]]:
    st: SeriesState | None = None
    out: list[Signal] = []
    for w in windows:
        st, sigs = on_window(rs, st, w, w.end.timestamp())
        out += sigs
    return st, out


THRESH = {"name": "Err", "kind": "threshold", "field": "error_rate", "value": 0.1,
          "for": "3m", "keep_firing_for": "2m", "min_count": 10,
          "annotations": {"summary": "{service} {value:.0%}"}}


def test_threshold_waits_for_duration_then_fires_with_evidence() -> None:
    rs = rules(THRESH)
    _, sigs = run(rs, [win(0, error_rate=0.2), win(1, error_rate=0.3)])
    assert sigs == []  # only 2 minutes so far
    _, sigs = run(rs, [win(i, error_rate=0.2 + i / 100) for i in range(3)])
    assert [s.status for s in sigs] == ["firing"]
    s = sigs[0]
    assert s.labels["alertname"] == "Err" and s.labels["service"] == "api"
    assert s.annotations["summary"] == "api 22%"
    assert [v for _, v in s.evidence.series] == pytest.approx([0.2, 0.21, 0.22])
    assert s.ts == T0 + 180


def test_threshold_blip_resets_pending_and_small_windows_ignored() -> None:
    rs = rules(THRESH)
    seq = [win(0, error_rate=0.5), win(1, error_rate=0.5), win(2, error_rate=0.0),
           win(3, error_rate=0.5), win(4, error_rate=0.5, count=5)]
    _, sigs = run(rs, seq)
    assert sigs == []


def test_a_window_with_too_few_events_does_not_resolve_a_firing_alert() -> None:
    # the tail of an error burst (2 events) says nothing about recovery; a full window does
    rs = rules(THRESH)
    seq = [win(i, error_rate=0.5) for i in range(3)]
    seq += [win(3, error_rate=0.0, count=2), win(6, error_rate=0.0, count=2)]
    _, sigs = run(rs, seq)
    assert [s.status for s in sigs] == ["firing"]
    _, sigs = run(rs, [*seq, win(7, error_rate=0.0), win(9, error_rate=0.0)])
    assert [(s.status, s.ts - T0) for s in sigs] == [("firing", 180), ("resolved", 600)]


def test_keep_firing_for_delays_resolve() -> None:
    rs = rules(THRESH)
    seq = [win(i, error_rate=0.5) for i in range(3)]
    seq += [win(3, error_rate=0.0), win(4, error_rate=0.0), win(5, error_rate=0.0)]
    _, sigs = run(rs, seq)
    assert [(s.status, s.ts - T0) for s in sigs] == [("firing", 180), ("resolved", 360)]


def test_rate_of_change_down() -> None:
    rs = rules({"name": "Drop", "kind": "rate_of_change", "field": "rate_per_s",
                "over": "5m", "percent": 50, "direction": "down"})
    seq = [win(i, rate_per_s=100.0) for i in range(6)] + [win(6, rate_per_s=30.0)]
    _, sigs = run(rs, seq)
    assert [s.status for s in sigs] == ["firing"]
    _, sigs = run(rs, [win(i, rate_per_s=100.0 + i) for i in range(8)])
    assert sigs == []


def test_absence_fires_on_tick_and_resolves_when_data_returns() -> None:
    rs = rules({"name": "Down", "kind": "absence", "for": "2m"})
    st, _ = run(rs, [win(0)])
    assert st is not None
    # the watermark (event time) must pass the last data + for + one window: a window
    # holding data could still be on its way until then
    st, sigs = on_tick(rs, st, T0 + 60 + 120 + 59)
    assert sigs == []
    st, sigs = on_tick(rs, st, T0 + 60 + 120 + 60)
    assert [s.status for s in sigs] == ["firing"]
    assert sigs[0].ts == T0 + 60 + 120  # the event time it became true, not the tick's
    st, again = on_tick(rs, st, T0 + 60 + 400)
    assert again == []  # fires once
    st, sigs = on_window(rs, st, win(5), T0 + 400)
    assert [s.status for s in sigs] == ["resolved"] and sigs[0].ts == T0 + 300


def test_anomaly_fires_and_times_out() -> None:
    rs = rules({"name": "Anom", "kind": "anomaly", "select": {"scope": "metric"},
                "min_score": 0.99, "resolve_after": "10m"})
    a = {"series": "api/cpu", "service": "api", "scope": "metric", "name": "cpu",
         "ts": T0, "score": 0.5, "value": 3.0, "expected": 1.0}
    st, sigs = on_anomaly(rs, None, a, T0)
    assert sigs == []
    st, sigs = on_anomaly(rs, st, {**a, "score": 0.999, "id": "an-1"}, T0)
    assert [s.status for s in sigs] == ["firing"] and sigs[0].labels["name"] == "cpu"
    assert sigs[0].evidence.anomaly_id == "an-1"  # a verdict on the alert counts for it
    st, sigs = on_tick(rs, st, T0 + 599)
    assert sigs == []
    st, sigs = on_tick(rs, st, T0 + 600)
    assert [s.status for s in sigs] == ["resolved"]
    assert sigs[0].fingerprint == on_anomaly(rs, None, {**a, "score": 1.0}, T0)[1][0].fingerprint


def test_template_rule_by_level_and_category() -> None:
    rs = rules({"name": "NewErr", "kind": "template", "events": ["new"], "levels": ["ERROR"]},
               {"name": "Sec", "kind": "template", "events": ["new", "spike"],
                "categories": ["security"], "labels": {"team": "security"}})
    ev = TemplateSignal(kind="new", service="auth", template_id="t1", ts=T0,
                        template="login failed for user <*>", level="ERROR",
                        category="security", sample_lines=["login failed for user bob"])
    _, sigs = on_template(rs, None, ev, T0)
    assert sorted(s.rule for s in sigs) == ["NewErr", "Sec"]
    sec = next(s for s in sigs if s.rule == "Sec")
    assert sec.labels["team"] == "security" and sec.labels["template_id"] == "t1"
    assert sec.evidence.log_lines == ["login failed for user bob"]
    _, sigs = on_template(rs, None, ev.model_copy(update={"level": "INFO",
                                                          "category": "perf"}), T0)
    assert sigs == []


def test_composite_needs_all_parts_for_same_service() -> None:
    rs = rules(THRESH, {"name": "Drop", "kind": "rate_of_change", "field": "rate_per_s",
                        "percent": 50},
               {"name": "Both", "kind": "composite", "all": ["Err", "Drop"]})
    err = Signal(status="firing", rule="Err", labels={"alertname": "Err", "service": "api"},
                 ts=T0)
    drop = Signal(status="firing", rule="Drop", labels={"alertname": "Drop", "service": "api"},
                  ts=T0 + 5)
    drop_b = drop.model_copy(update={"labels": {"alertname": "Drop", "service": "web"}})
    a_err = apply_signal(None, err, T0)
    a_drop_b = apply_signal(None, drop_b, T0)
    assert a_err and a_drop_b
    sigs = on_composites(rs, [a_err, a_drop_b], T0)
    assert all(s.status == "resolved" for s in sigs)
    a_drop = apply_signal(None, drop, T0 + 5)
    assert a_drop
    sigs = on_composites(rs, [a_err, a_drop, a_drop_b], T0 + 5)
    firing = [s for s in sigs if s.status == "firing"]
    assert len(firing) == 1 and firing[0].labels["service"] == "api"
    assert set(firing[0].evidence.related) == {a_err.fingerprint, a_drop.fingerprint}


def test_anomaly_and_template_times_are_read_as_the_milliseconds_their_topics_carry() -> None:
    """No unit guessing from magnitudes: ``ts`` is epoch ms on both topics, converted once;
    what is not a number is refused (the evaluate agent counts and logs it)."""
    from alerting.agents.evaluate_rules import anomaly_input, template_input

    doc = {"series": "api/cpu", "service": "api", "ts": 1_700_000_000_123, "score": 0.9}
    a = anomaly_input(doc)
    assert a is not None and a["ts"] == pytest.approx(1_700_000_000.123)
    assert anomaly_input({**doc, "ts": 5_000})["ts"] == 5.0  # type: ignore[index]
    with pytest.raises(ValueError, match="epoch milliseconds"):
        anomaly_input({**doc, "ts": "2026-01-01T00:00:00Z"})
    t = template_input({"ts": 1_700_000_060_000, "service": "api", "template_id": "t1",
                        "kind": "new", "details": '{"ts": 1}'})
    assert t.ts == 1_700_000_060.0


def test_replay_guard_refuses_a_second_copy_until_it_expires() -> None:
    from alerting.webhooks import ReplayGuard

    g = ReplayGuard(max_entries=3)
    assert g.first_time("a", until=100.0, now=0.0)
    assert not g.first_time("a", until=100.0, now=50.0)
    assert g.first_time("a", until=300.0, now=100.0)  # expired: a new request may reuse it
    for k in "bcd":
        assert g.first_time(k, until=1000.0, now=200.0)
    assert len(g._until) <= 3  # bounded: the oldest are forgotten first
