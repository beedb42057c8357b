"""Pattern counts (windows, baselines without earlier incidents) and the leave-one-out
knob choice of the evaluation, on constructed data."""

from __future__ import annotations

from collections import Counter

from evaluation.rca import Case, Features, Replay, Truth, evaluate, grouping, sequential
from incidents.patterns import PatternCounts, pattern_of


def test_patterns_of_the_three_kinds_of_line() -> None:
    assert pattern_of({"level": "info", "http": {"route": "/a", "status": 503}}) == "H:/a:503"
    assert pattern_of({"level": "INFO", "peer": {"service": "b", "operation": "op",
                                                 "ok": True}}) == "P:b:op:1"
    assert pattern_of({"level": "warn", "template_id": "t9", "logger": "L"}) == "T:t9:WARN"
    # a logger that names a source line is the statement itself, whatever was mined
    assert pattern_of({"level": "warn", "template_id": "t9", "logger": "L#12"}) == "T:L#12:WARN"


def test_a_replay_counts_the_templates_the_worker_mines_or_the_statement() -> None:
    """A replay categorises its lines as the worker does, so the evaluation ranks from the
    patterns the store holds: one statement whose lines carry payloads is one pattern; lines
    without a source location are counted by their mined template."""
    rp = Replay()
    for k in range(40):
        t = 1_700_000_000_000 + k * 1000
        rp.feed("logwarden.logs.v1", {"ts": t, "service": "s", "level": "INFO",
                                      "logger": "o.Svc#72",
                                      "message": f"[get][trip: Trip(id={k * 7919}, x={k})]"})
        rp.feed("logwarden.logs.v1", {"ts": t, "service": "s", "level": "INFO",
                                      "logger": "svc.app", "message": f"user u{k} logged in"})
    got = rp.counts.window(0, 1 << 62)["s"]
    assert got["T:o.Svc#72:INFO"] == 40
    mined = [p for p in got if p != "T:o.Svc#72:INFO"]
    assert len(mined) == 1 and got[mined[0]] == 40 and mined[0] != "T:svc.app:INFO"


def test_the_baseline_leaves_out_a_services_earlier_incident() -> None:
    pc = PatternCounts()
    for minute in range(10):
        pc.add(minute * 60_000, "db", "T:ok:INFO", 10)
        pc.add(minute * 60_000, "api", "H:/x:200", 10)
    pc.add(5 * 60_000, "db", "T:boom:ERROR", 50)
    full = pc.baseline(0, 600_000)
    assert full["db"]["T:boom:ERROR"] == 50
    cut = pc.baseline(0, 600_000, {"db": [(300_000, 360_000)]})
    assert cut["db"]["T:boom:ERROR"] == 0 and cut["db"]["T:ok:INFO"] == 90
    assert cut["api"]["H:/x:200"] == 100  # other services keep everything
    pc.prune(300_000)
    assert sum(pc.window(0, 600_000)["api"].values()) == 50


def test_overlapping_exclusions_leave_each_minute_once() -> None:
    """A service named by many incidents: spans that overlap must not subtract a minute
    twice (that emptied its baseline, and it then looked new in every incident)."""
    pc = PatternCounts()
    for minute in range(100):
        pc.add(minute * 60_000, "db", "T:ok:INFO", 10)
    spans = [(m * 60_000, (m + 3) * 60_000) for m in range(90, 98)]
    kept = pc.baseline(0, 6_000_000, {"db": spans})
    assert kept["db"]["T:ok:INFO"] == 900  # minutes 90-99 left, once each


def _replay_with_faults() -> tuple[Replay, list[Case]]:
    """Three services a -> b -> c; each case breaks one of b, c with a new error line."""
    rp = Replay()
    cases = []
    for k, root in enumerate(["c", "b", "c", "b"]):
        start = (k + 1) * 3_600_000
        for minute in range(-30, 5):
            t = start + minute * 60_000
            bad = minute >= 0
            rp.counts.add(t, "a", "H:/:200", 50)
            rp.counts.add(t, "a", "P:b:op:1", 50)
            rp.counts.add(t, "b", "H:/op:200", 50)
            rp.counts.add(t, "b", "P:c:q:1", 50)
            rp.counts.add(t, "c", "T:ok:INFO", 50)
            if bad:
                rp.counts.add(t, root, "T:new failure:ERROR", 20)
                rp.counts.add(t, "a", "H:/:500", 20)  # the failure travels up the calls
                rp.counts.add(t, "a", "P:b:op:0", 20)
                if root == "c":
                    rp.counts.add(t, "b", "P:c:q:0", 20)
        rp.counts.edges |= {("a", "b"), ("b", "c")}
        cases.append(Case(f"k{k}", "exception", root, start, start + 180_000))
    return rp, cases


def test_evaluation_ranks_constructed_faults_and_reports_folds() -> None:
    rp, cases = _replay_with_faults()
    feats = sequential(rp, cases, early_ms=0, baseline_ms=3_600_000)
    assert all(isinstance(f, Features) and set(f.baselines) == {0, 1} for f in feats)
    r = evaluate(feats, n_services=3)
    assert r["loo_top1"] == 1.0 and r["by_root_top1"] == 1.0
    assert r["chance_top1"] == round(1 / 3, 3)
    assert {f["root"] for f in r["folds"]} == {"b", "c"}
    assert r["worst_fold"]["top1"] == 1.0
    assert Counter(c["root"] for c in r["per_case"]) == Counter({"b": 2, "c": 2})


def test_two_faults_at_once_are_each_ranked_without_the_others_root() -> None:
    """a -> b -> c; at the same minute b throws a new error (its own fault) and c another
    (a second fault): one incident, c ranked first as the deepest failing service. Scored
    as concurrent faults, each is ranked against everything but the other's root."""
    rp, _ = _replay_with_faults()
    start = 10 * 3_600_000
    for minute in range(-30, 5):
        t = start + minute * 60_000
        rp.counts.add(t, "a", "H:/:200", 50)
        rp.counts.add(t, "a", "P:b:op:1", 50)
        rp.counts.add(t, "b", "H:/op:200", 50)
        rp.counts.add(t, "b", "P:c:q:1", 50)
        rp.counts.add(t, "c", "T:ok:INFO", 50)
        if minute >= 0:
            rp.counts.add(t, "c", "T:disk gone:ERROR", 20)
            rp.counts.add(t, "b", "T:parse failed:ERROR", 20)
            rp.counts.add(t, "b", "P:c:q:0", 20)
            rp.counts.add(t, "a", "P:b:op:0", 20)
    anomalies = [{"id": f"{s}1", "ts": start + 10_000, "service": s, "feature": "error_rate",
                  "observed": 0.3, "expected": 0.01, "severity": "critical",
                  "series": s, "scope": "service"} for s in ("b", "c")]
    truths = [Truth("B", "b", frozenset({"a", "b"}), start, start + 180_000),
              Truth("C", "c", frozenset({"a", "b", "c"}), start, start + 180_000)]
    alone = grouping(anomalies, truths, rp, early_ms=0)
    both = grouping(anomalies, truths, rp, early_ms=0, concurrent=True)
    assert {c["id"]: c["rank"] for c in alone["per_case"]} == {"B": 2, "C": 1}
    assert {c["id"]: c["rank"] for c in both["per_case"]} == {"B": 1, "C": 1}


def test_an_incident_that_opened_just_before_a_fault_and_took_its_signals_found_it() -> None:
    """a -> b -> c. A warning on b opens an incident 30 s before c fails; c's errors join
    it. The fault was found (by that incident, with the first signal of the fault as its
    detection time), not missed because the incident opened before the fault did; a
    signal of a second fault an hour later, on b, opens an incident of its own."""
    rp, _ = _replay_with_faults()
    start = 10 * 3_600_000

    def anomaly(i: str, ts: int, service: str, severity: str) -> dict[str, object]:
        return {"id": i, "ts": ts, "service": service, "feature": "error_rate",
                "observed": 0.3, "expected": 0.01, "severity": severity, "series": service,
                "scope": "service"}

    anomalies = [anomaly("pre", start - 30_000, "b", "warning"),
                 anomaly("c1", start + 10_000, "c", "critical"),
                 anomaly("b1", start + 3_600_000, "b", "critical")]
    truths = [Truth("C", "c", frozenset({"b", "c"}), start, start + 180_000),
              Truth("B", "b", frozenset({"a", "b"}), start + 3_600_000,
                    start + 3_780_000)]
    got = grouping(anomalies, truths, rp, early_ms=0)
    assert got["detected"] == 2 and got["wrong_merges"] == 0
    assert got["unmatched_incidents"] == 0 and got["our_incidents"] == 2
    assert {c["id"]: c["incidents"] for c in got["per_case"]} == {"C": 1, "B": 1}
    assert got["detect_delay_s_median"] == 10.0
