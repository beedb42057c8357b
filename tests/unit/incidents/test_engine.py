"""The engine on a constructed timeline: evidence on time, state restored, actions, metrics,
postmortem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from incidents.engine import IncidentEngine, signal_from_anomaly
from incidents.evidence import pack_lines
from incidents.metrics import incident_metrics
from incidents.model import IncidentError, Signal, apply_action
from incidents.postmortem import markdown, to_html

T0 = 1_700_000_000_000


class Tel:
    """Telemetry of a small fleet: api -> db, db starts throwing at T0."""

    def __init__(self) -> None:
        self.reads = 0

    def pattern_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        self.reads += 1
        rows = []
        for b in range(since_ms // 60_000, until_ms // 60_000 + 1):
            bad = b * 60_000 >= T0 - 60_000
            rows += [{"bucket": b, "service": "api", "pattern": "H:/x:200", "n": 100},
                     {"bucket": b, "service": "api", "pattern": "P:db:q:1", "n": 100,
                      "callee": "db"},
                     {"bucket": b, "service": "db", "pattern": "T:ok:INFO", "n": 100}]
            if bad:
                rows += [{"bucket": b, "service": "api", "pattern": "H:/x:500", "n": 30},
                         {"bucket": b, "service": "db", "pattern": "T:pool empty:ERROR",
                          "n": 30}]
        return rows

    def resource_rows(self, since_ms: int, until_ms: int, regex: str
                      ) -> Sequence[Mapping[str, Any]]:
        return []

    def change_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        return [{"id": "chg-7", "ts": T0 - 300_000, "service": "db", "kind": "config",
                 "description": "pool size 10"}]

    def samples(self, service: str, since_ms: int, until_ms: int) -> list[str]:
        return [f"{service}: pool empty after 5000 ms"]

    def users_affected(self, services: Sequence[str], since_ms: int, until_ms: int) -> int:
        return 3 * len(services)


def anomaly(i: str, ts: int, service: str) -> dict[str, Any]:
    return {"id": i, "ts": ts, "service": service, "feature": "error_rate", "observed": 0.3,
            "expected": 0.01, "severity": "critical", "series": f"{service}|error_rate"}


def test_evidence_is_built_30s_after_the_first_signal_and_refreshed_for_3_minutes() -> None:
    eng = IncidentEngine()
    eng.edges = {("api", "db")}
    tel = Tel()
    inc = eng.on_signal(signal_from_anomaly(anomaly("a1", T0, "api")), wall_ms=0)
    assert inc is not None
    eng.on_signal(signal_from_anomaly(anomaly("a2", T0 + 10_000, "db")), wall_ms=0)
    assert eng.advance(T0 + 29_000, tel) == []
    built = eng.advance(T0 + 31_000, tel)
    assert len(built) == 1 and built[0].evidence_ms == T0 + 30_000
    assert built[0].root_cause[0] == "db"
    assert built[0].users_affected == 6  # read for the incident's services (api, db)
    assert built[0].suspect_changes == ["chg-7"]
    lines = pack_lines(built[0])
    assert lines[0].startswith("1. db") and "pool empty" in lines[0]
    assert any("pool empty after" in line for line in lines)
    reads = tel.reads
    eng.advance(T0 + 600_000, tel)
    # refreshed at +60 s ... +180 s (every 30 s), then settled
    assert tel.reads - reads == 5
    eng.advance(T0 + 900_000, tel)
    assert tel.reads - reads == 5


class LaterNoise(Tel):
    """As ``Tel``, and from T0 + 20 minutes on, a new error in ``search`` (another problem,
    long after the incident's window)."""

    def __init__(self) -> None:
        super().__init__()
        self.untils: list[int] = []

    def pattern_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        self.untils.append(until_ms)
        rows = list(super().pattern_rows(since_ms, until_ms))
        for b in range(since_ms // 60_000, until_ms // 60_000 + 1):
            rows.append({"bucket": b, "service": "search", "pattern": "T:ok:INFO", "n": 100})
            if b * 60_000 >= T0 + 1_200_000:
                rows.append({"bucket": b, "service": "search", "pattern": "T:oom:ERROR",
                             "n": 900})
        return rows


def test_a_fast_replay_reads_the_window_a_live_worker_reads_once_the_store_holds_it() -> None:
    """Anomalies replayed at full speed run hours ahead of the store's inserts and of the
    timer: the pack is still built at the event times it falls due (never over the hours
    that followed), the first and the latest of them, and waits for the store."""
    eng = IncidentEngine()
    eng.edges = {("api", "db")}
    tel = LaterNoise()
    inc = eng.on_signal(signal_from_anomaly(anomaly("a1", T0, "api")), wall_ms=1)
    assert inc is not None
    eng.on_signal(signal_from_anomaly(anomaly("a9", T0 + 3_600_000, "web")), wall_ms=2)
    # the store holds only the first 20 s after the first signal: nothing is due yet
    assert eng.tick(3, tel, ready_ms=T0 + 20_000) == [] and tel.untils == []
    (built,) = eng.tick(4, tel, ready_ms=None)
    assert built.id == inc.id
    assert built.evidence_ms == T0 + 30_000 and built.evidence_updated_ms == T0 + 180_000
    assert tel.untils == [T0 + 30_001, T0 + 180_001]  # never past the pack's time
    assert built.root_cause[0] == "db"
    assert not any("oom" in line for s in built.suspects for line in s.evidence)
    assert eng.tick(5, tel) == [] and len(tel.untils) == 2  # settled: no more packs


def test_a_quiet_incident_gets_its_evidence_by_wall_time() -> None:
    eng = IncidentEngine()
    eng.on_signal(signal_from_anomaly(anomaly("a1", T0, "db")), wall_ms=5_000_000)
    assert eng.tick(5_010_000, Tel()) == []
    built = eng.tick(5_031_000, Tel())
    assert built and built[0].evidence_wall_ms == 5_031_000


def test_state_survives_a_restart_through_the_stored_documents() -> None:
    eng = IncidentEngine()
    inc = eng.on_signal(signal_from_anomaly(anomaly("a1", T0, "db")), wall_ms=0)
    assert inc is not None
    docs = [inc.model_dump(mode="json")]
    again = IncidentEngine()
    assert again.restore(docs) == 1
    # the redelivered anomaly is not counted twice; a new one joins the same incident
    assert again.on_signal(signal_from_anomaly(anomaly("a1", T0, "db")), 0) is None
    joined = again.on_signal(signal_from_anomaly(anomaly("a3", T0 + 20_000, "db")), 0)
    assert joined is not None and joined.id == inc.id and joined.anomalies == 2


def test_minor_signals_open_nothing() -> None:
    eng = IncidentEngine()
    info = Signal(id="x", ts=T0, service="db", kind="anomaly", severity="info")
    assert eng.on_signal(info, 0) is None


def test_the_state_machine_and_the_metrics_and_the_postmortem() -> None:
    eng = IncidentEngine()
    inc = eng.on_signal(signal_from_anomaly(anomaly("a1", T0, "db")), wall_ms=0)
    assert inc is not None
    inc = eng.advance(T0 + 31_000, Tel())[0]
    inc = apply_action(inc, "ack", "ana", T0 + 120_000)
    assert inc.owner == "ana"
    with pytest.raises(IncidentError):
        apply_action(inc, "ack", "bob", T0 + 130_000)
    inc = apply_action(inc, "note", "ana", T0 + 150_000, "raised the pool to 50")
    inc = apply_action(inc, "resolve", "ana", T0 + 600_000)
    with pytest.raises(IncidentError):
        apply_action(inc, "mitigate", "ana", T0 + 700_000)
    m = incident_metrics([inc.model_dump()])
    assert (m["overall"]["mttd_s"], m["overall"]["mtta_s"], m["overall"]["mttr_s"]) == (
        30.0, 120.0, 600.0)
    assert list(m["weekly"]) == ["2023-W46"] and list(m["teams"]) == ["(none)"]
    md = markdown(inc.model_dump())
    for head in ("## Summary", "## Impact", "## Timeline", "## Root cause and evidence",
                 "## Actions taken", "## Follow-ups"):
        assert head in md
    assert "raised the pool to 50" in md and "1. db" in md
    page = to_html({**inc.model_dump(), "title": "<script>x</script>"})
    assert "<script>x" not in page and "&lt;script&gt;" in page


def test_an_alert_finds_the_open_incident_of_its_service_and_time() -> None:
    eng = IncidentEngine()
    eng.edges = {("api", "db")}
    inc = eng.on_signal(signal_from_anomaly(anomaly("a1", T0, "api")), wall_ms=0)
    assert inc is not None
    eng.on_signal(signal_from_anomaly(anomaly("a2", T0 + 10_000, "db")), wall_ms=0)
    quiet = eng.s.grouping.quiet_ms
    assert eng.incident_for("db", T0 + 20_000) == inc.id
    assert eng.incident_for("api", T0 + 10_000 + quiet) == inc.id  # until it goes quiet
    assert eng.incident_for("api", T0 + 10_001 + quiet) is None
    assert eng.incident_for("api", T0 - 1) is None  # before its first signal
    assert eng.incident_for("web", T0 + 20_000) is None  # not one of its services
    eng.on_action(inc, "resolve", "ana", 0)
    assert eng.incident_for("db", T0 + 20_000) is None  # resolved: a new problem


class DelayTel(Tel):
    """A network delay on ``inventory``: its own logs see nothing; ``cart``, which calls it,
    logs a surge of warnings while it waits."""

    def pattern_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        rows = []
        for b in range(since_ms // 60_000, until_ms // 60_000 + 1):
            bad = b * 60_000 >= T0 - 60_000
            rows += [{"bucket": b, "service": "cart", "pattern": "H:/cart:200", "n": 100},
                     {"bucket": b, "service": "cart", "pattern": "P:inventory:get:1",
                      "n": 100, "callee": "inventory"},
                     {"bucket": b, "service": "cart", "pattern": "T:slow call:WARN",
                      "n": 40 if bad else 1},
                     {"bucket": b, "service": "inventory", "pattern": "H:/stock:200",
                      "n": 100},
                     {"bucket": b, "service": "search", "pattern": "H:/q:200", "n": 100}]
        return rows

    def change_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        return []


def test_a_delayed_service_is_named_by_its_callers_slower_calls() -> None:
    def first(contributing: dict[str, float]) -> tuple[str, list[str]]:
        eng = IncidentEngine()
        eng.edges = {("cart", "inventory")}
        a = {"id": "a1", "ts": T0, "service": "cart", "scope": "route", "feature": "p95",
             "observed": 310.0, "expected": 45.0, "severity": "warning",
             "series": "cart GET /cart", "contributing": contributing}
        eng.on_signal(signal_from_anomaly(a), wall_ms=0)
        (inc,) = eng.advance(T0 + 31_000, DelayTel())
        return inc.root_cause[0], inc.suspects[0].evidence
    # the detectors found cart's calls to inventory slower as well: inventory, whose own
    # logs are normal, takes its caller's symptoms and ranks first; cart is its victim
    root, evidence = first({"p95": 35.1, "cart->inventory:p95": 0.9998})
    assert root == "inventory"
    assert "callers see it slow: cart" in evidence
    # without that evidence the loudest caller is blamed
    assert first({"p95": 35.1})[0] == "cart"


def test_the_evidence_says_how_much_slower_the_calls_are() -> None:
    """The edge's own latency anomaly: the pack quotes it with its unit and normal range,
    as a page does."""
    eng = IncidentEngine()
    eng.edges = {("cart", "inventory")}
    edge = {"id": "e1", "ts": T0, "service": "cart", "scope": "edge", "feature": "p95",
            "series": "cart->inventory", "observed": 312.0, "expected": 41.0, "lo": 28.0,
            "hi": 57.0, "score": 0.9999999, "severity": "warning", "direction": "up"}
    eng.on_signal(signal_from_anomaly(edge), wall_ms=0)
    (inc,) = eng.advance(T0 + 31_000, DelayTel())
    assert inc.root_cause[0] == "inventory"
    assert "callers see it slow: cart (p95 latency 310 ms, normal 28-57 ms)" in \
        inc.suspects[0].evidence
    assert inc.slow_found["cart->inventory"].z == 5.2
