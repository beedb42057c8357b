"""Triage: teams, corrections that spread to similar templates, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from categorisation.miner import TemplateMiner
from categorisation.triage import (
    TeamRouter,
    TeamsConfig,
    Triage,
    TriageConfig,
    jaccard,
    load_teams,
    parse_priority,
    words,
)
from schemas.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
TEAMS = TeamsConfig(default_team="sre", teams={
    "payments": ["payments-api", "billing-*"],
    "identity": ["auth-*", "login-web"],
    "catch_all_billing": ["billing-ledger"],  # exact beats an earlier glob
})


def test_team_router_exact_then_globs_then_default() -> None:
    r = TeamRouter(TEAMS)
    assert r.team_for("payments-api") == "payments"
    assert r.team_for("billing-worker") == "payments"
    assert r.team_for("billing-ledger") == "catch_all_billing"
    assert r.team_for("auth-api") == "identity"
    assert r.team_for("search-api") == "sre"


def test_sample_teams_file_loads_and_bad_one_is_refused(tmp_path: Path) -> None:
    r = TeamRouter(load_teams(REPO / "deploy" / "config" / "teams.yaml"))
    assert r.team_for("billing-worker") == "payments"
    assert r.team_for("orders-etl") == "data"
    bad = tmp_path / "teams.yaml"
    bad.write_text("default_team: sre\nteams:\n  payments: pay-*\n")
    with pytest.raises(ConfigError, match=r"teams\.yaml:3: teams\.payments"):
        load_teams(bad)


def test_line_gets_category_priority_team_and_source() -> None:
    t = Triage(teams=TEAMS)
    r = t.triage("payments-api", "t1", "write <*>: no space left on device", "INFO")
    assert (r.category, r.priority, r.team, r.source) == (
        "resource_exhaustion", "P2", "payments", "rules")
    r = t.triage("auth-api", "t2", "<*> <*> completed", "INFO", http_status=401)
    assert (r.category, r.source) == ("authentication", "signals")
    r = t.triage("web", "t3", "cache warmed with <*> entries", "INFO")
    assert (r.category, r.priority, r.source) == ("unknown", "P4", "rules")


def test_correction_overrides_rules_for_the_template() -> None:
    t = Triage()
    tmpl = "health check <*> timed out, retrying"
    assert t.triage("web", "hc", tmpl, "WARN").category == "timeout"
    t.apply_feedback("hc", tmpl, category="performance", priority="low")
    r = t.triage("web", "hc", tmpl, "ERROR")
    assert (r.category, r.priority, r.source) == ("performance", "P4", "feedback")


def test_a_repeated_line_sees_corrections_and_their_loss() -> None:
    t = Triage()
    tmpl = "health check <*> timed out, retrying"
    line = ("web", "hc", tmpl, "WARN", 504, None, None)
    assert t.triage(*line).category == "timeout"
    assert t.triage(*line).category == "timeout"  # answered again, the same
    t.apply_feedback("hc", tmpl, category="performance")
    assert t.triage(*line).category == "performance"
    t.restore(Triage().snapshot())  # no corrections any more
    assert t.triage(*line).category == "timeout"


def test_corrected_template_makes_similar_templates_follow() -> None:
    miner = TemplateMiner("checkout")
    t = Triage()
    a = miner.add("payment 8812 rejected by fraud engine: velocity rule")
    assert t.triage("checkout", a.template_id, a.template, "WARN").category == "unknown"
    t.apply_feedback(a.template_id, a.template, category="security", priority="P2")
    # A similar message (one more word, so another template) follows the correction,
    b = miner.add("payment 9911 rejected by fraud engine: velocity rule exceeded")
    assert b.template_id != a.template_id
    r = t.triage("checkout", b.template_id, b.template, "WARN")
    assert (r.category, r.priority, r.source) == ("security", "P2", "similar")
    # also in another service; an unrelated template does not.
    r = t.triage("orders", "x1", "payment <*> rejected by fraud engine: velocity rule", "INFO")
    assert r.category == "security"
    assert t.triage("checkout", "x2", "payment <*> captured", "INFO").category == "unknown"


def test_the_most_similar_correction_wins() -> None:
    t = Triage()
    t.apply_feedback("a", "order <*> stuck in state pending", category="data_integrity")
    t.apply_feedback("b", "order <*> stuck in state pending for payment", category="validation")
    r = t.triage("shop", "c", "order <*> stuck in state pending for payment provider", "INFO")
    assert r.category == "validation"


def test_similarity_threshold_is_a_knob() -> None:
    strict = Triage(config=TriageConfig(similarity=1.0))
    strict.apply_feedback("a", "job <*> failed on worker", category="exception")
    assert strict.triage("s", "b", "job <*> failed on worker node", "INFO").source == "rules"
    assert strict.triage("s", "c", "job <*> failed on <*> worker", "INFO").source == "similar"


def test_priority_only_correction_keeps_rule_category() -> None:
    t = Triage()
    t.apply_feedback("t", "cache <*> timed out", priority="P4")
    r = t.triage("web", "t", "cache <*> timed out", "ERROR")
    assert (r.category, r.priority, r.source) == ("timeout", "P4", "feedback")
    t.apply_feedback("t", "cache <*> timed out", category="performance")  # merges
    r = t.triage("web", "t", "cache <*> timed out", "ERROR")
    assert (r.category, r.priority) == ("performance", "P4")


def test_generalised_template_is_looked_at_again() -> None:
    t = Triage()
    assert t.triage("w", "id", "user alice denied", "INFO").category == "unknown"
    assert t.triage("w", "id", "user <*> permission denied", "INFO").category == "authorisation"


def test_bad_feedback_is_refused_and_confirmation_changes_nothing() -> None:
    t = Triage()
    with pytest.raises(ValueError, match="priority"):
        t.apply_feedback("t", "x", priority="urgent")
    with pytest.raises(ValueError, match="category"):
        t.apply_feedback("t", "x", category="Not A Name")
    t.apply_feedback("t", "x")
    assert t.corrections == []


def test_corrections_are_bounded_oldest_forgotten() -> None:
    t = Triage(config=TriageConfig(max_corrections=2))
    for i in range(3):
        t.apply_feedback(f"t{i}", f"alpha{i} beta{i} gamma{i}", category="validation")
    assert [c.template_id for c in t.corrections] == ["t1", "t2"]
    assert t.triage("s", "t0", "alpha0 beta0 gamma0", "INFO").category == "unknown"


def test_snapshot_restore_keeps_corrections() -> None:
    t = Triage()
    t.apply_feedback("a", "order <*> stuck in state pending", category="data_integrity")
    t.apply_feedback("b", "refund <*> queued", priority="P1")
    twin = Triage()
    twin.restore(t.snapshot())
    assert twin.corrections == t.corrections
    assert twin.triage("s", "z", "order <*> stuck in state pending now", "INFO").category \
        == "data_integrity"
    with pytest.raises(ValueError, match="version"):
        twin.restore(b'{"v": 99}')


def test_helpers() -> None:
    assert parse_priority("high") == "P2" and parse_priority("p3") == "P3"
    assert words("Cache miss for key <*>") == {"cache", "miss", "key"}
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)
    assert jaccard(frozenset(), frozenset()) == 0.0
