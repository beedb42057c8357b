"""Ranking on constructed pattern counts: the root first, with its evidence."""

from __future__ import annotations

from collections import Counter

import pytest

from incidents.patterns import latency_band
from incidents.ranking import Change, RankConfig, rank

# web -> api -> db, and web -> search
EDGES = {("web", "api"), ("api", "db"), ("web", "search")}


def healthy() -> dict[str, Counter[str]]:
    return {"web": Counter({"H:/:200": 1000, "P:api:GET /x:1": 1000, "P:search:GET /s:1": 500}),
            "api": Counter({"H:/x:200": 1000, "P:db:query:1": 1000, "T:handled:INFO": 1000}),
            "db": Counter({"T:query ok:INFO": 1000}),
            "search": Counter({"H:/s:200": 500, "T:search done:INFO": 500})}


def test_a_new_error_template_in_the_callee_beats_the_500s_it_causes_upstream() -> None:
    window = {"web": Counter({"H:/:200": 60, "H:/:500": 40, "P:api:GET /x:1": 60,
                              "P:api:GET /x:0": 40, "P:search:GET /s:1": 50}),
              "api": Counter({"H:/x:200": 60, "H:/x:500": 40, "P:db:query:1": 60,
                              "P:db:query:0": 40, "T:handled:INFO": 60}),
              "db": Counter({"T:query ok:INFO": 60, "T:deadlock detected:ERROR": 40}),
              "search": Counter({"H:/s:200": 50, "T:search done:INFO": 50})}
    ranked = rank(window, healthy(), EDGES)
    assert [s.service for s in ranked[:3]] == ["db", "api", "web"]
    assert any("deadlock detected" in line for line in ranked[0].evidence())
    assert ranked[1].victim_of == "db"


def test_a_vanished_log_statement_points_at_its_service() -> None:
    # a method returns early: its "handled" line disappears, nothing errors
    window = {**{k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}}
    window["api"] = Counter({"H:/x:200": 100, "P:db:query:1": 100})
    ranked = rank(window, healthy(), EDGES)
    assert ranked[0].service == "api"
    assert "INFO log handled" in ranked[0].evidence()[0]


def test_a_silent_dead_service_is_found_through_its_callers_failed_calls() -> None:
    window = {"web": Counter({"H:/:200": 50, "P:api:GET /x:1": 50, "P:search:GET /s:0": 50,
                              "H:/:503": 50}),
              "api": Counter({"H:/x:200": 50, "P:db:query:1": 50, "T:handled:INFO": 50})}
    ranked = rank(window, healthy(), EDGES)
    assert ranked[0].service == "search"
    assert "failed calls from web" in ranked[0].inbound


def test_cpu_saturation_ranks_a_service_whose_logs_look_normal() -> None:
    window = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}
    ranked = rank(window, healthy(), EDGES, resources={"search": 20.0, "db": 0.5})
    assert ranked[0].service == "search"
    # the score came from the gauge: the evidence leads with it (a pack quotes the first few)
    assert "resource saturation" in ranked[0].evidence()[0]
    # a gauge within one spread of normal is no evidence line
    assert not any("saturation" in line for s in ranked if s.service == "db"
                   for line in s.evidence())


def test_a_recent_change_decides_between_equal_suspects() -> None:
    window = {"api": Counter({"H:/x:500": 30, "H:/x:200": 70}),
              "search": Counter({"H:/s:500": 30, "H:/s:200": 70})}
    base = {"api": Counter({"H:/x:200": 1000}), "search": Counter({"H:/s:200": 1000})}
    changes = [Change(id="chg-1", ts=9_000_000, service="search", kind="deploy")]
    ranked = rank(window, base, (), changes=changes, opened_ms=9_600_000)
    assert ranked[0].service == "search" and ranked[0].changes == ["chg-1"]
    # a change long before the incident does not count
    old = [Change(id="chg-0", ts=0, service="search", kind="deploy")]
    assert rank(window, base, (), changes=old, opened_ms=9_600_000)[0].changes == []


def test_the_victim_rule_can_be_turned_off() -> None:
    window = {"api": Counter({"H:/x:500": 80, "H:/x:200": 20}),
              "db": Counter({"T:query ok:INFO": 40, "T:slow:WARN": 60})}
    base = {"api": Counter({"H:/x:200": 1000}), "db": Counter({"T:query ok:INFO": 1000})}
    off = RankConfig(victim_factor=1.0, inbound_weight=0.0)
    assert rank(window, base, EDGES, cfg=off)[0].service == "api"
    assert rank(window, base, EDGES)[0].service == "db"


def test_a_dead_dependency_outranks_its_louder_callers() -> None:
    # db is down: it writes nothing; api and web each fail a few hundred calls to it and
    # answer 503 more often than they fail calls (retries), one of them after a deploy
    edges = {("web", "db"), ("api", "db")}
    base = {"web": Counter({"H:/:200": 5000, "P:db:q:1": 5000}),
            "api": Counter({"H:/x:200": 5000, "P:db:q:1": 5000}),
            "db": Counter({"T:query ok:INFO": 10000})}
    window = {"web": Counter({"H:/:503": 400, "P:db:q:0": 300, "H:/:200": 10}),
              "api": Counter({"H:/x:503": 380, "P:db:q:0": 290, "H:/x:200": 10}),
              "db": Counter({"T:crash:CRITICAL": 3})}
    changes = [Change(id="chg-web", ts=9_000_000, service="web", kind="deploy")]
    ranked = rank(window, base, edges, changes=changes, opened_ms=9_600_000)
    assert ranked[0].service == "db"
    # every caller's failed calls count for it, not only the loudest caller's
    assert "590 failed calls from api, web" in ranked[0].inbound
    assert {s.victim_of for s in ranked[1:]} == {"db"}


def test_several_changes_boost_a_service_once() -> None:
    window = {"api": Counter({"H:/x:500": 30, "H:/x:200": 70}),
              "search": Counter({"H:/s:500": 30, "H:/s:200": 70})}
    base = {"api": Counter({"H:/x:200": 1000}), "search": Counter({"H:/s:200": 1000})}
    one = [Change(id="chg-1", ts=9_000_000, service="search", kind="deploy")]
    three = [*one, *(Change(id=f"chg-{i}", ts=9_100_000, service="search", kind="config")
                     for i in (2, 3))]
    score = {c: rank(window, base, (), changes=c, opened_ms=9_600_000)[0].score
             for c in ((), tuple(one), tuple(three))}
    assert score[tuple(one)] == score[tuple(three)] == 1.5 * score[()]


def test_a_service_its_callers_see_failing_is_no_victim_of_a_healthy_callee() -> None:
    # payments crashes; its callee db wobbles a little (a busy service always does), and
    # payments' own calls to db do not fail: payments is the root, not db's victim
    edges = {("checkout", "payments"), ("payments", "db")}
    base = {"checkout": Counter({"H:/c:200": 5000, "P:payments:charge:1": 5000}),
            "payments": Counter({"H:/p:200": 5000, "P:db:insert:1": 5000}),
            "db": Counter({"T:ok:INFO": 10000, "T:slow:WARN": 100})}
    window = {"checkout": Counter({"H:/c:503": 300, "P:payments:charge:0": 300}),
              "payments": Counter({"T:crash:CRITICAL": 3}),
              "db": Counter({"T:ok:INFO": 900, "T:slow:WARN": 20})}
    ranked = rank(window, base, edges)
    assert ranked[0].service == "payments" and not ranked[0].victim_of
    assert ranked[1].service == "checkout" and ranked[1].victim_of == "payments"


def test_errors_that_stopped_say_nothing_against_a_service() -> None:
    # "cart" logged timeouts through an earlier incident that is still in its baseline; they
    # have stopped. "search" now has errors of a new kind: it is the one to look at.
    normal = {f"T:step {k}:INFO": 100 for k in range(10)}
    baseline = {"cart": Counter({**normal, "T:timeout:ERROR": 500, "H:/c:503": 300}),
                "search": Counter({"T:search done:INFO": 1000})}
    window = {"cart": Counter({p: 60 for p in normal}),
              "search": Counter({"T:search done:INFO": 90, "T:index missing:ERROR": 10})}
    ranked = rank(window, baseline, set())
    assert [s.service for s in ranked] == ["search", "cart"]
    assert not any("timeout" in line or "503" in line for line in ranked[1].evidence())
    # a normal code path that stops is still news, however its errors went
    window = {"cart": Counter({p: 60 for p in list(normal)[1:]}),
              "search": Counter({"T:search done:INFO": 100})}
    gone = rank(window, baseline, set())
    assert gone[0].service == "cart"
    assert any("INFO log step 0" in line for line in gone[0].evidence())


def test_slower_calls_name_the_callee_unless_the_caller_is_the_slow_end() -> None:
    # db is delayed on the network: api, waiting on it, logs a surge of warnings; db's own
    # logs see nothing
    window = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}
    window["api"]["T:slow query:WARN"] = 40
    assert rank(window, healthy(), EDGES)[0].service == "api"
    ranked = rank(window, healthy(), EDGES, slow_calls=[("api", "db")])
    assert [s.service for s in ranked[:2]] == ["db", "api"]
    assert ranked[0].slowed == "api" and ranked[1].victim_of == "db"
    # api starved of CPU times its own waiting into every call it makes: its slow calls to
    # db say nothing against db
    starved = rank(window, healthy(), EDGES, resources={"api": 9.0},
                   slow_calls=[("api", "db")])
    assert starved[0].service == "api" and not starved[0].victim_of
    # nor when its calls to every callee slowed down at once (web calls api and search)
    both = rank(window, healthy(), EDGES, slow_calls=[("web", "api"), ("web", "search")])
    assert not any(s.slowed for s in both)


def test_a_delayed_service_whose_callers_log_nothing_new_still_ranks_first() -> None:
    """Only latency moved: web and api's calls to db are slower and no log line of anyone
    changed, while search's logs drift as ordinary noise does. The slow calls are evidence
    of their own (two witnesses, 3 * sqrt(2) = 4.2 standard deviations), above the drift."""
    window = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}
    window["search"] = Counter({"H:/s:200": 40, "T:search done:INFO": 90})
    noise = rank(window, healthy(), EDGES)[0]
    assert noise.service == "search" and 2.0 < noise.score < 4.0
    ranked = rank(window, healthy(), EDGES | {("web", "db")},
                  slow_calls=[("api", "db"), ("web", "db")])
    assert ranked[0].service == "db" and round(ranked[0].score, 1) == 4.2
    assert ranked[0].slowed == "api, web"


def test_a_caller_whose_calls_to_every_callee_slowed_is_the_slow_end() -> None:
    """web's calls to api and to search both slowed, and nobody else's: the edges share web,
    so the delay lies with web (its own network or CPU), not with either callee."""
    window = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}
    ranked = rank(window, healthy(), EDGES, slow_calls=[("web", "api"), ("web", "search")])
    assert ranked[0].service == "web" and round(ranked[0].score, 1) == 4.2
    assert not ranked[0].victim_of and not any(s.slowed for s in ranked)
    assert ranked[0].evidence()[0] == "its calls slowed down: to api, search"


def test_suspects_that_can_explain_the_incident_rank_before_louder_strangers() -> None:
    """The incident is api's: its calls to db slowed. At the same time search, which api
    neither calls nor is called by, logs a new error template of its own (another
    problem). search is the louder, but it cannot explain api's symptoms; db can."""
    window = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}
    window["search"]["T:index corrupt:ERROR"] = 30
    unscoped = rank(window, healthy(), EDGES, slow_calls=[("api", "db")])
    assert unscoped[0].service == "search"
    ranked = rank(window, healthy(), EDGES, slow_calls=[("api", "db")], scope=["api"])
    assert [s.service for s in ranked[:2]] == ["db", "api"]
    assert "search" in [s.service for s in ranked]  # still listed, after them
    # without a call graph nothing says what can explain what: the scores decide
    assert rank(window, healthy(), slow_calls=[("api", "db")], scope=["api"])[0].service == \
        "search"


def test_a_strong_slowdown_outweighs_drift_a_bare_one_does_not() -> None:
    """One caller sees db slow. At the detectors' threshold (3 standard deviations) that is
    no more than search's drift; a slowdown found at 6 standard deviations is."""
    window = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}
    window["search"] = Counter({"H:/s:200": 30, "T:search done:INFO": 90})
    drift = rank(window, healthy(), EDGES)[0]
    assert drift.service == "search" and 3.0 < drift.score < 6.0
    assert rank(window, healthy(), EDGES, slow_calls=[("api", "db")])[0].service == "search"
    strong = rank(window, healthy(), EDGES, slow_calls={("api", "db"): 6.0})
    assert strong[0].service == "db" and strong[0].score == 6.0
    # below the threshold a finding still counts as the threshold: it was raised
    weak = rank(window, healthy(), EDGES, slow_calls={("api", "db"): 1.0})
    assert next(s.score for s in weak if s.service == "db") == 3.0


def test_how_many_calls_were_slow_says_how_strong_a_slow_edge_is() -> None:
    """A detector found api's calls to db slow at its threshold (3 standard deviations),
    no more than search's drift. api's own record of its calls (their latency bands) says
    how strong that is: 99 of 100 baseline calls took about 10 ms, and in the window every
    one of 100 took about 210 ms (db is 200 ms slower on the network)."""
    base = healthy()
    base["api"].update({"L:db:13": 990, "L:db:14": 10})  # ~9.5-11 ms, a few ~11-13 ms
    window = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in base.items()}
    window["search"] = Counter({"H:/s:200": 30, "T:search done:INFO": 90})
    window["api"]["L:db:13"], window["api"]["L:db:14"], window["api"]["L:db:30"] = 0, 0, 100
    ranked = rank(window, base, EDGES, slow_calls=[("api", "db")])
    assert ranked[0].service == "db" and ranked[0].score > 50
    assert ranked[0].slowed == "api (100 calls slower than 11.3 ms, 1.0 expected)"
    assert next(s for s in ranked if s.service == "api").victim_of == "db"
    # a latency band never becomes a log pattern of its own
    assert not any(key.startswith("L:") for s in ranked for key, _, _ in s.patterns)
    # an edge no detector found slow stays out, however its tail moved (tails are bursty)
    assert rank(window, base, EDGES)[0].service == "search"
    # the found edge within its usual spread keeps the detector's strength
    window["api"]["L:db:30"], window["api"]["L:db:14"] = 0, 1
    usual = rank(window, base, EDGES, slow_calls=[("api", "db")])
    assert usual[0].service == "search" and next(
        s.score for s in usual if s.service == "db") == 3.0
    # and so does an edge with too short a history to know its usual latency
    few = {k: Counter({p: n // 100 for p, n in c.items()}) for k, c in base.items()}
    window["api"]["L:db:30"] = 100
    assert next(s.score for s in rank(window, few, EDGES, slow_calls=[("api", "db")])
                if s.service == "db") == 3.0


def delayed(on: str) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
    """(window, baseline) of web -> api -> db with ``on`` delayed ~100 ms on the network
    (every packet it sends): latency bands of waits (``L:``) and serving (``S:``). A call's
    wait is the callee's serving plus the network; api serves in 10 ms plus its call to db
    (10 ms), db in 10 ms."""
    def bands(wait_api: float, serve_api: float, wait_db: float) -> dict[str, Counter[str]]:
        out = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}
        out["web"][f"L:api:{latency_band(wait_api)}"] = 100
        out["api"][f"S:{latency_band(serve_api)}"] = 100
        out["api"][f"L:db:{latency_band(wait_db)}"] = 100
        out["db"]["S:13"] = 100  # db's own serving never changes
        return out
    base = {k: c + Counter({p: 10 * n for p, n in c.items() if p[0] in "LS"})
            for k, c in bands(21, 21, 11).items()}
    d = 100.0
    window = bands(21 + 2 * d, 21 + d, 11 + d) if on == "api" else bands(21 + d, 21 + d, 11 + d)
    return window, base


def test_a_network_delay_lies_with_the_end_whose_callers_wait_longer_than_it_serves() -> None:
    """Both of api's slow edges are found: web's calls to api, api's calls to db. When db
    is delayed, api serves as much slower as web waits for it (api waits on db), and db
    serves as ever: db is the slow end. When api is delayed, web waits twice the delay
    for api (the late answer, and api's own late call to db) while api serves once the
    delay longer: both edges have a network gap, and api is the end they share."""
    slow = [("web", "api"), ("api", "db")]
    db = rank(*delayed("db"), EDGES, slow_calls=slow)
    assert db[0].service == "db" and db[0].slowed.startswith("api")
    api = rank(*delayed("api"), EDGES, slow_calls=slow)
    assert api[0].service == "api" and not api[0].victim_of
    assert api[0].slowed.startswith("web") and api[0].slow_out.startswith("db")
    assert not next((s.slowed for s in api if s.service == "db"), "")
    # without the serving times the two look alike, and the callee at the end is blamed
    blind = [{k: Counter({p: n for p, n in c.items() if not p.startswith("S:")})
              for k, c in part.items()} for part in delayed("api")]
    assert rank(*blind, EDGES, slow_calls=slow)[0].service == "db"


def test_independent_lines_of_evidence_against_one_service_combine() -> None:
    """search is starved of CPU (8 baseline spreads: 4 at the saturation weight) and
    answers a few requests with 500s (a surprise of 3.8); api, elsewhere, has one louder
    line (a log statement half gone, 4.9). Each of search's lines alone is weaker; both
    together (Stouffer: (3.8 + 4) / sqrt(2) = 5.5) are not."""
    window = {k: Counter({p: n // 10 for p, n in c.items()}) for k, c in healthy().items()}
    window["search"]["H:/s:500"] = 4
    window["api"]["T:handled:INFO"] = 35
    alone = rank(window, healthy(), EDGES)
    assert alone[0].service == "api" and 4.5 < alone[0].score < 6.0
    s = next(s for s in alone if s.service == "search")
    assert 3.0 < s.surprise < alone[0].score
    both = rank(window, healthy(), EDGES, resources={"search": 8.0})
    assert both[0].service == "search"
    assert both[0].score == pytest.approx((s.surprise + 4.0) / 2 ** 0.5)
    # a line below the threshold adds nothing: it is no finding
    weak = rank(window, healthy(), EDGES, resources={"search": 4.0})
    assert weak[0].service == "api"
    assert next(x.score for x in weak if x.service == "search") == s.surprise
