"""Grouping on constructed timelines: time, call graph, shared changes and templates."""

from __future__ import annotations

from incidents.grouping import GroupingConfig, GroupingState, assign, expire
from incidents.model import Signal

EDGES = {("web", "api"), ("api", "db")}


def sig(i: str, ts_s: float, service: str, **kw: object) -> Signal:
    return Signal(id=i, ts=int(ts_s * 1000), service=service, kind="anomaly", **kw)  # type: ignore[arg-type]


def place(signals: list[Signal], edges: set[tuple[str, str]] = EDGES,
          cfg: GroupingConfig | None = None) -> tuple[GroupingState, list[str]]:
    st = GroupingState()
    return st, [assign(st, s, edges, cfg)[0] for s in signals]


def test_a_cascade_along_the_call_graph_is_one_incident() -> None:
    st, ids = place([sig("1", 0, "db"), sig("2", 15, "api"), sig("3", 40, "web")])
    assert len(set(ids)) == 1
    assert st.incidents[ids[0]].services == ["db", "api", "web"]
    assert st.incidents[ids[0]].anomalies == 3


def test_unrelated_services_at_the_same_time_are_two_incidents() -> None:
    _, ids = place([sig("1", 0, "db"), sig("2", 5, "mail")])
    assert ids[0] != ids[1]


def test_callers_of_a_failing_dependency_in_its_first_window_are_one_incident() -> None:
    """Three callers of a database signal in the window the database fails, before the
    database's own signal: one incident, not three. Callers of one callee going bad a
    minute apart, with nothing in between, stay apart."""
    edges = {("cart", "db"), ("users", "db"), ("orders", "db")}
    st, ids = place([sig("1", 0, "cart"), sig("2", 0, "users"), sig("3", 5, "orders"),
                     sig("4", 0, "db")], edges)
    assert len(set(ids)) == 1
    assert sorted(st.incidents[ids[0]].services) == ["cart", "db", "orders", "users"]
    _, apart = place([sig("1", 0, "cart"), sig("2", 60, "users")], edges)
    assert apart[0] != apart[1]


def test_a_calls_anomaly_relates_through_the_service_it_calls() -> None:
    """A call's anomaly is about both its ends: gw's calls to web failing and, 30 s later,
    api's calls to db slowing are one incident, in either order (web calls api). Seen only
    from the callers, gw and api are two hops apart."""
    edges = {("gw", "web"), ("web", "api"), ("api", "db")}
    first = sig("1", 0, "gw", callee="web")
    then = sig("2", 30, "api", callee="db")
    for order in ([first, then], [then, first]):
        st, ids = place(order, edges)
        assert ids[0] == ids[1]
        assert sorted(st.incidents[ids[0]].callees) == ["db", "web"]
    # without the called ends, the same two signals are two incidents
    _, apart = place([sig("1", 0, "gw"), sig("2", 30, "api")], edges)
    assert apart[0] != apart[1]


def test_shared_change_or_template_relates_services_without_an_edge() -> None:
    _, ids = place([sig("1", 0, "db", change_ids=("db@1",)),
                    sig("2", 10, "mail", change_ids=("db@1",)),
                    sig("3", 20, "auth", template="t-42"),
                    sig("4", 30, "search", template="t-42")])
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]


def test_silence_longer_than_quiet_opens_a_new_incident_on_the_same_service() -> None:
    cfg = GroupingConfig(quiet_ms=120_000)
    _, ids = place([sig("1", 0, "db"), sig("2", 100, "db"), sig("3", 100 + 600, "db")],
                   cfg=cfg)
    assert ids[0] == ids[1] and ids[2] != ids[0]


def test_a_disturbance_that_went_on_through_the_silence_stays_one_incident() -> None:
    """An outage whose detectors go quiet in their cooldown, then report a new feature of
    the same services 3 minutes on: the same incident when the service was bad without a
    break since the incident's signals (``since``), a new one when it was calm in between
    or when nothing says (0)."""
    cfg = GroupingConfig(quiet_ms=120_000)
    first = [sig("1", 0, "db", since=0), sig("2", 10, "api", since=10_000)]
    _, ids = place([*first, sig("3", 200, "api", since=10_000)], cfg=cfg)
    assert ids[2] == ids[0]
    for since in (150_000, 0):  # calm after the incident's last signal; unknown
        _, ids = place([*first, sig("3", 200, "api", since=since)], cfg=cfg)
        assert ids[2] != ids[0]
    # going on since the incident but unrelated to it: a problem of its own
    _, ids = place([*first, sig("3", 200, "mail", since=5_000)], cfg=cfg)
    assert ids[2] != ids[0]
    # a live related incident takes it first: the rule bridges a silence, nothing more
    _, ids = place([*first, sig("3", 150, "web", since=150_000),
                    sig("4", 200, "api", since=10_000)], cfg=cfg)
    assert ids[2] != ids[0] and ids[3] == ids[2]


def test_two_problems_ten_minutes_apart_are_never_merged() -> None:
    signals = [sig(str(k), k * 20, "db") for k in range(6)]  # 0..100 s
    signals += [sig(f"b{k}", 700 + k * 20, "api") for k in range(6)]  # 10 min later
    _, ids = place(signals)
    assert len(set(ids[:6])) == 1 and len(set(ids[6:])) == 1 and ids[0] != ids[6]


def test_a_redelivered_signal_changes_nothing() -> None:
    st = GroupingState()
    a = sig("1", 0, "db")
    first = assign(st, a, EDGES)
    version = st.incidents[first[0]].version
    again = assign(st, a, EDGES)
    assert again == (first[0], False)
    assert st.incidents[first[0]].version == version
    assert st.incidents[first[0]].anomalies == 1


def test_a_resolved_incident_takes_no_more_signals() -> None:
    st = GroupingState()
    iid, _ = assign(st, sig("1", 0, "db"), EDGES)
    st.incidents[iid].status = "resolved"
    iid2, opened = assign(st, sig("2", 10, "db"), EDGES)
    assert opened and iid2 != iid


def test_severity_is_the_worst_signal_and_quiet_incidents_expire() -> None:
    st = GroupingState()
    iid, _ = assign(st, sig("1", 0, "db", severity="warning"), EDGES)
    assign(st, sig("2", 5, "db", severity="critical"), EDGES)
    assert st.incidents[iid].severity == "critical"
    assert expire(st, watermark_ms=10_000_000, keep_ms=60_000) == [iid]
    assert st.incidents == {} and st.placed == {}
