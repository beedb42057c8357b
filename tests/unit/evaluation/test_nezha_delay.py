"""Network delays injected into recorded traces (``evaluation.nezha_delay``): which spans
wait, which do not, and how faults are split into replays and judged."""

from __future__ import annotations

from typing import Any

from evaluation import nezha_delay as nd
from evaluation.paging import Episode, Sent, Simulation

GRAPH = {"gw": {"a": 10}, "a": {"b": 10, "c": 10}, "b": {"d": 10}}


def span(ts: int, service: str, dur: float, trace: str = "t", callee: str | None = None
         ) -> tuple[str, dict[str, Any]]:
    e: dict[str, Any] = {"ts": ts, "service": service, "trace_id": trace}
    if callee is None:
        e["http"] = {"duration_ms": dur}
    else:
        e["peer"] = {"service": callee, "duration_ms": dur}
    return "logs", e


def trace(t0: int, trace_id: str = "t") -> list[tuple[str, dict[str, Any]]]:
    """gw -> a -> b -> d, and a -> c after b returned."""
    return [span(t0, "gw", 100, trace_id), span(t0 + 1, "gw", 98, trace_id, "a"),
            span(t0 + 2, "a", 95, trace_id), span(t0 + 3, "a", 40, trace_id, "b"),
            span(t0 + 5, "b", 35, trace_id), span(t0 + 6, "b", 20, trace_id, "d"),
            span(t0 + 8, "d", 15, trace_id), span(t0 + 50, "a", 30, trace_id, "c"),
            span(t0 + 52, "c", 25, trace_id)]


def durations(events: list[tuple[str, dict[str, Any]]]) -> list[float]:
    return [float((e.get("http") or e["peer"])["duration_ms"]) for _, e in events]


def test_a_delayed_service_slows_its_calls_both_ways_and_every_span_that_waits() -> None:
    got = list(nd.inject(iter(trace(1_000)), [nd.Delay("b", 0, 10_000, 100)]))
    # a->b waits for b's late response and b's late request to d; b's own server span
    # waits for its call to d; gw and a wait for all of it; c and d are untouched
    assert durations(got) == [300, 298, 295, 240, 135, 120, 15, 30, 25]


def test_outside_its_window_nothing_changes_and_the_order_is_kept() -> None:
    events = trace(1_000, "early") + trace(20_000, "late") + [
        ("metrics", {"ts": 20_010, "service": "b", "name": "cpu", "value": 0.5})]
    got = list(nd.inject(iter(events), [nd.Delay("b", 15_000, 30_000, 100)]))
    assert [e["ts"] for _, e in got] == [e["ts"] for _, e in events]
    assert durations(got[:9]) == durations(events[:9])
    assert durations(got[9:18])[3] == 240
    assert got[18] == events[18]
    assert durations(events[9:18])[3] == 40  # the input was copied, not changed


def test_upstream_is_the_service_and_everything_that_reaches_it() -> None:
    assert nd.upstream("d", GRAPH) == {"d", "b", "a", "gw"}
    assert nd.upstream("gw", GRAPH) == {"gw"}
    assert nd.candidates(GRAPH) == ["a", "b", "c", "d"]


def test_faults_that_share_a_call_edge_go_to_different_replays() -> None:
    cases = [{"id": f"C{i}", "start_ms": i * 600_000, "root_cause_service": "x"}
             for i in range(4)]
    faults = nd.plan(cases, ["a", "b", "c", "d"], 50.0)
    assert [f.service for f in faults] == ["a", "b", "c", "d"]
    groups = nd.replays(faults, GRAPH)
    assert sorted(sorted(f.service for f in g) for g in groups) == [["a", "d"], ["b", "c"]]
    for g in groups:
        names = {f.service for f in g}
        assert not any(callee in names for s in names for callee in GRAPH.get(s, {}))
    # a second round moves each case's fault to another service, skipping the root
    again = nd.plan([{**c, "root_cause_service": "b"} for c in cases], ["a", "b", "c"], 50, 2)
    assert [f.service for f in again] == ["a", "c", "a", "c", "a", "c", "a", "c"]


def test_only_new_alerts_on_an_affected_service_count_and_others_are_false() -> None:
    case = {"id": "C1", "start_ms": 1_000_000, "end_ms": 1_180_000}
    fault = nd.Delay("b", 1_000_000, 1_180_000, 200)
    old = Episode("LatencyAnomaly", {"service": "gw"}, 1_010.0, 1_040.0)
    base = Simulation(episodes=[old])
    again = Episode("LatencyAnomaly", {"service": "gw"}, 1_010.0, 1_040.0)
    edge = Episode("LatencyAnomaly", {"service": "a", "scope": "edge", "name": "b"},
                   1_030.0, 1_060.0)
    stray = Episode("LatencyAnomaly", {"service": "c"}, 1_040.0, 1_070.0)
    sim = Simulation(episodes=[again, edge, stray],
                     sent=[Sent("oncall", 1_040.0, [again], True),
                           Sent("oncall", 1_070.0, [edge], True)])
    got = nd.score([fault], [case], base, sim, GRAPH)
    assert got["faults"][0]["page_s"] == 70.0 and got["paged_2min"] == 1
    assert got["alerts"] == 1 and got["false_alerts"] == 1
    late = Simulation(episodes=[edge], sent=[Sent("oncall", 1_130.0, [edge], True)])
    assert nd.score([fault], [case], base, late, GRAPH)["paged_2min"] == 0
