"""Lifecycle, routing, grouping, silences and inhibition on a timeline (``now`` is a parameter)."""

from __future__ import annotations

from datetime import UTC, datetime

from alerting.grouping import add_alert, due, flush
from alerting.inhibit import CallGraph, DependencyInhibit, InhibitRule, suppression_reasons
from alerting.lifecycle import (
    Alert,
    AlertState,
    FlapConfig,
    Signal,
    acknowledge,
    apply_signal,
    fingerprint,
    refresh_flapping,
)
from alerting.routing import Route, match_routes
from alerting.silences import Silence, Weekly, parse_matcher, suppressing

T = 1_700_000_000.0


def sig(status: str = "firing", **labels: str) -> Signal:
    lab = {"alertname": "Err", "service": "api", "severity": "high", **labels}
    return Signal(status=status, rule=lab["alertname"], labels=lab, ts=T - 5)


def alert(**labels: str) -> Alert:
    a = apply_signal(None, sig(**labels), T)
    assert a is not None
    return a


def test_fingerprint_dedup_ack_resolve() -> None:
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    a = alert()
    again = apply_signal(a, sig(), T + 60)
    assert again is not None and again.starts_at == T and again.updated_at == T + 60
    acked = acknowledge(a, "alice", T + 70)
    assert acked.state is AlertState.ACKNOWLEDGED and acked.acked_by == "alice"
    assert apply_signal(acked, sig(), T + 80).state is AlertState.ACKNOWLEDGED  # type: ignore[union-attr]
    done = apply_signal(acked, sig("resolved"), T + 90)
    assert done is not None and done.state is AlertState.RESOLVED and done.ends_at == T + 90
    assert apply_signal(None, sig("resolved"), T) is None
    assert len(a.code) == 6 and a.code.isupper()


def test_flapping_has_hysteresis() -> None:
    cfg = FlapConfig(window_s=600, high=4, low=1)
    a: Alert | None = None
    flags = []
    for i in range(6):  # fire/resolve every 30 s
        a = apply_signal(a, sig("firing" if i % 2 == 0 else "resolved"), T + 30 * i, cfg)
        assert a is not None
        flags.append(a.flapping)
    assert flags == [False, False, False, True, True, True]
    assert a is not None
    assert refresh_flapping(a, T + 300, cfg).flapping  # still 6 changes in the window
    assert not refresh_flapping(a, T + 150 + 600, cfg).flapping


ROOT = Route.model_validate({
    "receiver": "default", "group_by": ["alertname"], "group_wait": "30s",
    "group_interval": "5m", "repeat_interval": "1h",
    "routes": [
        {"matchers": ['severity=~"critical|high"'], "receiver": "pager", "continue": True,
         "group_wait": "0s"},
        {"matchers": ["team=payments"], "receiver": "payments",
         "routes": [{"matchers": ["service=checkout"], "receiver": "checkout",
                     "group_by": ["alertname", "service"]}]},
    ]})


def test_routing_tree_continue_and_inheritance() -> None:
    m = match_routes(ROOT, {"severity": "high", "team": "payments", "service": "checkout"})
    assert [x.receiver for x in m] == ["pager", "checkout"]
    assert m[0].group_wait == 0 and m[1].group_wait == 30 and m[1].repeat_interval == 3600
    assert m[1].group_by == ["alertname", "service"]
    assert [x.receiver for x in match_routes(ROOT, {"severity": "info"})] == ["default"]
    assert [x.receiver for x in match_routes(ROOT, {"team": "payments"})] == ["payments"]


def test_group_wait_interval_repeat_and_resolve() -> None:
    route = match_routes(ROOT, {"severity": "info"})[0]
    a, b = alert(severity="info"), alert(severity="info", service="web")
    g = add_alert(None, route, a, T)
    g = add_alert(g, route, b, T + 10)
    assert not due(g, T + 29) and due(g, T + 30)
    g2, n = flush(g, T + 30, {})
    assert n is not None and len(n.firing) == 2 and n.trigger_ts == T - 5 and g2 is not None
    g3, n = flush(g2, T + 330, {})  # next interval, nothing new
    assert n is None and g3 is not None
    g4, n = flush(g3, T + 30 + 3600, {})  # repeat interval
    assert n is not None and n.repeat
    a_res = apply_signal(a, sig("resolved", severity="info"), T + 3700)
    assert a_res is not None
    g5, n = flush(add_alert(g4, route, a_res, T + 3700), T + 3930, {})
    assert n is not None and [x.fingerprint for x in n.resolved] == [a.fingerprint]
    assert g5 is not None and list(g5.alerts) == [b.fingerprint]


def test_acknowledged_alerts_do_not_repeat() -> None:
    route = match_routes(ROOT, {"severity": "info"})[0]
    a = alert(severity="info")
    g, _ = flush(add_alert(None, route, a, T), T + 30, {})
    assert g is not None
    g = add_alert(g, route, acknowledge(a, "bob", T + 60), T + 60)
    g, n = flush(g, T + 30 + 7200, {})
    assert n is None and g is not None


def test_resolve_is_never_lost_when_silenced_in_between() -> None:
    route = match_routes(ROOT, {"severity": "info"})[0]
    a = alert(severity="info")
    g, n = flush(add_alert(None, route, a, T), T + 30, {})
    assert n is not None and g is not None
    g, n = flush(g, T + 330, {a.fingerprint: "silenced by s1"})
    assert n is None and g is not None  # muted: no repeat, but the receiver still owes a resolve
    res = apply_signal(a, sig("resolved", severity="info"), T + 400)
    assert res is not None
    g2, n = flush(add_alert(g, route, res, T + 400), T + 630, {a.fingerprint: "x"})
    assert n is not None and [x.fingerprint for x in n.resolved] == [a.fingerprint]
    assert g2 is None  # group empty
    # an alert silenced from the start never pages and its resolve is not sent either
    c = alert(severity="info", service="quiet")
    g, n = flush(add_alert(None, route, c, T), T + 30, {c.fingerprint: "silenced by s1"})
    assert n is None and g is not None
    res_c = apply_signal(c, sig("resolved", severity="info", service="quiet"), T + 40)
    assert res_c is not None
    _, n = flush(add_alert(g, route, res_c, T + 40), T + 330, {})
    assert n is None


def test_suppressed_alerts_listed_with_reason() -> None:
    route = match_routes(ROOT, {"severity": "info"})[0]
    a, b = alert(severity="info"), alert(severity="info", service="web")
    g = add_alert(add_alert(None, route, a, T), route, b, T)
    _, n = flush(g, T + 30, {b.fingerprint: "silenced by s9"})
    assert n is not None and [x.fingerprint for x in n.firing] == [a.fingerprint]
    assert [(s.fingerprint, s.reason) for s in n.suppressed] == [(b.fingerprint, "silenced by s9")]


def test_matchers_and_silence_expiry() -> None:
    labels = {"service": "api-eu", "severity": "high"}
    assert parse_matcher('service=~"api-.*"').matches(labels)
    assert not parse_matcher("service!~api-.*").matches(labels)
    assert parse_matcher("severity!=low").matches(labels)
    s = Silence(id="s1", matchers=["service=~api-.*"], starts_at=T, ends_at=T + 3600)
    assert not s.mutes(labels, T - 1) and s.mutes(labels, T + 10) and not s.mutes(labels, T + 3600)
    assert suppressing(s, [alert(service="api-eu"), alert(service="web")], T + 5)[0].labels[
        "service"] == "api-eu"


def test_recurring_sunday_window_in_timezone() -> None:
    w = Weekly(days=["sun"], start="02:00", end="04:00", tz="Europe/Paris")
    s = Silence(id="maint", matchers=["service=db"], starts_at=0, recurring=w)
    sun_0230_paris = datetime(2025, 1, 5, 1, 30, tzinfo=UTC).timestamp()  # CET = UTC+1
    assert s.mutes({"service": "db"}, sun_0230_paris)
    assert not s.mutes({"service": "db"}, sun_0230_paris + 2 * 3600)
    assert not s.mutes({"service": "db"}, sun_0230_paris - 86400)  # Saturday
    summer = datetime(2025, 7, 6, 0, 30, tzinfo=UTC).timestamp()  # 02:30 CEST
    assert s.mutes({"service": "db"}, summer)
    night = Weekly(days=["fri"], start="22:00", end="02:00", tz="UTC")
    assert night.contains(datetime(2025, 1, 4, 1, 0, tzinfo=UTC))  # Saturday 01:00


def test_inhibition_service_down_and_upstream_outage() -> None:
    down = alert(alertname="ServiceDown", service="db", category="outage")
    route_alert = alert(service="db", scope="route")
    other_route = alert(service="web", scope="route")
    caller = alert(service="api")
    callers_caller = alert(service="edge")
    unrelated = alert(service="batch")
    rules = [InhibitRule.model_validate({"source_matchers": ["alertname=ServiceDown"],
                                         "target_matchers": ["scope=route"],
                                         "equal": ["service"]})]
    graph = CallGraph()
    graph.add_call("api", "db", T)
    graph.add_call("edge", "api", T)
    graph.add_call("batch", "db", T - 3 * 86400)  # an old edge
    why = suppression_reasons([down, route_alert, other_route, caller, callers_caller,
                               unrelated], [], rules, T, DependencyInhibit(), graph)
    assert "ServiceDown" in why[route_alert.fingerprint]
    assert "upstream db is down" in why[caller.fingerprint]
    assert "2 hop" in why[callers_caller.fingerprint]
    assert set(why) == {route_alert.fingerprint, caller.fingerprint,
                        callers_caller.fingerprint}
