"""Alert evaluation in event time: watermarks, replay speed, anomaly filters, evidence."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import orjson
from manager_kit import Recorder, build_manager

from alerting.agents.evaluate_rules import evaluate, evaluate_tick
from alerting.evaluate import on_anomaly, on_tick
from alerting.inputs import SignalInput
from alerting.lifecycle import Alert, Evidence, Signal
from alerting.messages import alert_message
from alerting.rules import RuleSet
from alerting.watermark import Watermarks
from schemas.evidence import describe_anomaly, describe_value, sig2
from schemas.topics import internal
from schemas.windows import WindowStats

T0 = 1_700_000_000.0
NAMES = internal()
RULES = RuleSet.model_validate({"rules": [
    {"name": "Down", "kind": "absence", "select": {"window": "10s"}, "for": "60s",
     "severity": "critical"},
    {"name": "Errors", "kind": "threshold", "select": {"window": "10s"}, "field": "error_rate",
     "value": 0.2, "min_count": 5, "for": "20s", "keep_firing_for": "20s"},
    {"name": "Anom", "kind": "anomaly", "select": {"scope": "service"},
     "features": ["error_rate", "p95"], "severities": ["critical"], "direction": "up",
     "resolve_after": "2m"},
]})


def window(service: str, start: float, error_rate: float = 0.0) -> bytes:
    return WindowStats(series=service, service=service, scope="service", window_s=10,
                       start=datetime.fromtimestamp(start, tz=UTC),
                       end=datetime.fromtimestamp(start + 10, tz=UTC), count=50,
                       error_rate=error_rate).to_json()


def stream() -> list[tuple[int, bytes]]:
    """Ten minutes of 10 s windows from three services on two partitions: ``b`` is silent
    from minute 2 to minute 5, ``c`` has an error burst from minute 6 to 7."""
    out: list[tuple[int, bytes]] = []
    for k in range(60):
        t = T0 + 10 * k
        out.append((0, window("a", t)))
        if not 120 <= t - T0 < 300:
            out.append((1, window("b", t)))
        out.append((1, window("c", t, 0.5 if 360 <= t - T0 < 420 else 0.0)))
    return out


def replay(tick_every: int, wall_per_window: float) -> list[tuple[str, str, str, float]]:
    """Feed ``stream()`` through the worker's evaluation, ticking after every
    ``tick_every`` inputs; the wall clock moves ``wall_per_window`` per input."""
    table: dict[str, bytes] = {}
    wm = Watermarks(idle_s=30.0)
    sigs: list[tuple[str, str, str, float]] = []
    now = 0.0

    def take(msgs: list[object]) -> None:
        for m in msgs:
            if isinstance(m, SignalInput):
                s = m.signal
                sigs.append((s.status, s.rule, s.labels["service"], s.ts))

    for i, (p, raw) in enumerate(stream()):
        now += wall_per_window
        take(list(evaluate(RULES, table, NAMES, NAMES.windows, p, raw, now, wm)))
        if (i + 1) % tick_every == 0:
            for part in (0, 1):
                take(list(evaluate_tick(RULES, table, part, wm.fleet(now), 15.0)))
    return sorted(set(sigs), key=lambda s: (s[3], s[1], s[0]))


def test_watermarks_take_the_slowest_live_source_and_skip_idle_ones() -> None:
    wm = Watermarks(idle_s=30.0)
    a, b = ("logs", "a"), ("logs", "b")
    assert wm.fleet(now=0.0) is None
    wm.observe(0, a, T0 + 100, now=1.0)
    wm.observe(1, b, T0 + 50, now=1.0)
    wm.observe(1, b, T0 + 40, now=2.0)  # a late window never moves a watermark back
    assert wm.of(1, b) == T0 + 50 and wm.fleet(now=2.0) == T0 + 50
    wm.observe(0, a, T0 + 200, now=40.0)
    assert wm.live(now=40.0) == [(0, a)] and wm.fleet(now=40.0) == T0 + 200
    assert wm.fleet(now=100.0) == T0 + 200  # everyone idle: caught up with all it was sent


def test_a_source_whose_partition_waits_unread_is_behind_not_idle() -> None:
    """b's next window may wait unread in partition 1: b is behind, and holds the clock,
    until the worker has read the partition to its end (for ten times idle_s at most)."""
    unread = {1}
    wm = Watermarks(idle_s=30.0, behind=lambda p: p in unread)
    a, b = ("logs", "a"), ("logs", "b")
    wm.observe(1, b, T0 + 50, now=1.0)
    wm.observe(0, a, T0 + 400, now=40.0)
    assert wm.fleet(now=40.0) == T0 + 50
    unread.clear()  # partition 1 read to its end: nothing of b came
    assert wm.fleet(now=41.0) == T0 + 400
    unread.add(1)
    assert wm.fleet(now=42.0) == T0 + 50 and wm.fleet(now=1.0 + 300) == T0 + 400


def test_one_recorded_stream_at_1x_and_at_full_speed_raises_the_same_alerts() -> None:
    live = replay(tick_every=3, wall_per_window=10 / 3)  # 1x: a tick per 10 s of event time
    fast = replay(tick_every=10_000, wall_per_window=0.0001)  # full speed: no tick at all
    fired = [s for s in live if s[0] == "firing"]
    assert ("firing", "Down", "b", T0 + 120 + 60) in fired  # last data + for
    assert ("firing", "Errors", "c", T0 + 390) in fired  # the window completing 'for'
    assert {s[:3] for s in fired} == {("firing", "Down", "b"), ("firing", "Errors", "c")}
    assert fired == [s for s in fast if s[0] == "firing"]
    assert ("resolved", "Down", "b", T0 + 300) in fast  # the data came back


def test_a_partition_delivered_ahead_of_the_others_decides_nothing() -> None:
    """b's partition arrives whole before the one with a and c: when b's data comes back,
    their windows of the time b went silent are not there yet, so whether the fleet went
    on is not known; the tick decides once the watermark has passed it, and b's outage
    fires at the same event time as when the partitions interleave."""
    table: dict[str, bytes] = {}
    wm = Watermarks(idle_s=30.0)
    got: list[tuple[str, str, str, float]] = []
    alone = [(int(b'"b"' in raw), raw) for _, raw in stream()]  # b on 1, a and c on 0
    ordered = sorted(alone, key=lambda pr: -pr[0])  # all of partition 1, then 0
    for i, (p, raw) in enumerate(ordered):
        for m in evaluate(RULES, table, NAMES, NAMES.windows, p, raw, 1.0 + i / 1000, wm):
            if isinstance(m, SignalInput):
                got.append((m.signal.status, m.signal.rule, m.signal.labels["service"],
                            m.signal.ts))
    assert not [g for g in got if g[1] == "Down"]  # undecided while a's windows lag
    for part in (0, 1):
        for m in evaluate_tick(RULES, table, part, wm.fleet(2.0), 15.0):
            if isinstance(m, SignalInput):
                got.append((m.signal.status, m.signal.rule, m.signal.labels["service"],
                            m.signal.ts))
    down = [g for g in got if g[1] == "Down"]
    assert down == [("firing", "Down", "b", T0 + 180), ("resolved", "Down", "b", T0 + 300)]
    assert [g for g in replay(3, 10 / 3) if g[1] == "Down"] == down


def test_services_read_further_on_judge_no_other_service_silent() -> None:
    """A backlog read at full speed: the metrics, and ``a``'s logs partition, are 15
    minutes of event time further on than ``b``'s logs partition. The windows topic is keyed
    by series, so both services' windows share its partitions; ``b``'s log windows are
    still on their way, and nothing the others send proves them missing."""
    table: dict[str, bytes] = {}
    wm = Watermarks(idle_s=30.0)
    for k in range(100):
        t = T0 + 10 * k
        for svc in ("a", "b"):
            metric = WindowStats(series=f"{svc}/cpu", service=svc, scope="metric", name="cpu",
                                 window_s=10, start=datetime.fromtimestamp(t, tz=UTC),
                                 end=datetime.fromtimestamp(t + 10, tz=UTC), count=1)
            evaluate(RULES, table, NAMES, NAMES.windows, k % 2, metric.to_json(), 1.0, wm)
        evaluate(RULES, table, NAMES, NAMES.windows, k % 2, window("a", t), 1.0, wm)
        if k < 6:  # b's logs have got one minute in
            evaluate(RULES, table, NAMES, NAMES.windows, k % 2, window("b", t), 1.0, wm)
    assert wm.fleet(now=2.0) == T0 + 50  # b's last window read from partition 0
    for part in (0, 1):
        assert evaluate_tick(RULES, table, part, wm.fleet(now=2.0), 15.0) == []


def test_full_speed_replay_does_not_fire_absence_on_wall_clock_silence() -> None:
    table: dict[str, bytes] = {}
    wm = Watermarks(idle_s=30.0)
    for p, raw in stream()[:30]:
        evaluate(RULES, table, NAMES, NAMES.windows, p, raw, 1.0, wm)
    # an hour of wall clock passes with no input: the event-time watermark has not moved
    assert evaluate_tick(RULES, table, 0, wm.fleet(3601.0), 15.0) == []
    assert evaluate_tick(RULES, table, 1, wm.fleet(3601.0), 15.0) == []


def edge(caller: str, callee: str, start: float, failed: bool) -> bytes:
    return WindowStats(series=f"{caller}->{callee}", service=caller, scope="edge", name=callee,
                       window_s=10, start=datetime.fromtimestamp(start, tz=UTC),
                       end=datetime.fromtimestamp(start + 10, tz=UTC), count=5,
                       error_count=5 if failed else 0).to_json()


def test_a_silent_service_is_down_while_its_callers_go_on_calling_it() -> None:
    """a calls b every window; b is silent from minute 2 to minute 5 (``stream()``). If a
    goes on calling b and fails, b is down; if a stopped calling b (its requests took
    another path), b had nothing to log and nobody pages."""
    def downs(calls_while_silent: bool) -> list[tuple[str, float]]:
        table: dict[str, bytes] = {}
        wm = Watermarks(idle_s=30.0)
        got = []
        for i, (p, raw) in enumerate(stream()):
            msgs = list(evaluate(RULES, table, NAMES, NAMES.windows, p, raw, i / 100, wm))
            if raw.startswith(b'{"series":"a"'):
                t = orjson.loads(raw)
                start = datetime.fromisoformat(t["start"]).timestamp()
                silent = 120 <= start - T0 < 300
                if calls_while_silent or not silent:
                    msgs += evaluate(RULES, table, NAMES, NAMES.windows, 0,
                                     edge("a", "b", start, silent), i / 100, wm)
            for part in (0, 1):
                msgs += evaluate_tick(RULES, table, part, wm.fleet(i / 100), 15.0,
                                      wm.activity.went_on)
            got += [(m.signal.status, m.signal.ts) for m in msgs if isinstance(m, SignalInput)
                    and m.signal.rule == "Down" and m.signal.labels["service"] == "b"]
        return got

    assert downs(calls_while_silent=True) == [("firing", T0 + 180), ("resolved", T0 + 300)]
    assert downs(calls_while_silent=False) == []


def anomaly(**kw: object) -> dict[str, object]:
    return {"series": "checkout", "service": "checkout", "scope": "service", "ts": T0,
            "score": 0.999, "feature": "p95", "severity": "critical", "direction": "up",
            "value": 1234.0, "observed": 1234.0, "expected": 210.0, "lo": 180.0,
            "hi": 240.0, "id": "an-1", **kw}


def test_anomaly_rule_filters_feature_severity_direction() -> None:
    assert len(on_anomaly(RULES, None, anomaly(), T0)[1]) == 1
    assert on_anomaly(RULES, None, anomaly(feature="rate_per_s"), T0)[1] == []
    assert on_anomaly(RULES, None, anomaly(severity="warning"), T0)[1] == []
    assert on_anomaly(RULES, None, anomaly(direction="down"), T0)[1] == []
    # raw per-instance metric anomalies page nobody under a service-scope rule
    assert on_anomaly(RULES, None, anomaly(scope="metric", series="checkout/q"), T0)[1] == []


def test_anomaly_times_out_in_event_time_whether_or_not_a_tick_saw_it() -> None:
    st, _ = on_anomaly(RULES, None, anomaly(), T0)
    # no tick came (full speed): the next anomaly, 5 min later, ends the old episode first
    _, sigs = on_anomaly(RULES, st, anomaly(ts=T0 + 300), T0 + 1)
    assert [(s.status, s.ts) for s in sigs] == [("resolved", T0 + 120), ("firing", T0 + 300)]
    # a tick on the watermark resolves at the same event time
    _, sigs = on_tick(RULES, st, T0 + 140, settle_s=15.0)
    assert [(s.status, s.ts) for s in sigs] == [("resolved", T0 + 120)]
    _, sigs = on_tick(RULES, st, T0 + 130, settle_s=15.0)
    assert sigs == []  # not settled yet


def test_evidence_reads_at_a_glance() -> None:
    _, sigs = on_anomaly(RULES, None, anomaly(), T0)
    assert sigs[0].evidence.summary == "checkout p95 latency 1.2 s, normal 180-240 ms"
    assert describe_anomaly({"service": "catalog", "scope": "metric", "name": "queue_depth",
                             "feature": "mean", "observed": 1.0,
                             "expected": 0.0203334424226772}) == \
        "catalog queue_depth 1, normal about 0.02"
    assert describe_anomaly({"service": "api", "scope": "route", "route": "POST /pay",
                             "feature": "error_rate", "observed": 0.31, "lo": -0.01,
                             "hi": 0.024}) == "api POST /pay error rate 31%, normal 0-2.4%"
    assert describe_anomaly({"service": "api", "scope": "service", "feature": "rate_per_s",
                             "observed": 3.0, "lo": 120.0, "hi": 180.0}) == \
        "api request rate 3/s, normal 120-180/s"
    # an edge's anomaly names its callee only in its series, as the scorer stores it
    assert describe_anomaly({"series": "cart->inventory", "service": "cart", "scope": "edge",
                             "route": "", "feature": "p95", "observed": 59.7, "lo": 2.2,
                             "hi": 22.0}) == "cart -> inventory p95 latency 60 ms, normal 2.2-22 ms"
    # a value inside its own band (a run of slow windows decided it) reads against the
    # expected value: a range holding the value would contradict the page
    assert describe_anomaly({"series": "cart->inventory", "service": "cart", "scope": "edge",
                             "feature": "p50", "observed": 45.0, "lo": 20.0, "hi": 60.0,
                             "expected": 30.0}) == \
        "cart -> inventory p50 latency 45 ms, normal about 30 ms"
    assert describe_value("mean", 3 * 2**30, "heap_bytes") == "3 GiB"
    assert describe_value("mean", 0.25, "gc_pause_seconds") == "250 ms"
    assert sig2(math.nan) == "?" and sig2(0.0) == "0"


def test_pages_carry_the_evidence_first() -> None:
    _, sigs = on_anomaly(RULES, None, anomaly(), T0)
    s = sigs[0]
    a = Alert(fingerprint=s.fingerprint, rule=s.rule, labels=s.labels, starts_at=T0,
              updated_at=T0, trigger_ts=s.ts, evidence=s.evidence)
    msg = alert_message(a, "m1")
    assert msg.evidence[0] == "checkout p95 latency 1.2 s, normal 180-240 ms"
    assert any("p95 1.2 s" in line for line in msg.evidence[1:])
    plain = Alert(fingerprint="0f" * 8, rule="r", labels={}, starts_at=T0, updated_at=T0,
                  trigger_ts=T0, evidence=Evidence(field="error_rate", series=[(T0, 0.123)]))
    assert alert_message(plain, "m2").evidence == ["2023-11-14 22:13:20 UTC  error_rate 12%"]
    assert orjson.loads(s.model_dump_json())["evidence"]["summary"].startswith("checkout")


PAGER = """
rules:
  - {name: Errors, kind: threshold, field: error_rate, value: 0.5, severity: critical}
route:
  receiver: pager
  group_wait: 30s
  routes: [{matchers: ['severity="critical"'], receiver: pager, group_wait: 0s}]
receivers:
  - {name: pager, escalation: esc}
users:
  - {name: u0, slack: C0, channels: [slack]}
escalation_policies:
  - {name: esc, steps: [{notify: [{kind: user, name: u0}], wait: 60s}]}
"""


async def test_a_group_without_wait_pages_as_its_alert_arrives(tmp_path: Path) -> None:
    rec = Recorder()
    m, _, _ = build_manager(tmp_path, PAGER, deliverer=rec)
    for severity, now in (("critical", 1000.0), ("warning", 1001.0)):
        sig = Signal(status="firing", rule="Errors", ts=990.0,
                     labels={"alertname": "Errors", "service": "pay", "severity": severity})
        await m.handle(SignalInput(signal=sig), now)
    # the critical one paged with no tick; the warning waits for its group_wait
    assert [msg.severity for _, msg in rec.messages] == ["critical"]
    assert rec.messages[0][1].trigger_ts == 990.0  # event time, for the delay metric
