"""The streaming categoriser: ids, rows, events, feedback, accuracy, snapshots, bad input."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from categorisation.config import RatesConfig
from categorisation.settings import CategorisationSettings, load_categorisation
from demo.traffic import DEMO_TEMPLATES, DemoConfig, generate, template_matches
from schemas import topics
from schemas.changes import Feedback
from schemas.errors import ConfigError
from sinks.clickhouse import rows
from streams.categorise import Categoriser
from streams.ingest import IngestProcessor, Record

T0 = 1_700_000_000_000


def col(row: tuple[object, ...], table: tuple[str, ...], name: str) -> object:
    return row[table.index(name)]


def feedback(tid: str, verdict: str, **kw: object) -> Feedback:
    return Feedback(ts=datetime.fromtimestamp(T0 / 1000, UTC), target_kind="category",
                    target_id=tid, verdict=verdict, **kw)


def test_line_gets_stable_template_category_and_priority() -> None:
    c = Categoriser()
    a = c("pay", "card 4242 declined: insufficient funds (order 17)", "INFO", T0)
    b = c("pay", "card 1111 declined: insufficient funds (order 99)", "INFO", T0 + 1)
    other = c("web", "card 4242 declined: insufficient funds (order 17)", "INFO", T0)
    assert a[0] == b[0] and a[0] != other[0]  # per service
    oom = c("pay", "worker 3 killed: out of memory", "INFO", T0 + 2)
    assert oom[1:] == ("resource_exhaustion", "P2")  # higher than the INFO level says
    assert c("pay", "GET /x done", "INFO", T0, 503, None, None)[1] == "dependency_failure"


def test_template_rows_report_changed_templates_once_with_counts() -> None:
    c = Categoriser()
    for i in range(5):
        tid, _, _ = c("api", f"user {i} logged in from 10.0.0.{i}", "INFO", T0 + i)
    (row,) = c.template_rows(T0 / 1000 + 10)
    cols = rows.TEMPLATE_COLUMNS
    assert col(row, cols, "template_id") == tid
    assert col(row, cols, "count") == 5
    assert col(row, cols, "first_seen") == T0 and col(row, cols, "last_seen") == T0 + 4
    assert col(row, cols, "example") == "user 0 logged in from 10.0.0.0"
    assert col(row, cols, "team") == "unowned"
    assert c.template_rows(T0 / 1000 + 20) == []  # nothing changed since


def test_snapshot_restore_keeps_ids_counts_and_generalised_templates() -> None:
    c = Categoriser()
    first = c("db", "query on table users took 12ms", "INFO", T0)[0]
    c("db", "query on table users took 40ms", "INFO", T0 + 1)  # generalises: same id
    data = c.snapshot("db")
    assert data is not None and c.dirty_services == set()
    twin = Categoriser()
    twin.restore("db", data)
    assert twin("db", "query on table users took 3ms", "INFO", T0 + 2)[0] == first
    (row,) = twin.template_rows(T0 / 1000)
    assert col(row, rows.TEMPLATE_COLUMNS, "count") == 3
    assert col(row, rows.TEMPLATE_COLUMNS, "first_seen") == T0
    assert col(row, rows.TEMPLATE_COLUMNS, "template") == "query on table users took <*>"


def test_merged_templates_fold_into_the_oldest_with_an_event_and_corrections() -> None:
    c = Categoriser()
    tables = ["users", "orders", "carts", "items", "stock"]
    ids = [c("db", f"query on table {t} took 12ms", "INFO", T0 + i)[0]
           for i, t in enumerate(tables[:4])]
    assert len(set(ids)) == 4  # few values: constants so far
    assert c.apply_feedback(feedback(ids[2], "correct", category="database")) is not None
    c.template_rows(T0 / 1000)
    assert c("db", "query on table stock took 1ms", "INFO", T0 + 9)[:2] == (ids[0], "database")
    (row,) = c.template_rows(T0 / 1000)
    assert col(row, rows.TEMPLATE_COLUMNS, "template") == "query on table <*> took <*>"
    assert col(row, rows.TEMPLATE_COLUMNS, "count") == 5
    assert col(row, rows.TEMPLATE_COLUMNS, "first_seen") == T0
    merged = [r for r in c.drain_events() if col(r, rows.TEMPLATE_EVENT_COLUMNS, "kind")
              == "merged"]
    assert sorted(str(col(r, rows.TEMPLATE_EVENT_COLUMNS, "template_id"))
                  for r in merged) == sorted(ids[1:])
    assert all(c.registry.resolve("db", i) == ids[0] for i in ids)
    # feedback on an old id lands on the survivor
    assert c.apply_feedback(feedback(ids[3], "correct", category="storage")) is not None
    assert c("db", "query on table users took 5ms", "INFO", T0 + 10)[1] == "storage"


def test_correction_changes_later_lines_and_similar_templates_and_persists() -> None:
    c = Categoriser()
    tid = c("shop", "basket 12 abandoned by customer", "INFO", T0)[0]
    assert c("shop", "basket 13 abandoned by customer", "INFO", T0)[1] == "unknown"
    record = c.apply_feedback(feedback(tid, "correct", category="checkout_funnel",
                                       priority="high"))
    assert record is not None
    assert c("shop", "basket 14 abandoned by customer", "INFO", T0)[1:] == (
        "checkout_funnel", "P2")
    assert c("shop", "basket 15 abandoned by customer today", "INFO", T0)[1] == (
        "checkout_funnel")  # a similar template follows
    fresh = Categoriser()
    fresh.restore_corrections([record])
    assert fresh("shop", "basket 1 abandoned by customer", "INFO", T0)[1] == "checkout_funnel"


def test_feedback_feeds_accuracy_and_unknown_share() -> None:
    c = Categoriser(clock=lambda: T0 / 1000)
    t_ok = c("api", "request timed out after 3s", "WARN", T0)[0]
    t_bad = c("api", "login failed for bob", "WARN", T0)[0]
    for i in range(8):
        c("api", f"frobnicated {i} widgets", "INFO", T0)
    assert c.apply_feedback(feedback(t_ok, "confirm")) is None
    c.apply_feedback(feedback(t_bad, "correct", category="security"))
    (row,) = c.accuracy_rows(T0 / 1000 + 60)
    got = dict(zip(rows.ACCURACY_COLUMNS, row, strict=True))
    assert got["lines"] == 10 and got["unknown_fraction"] == 0.8
    assert got["category_accuracy"] == 0.5 and got["templates"] == 3
    (quiet,) = c.accuracy_rows(T0 / 1000 + 120)  # next period: nothing happened
    assert quiet[rows.ACCURACY_COLUMNS.index("lines")] == 0
    assert quiet[rows.ACCURACY_COLUMNS.index("template_growth")] == 0


def test_new_template_after_warmup_and_spike_become_events() -> None:
    c = Categoriser(rates=RatesConfig(window_s=60, warmup_s=300, min_history=5))
    for minute in range(20):
        for i in range(50 if minute == 15 else 5):
            c("api", f"GET /items/{i} 200", "INFO", T0 + minute * 60_000 + i)
    c("api", "cache rebuilt in 5s", "INFO", T0 + 16 * 60_000)
    c.tick(T0 / 1000 + 20 * 60)  # first tick only anchors the clock
    c.tick(T0 / 1000 + 22 * 60)
    kinds = [col(r, rows.TEMPLATE_EVENT_COLUMNS, "kind") for r in c.drain_events()]
    assert kinds.count("new") == 1 and kinds.count("spike") == 1
    assert c.drain_events() == []


def test_flood_of_unique_lines_is_bounded_and_flagged() -> None:
    c = Categoriser(settings=CategorisationSettings(max_templates=500))
    words = ["".join(p) for p in itertools.product("abcdefghij", repeat=4)]
    for i, w in enumerate(words[:6000]):
        # three random words, none adjacent (adjacent ones would be one variable); the miner
        # learns a variable first token and one more from the data, not three
        c("noisy", f"{w} session {words[-i]} opened {words[i * 7 % 10_000]} now", "INFO",
          T0 + i)
    assert len(c.registry.miner("noisy")) <= 500
    assert len(c._templates) <= 2 * 500 + 1000
    kinds = {col(r, rows.TEMPLATE_EVENT_COLUMNS, "kind") for r in c.drain_events()}
    assert "explosion" in kinds


@pytest.mark.parametrize("message", ["", "x" * 65_536, "\udcff\udcfe bytes", "12 34 5.6 7",
                                     "   "])
def test_hostile_lines_get_a_template(message: str) -> None:
    c = Categoriser()
    tid, _, priority = c("api", message, "INFO", T0)
    assert isinstance(tid, str) and len(tid) == 16 and priority in {"P1", "P2", "P3", "P4"}
    assert orjson.loads(c.snapshot("api") or b"")["v"] == 1


def test_processor_categorises_demo_traffic_into_known_templates() -> None:
    events = [e for t, e in itertools.islice(
        generate(DemoConfig(start_ms=T0, seed=11, duration_s=120)), 40_000)
        if t == topics.LOGS][:5000]
    c = Categoriser()
    p = IngestProcessor(categorise=c)
    out = p.process(Record(topics.LOGS, 0, i, None, orjson.dumps(e))
                    for i, e in enumerate(events))
    assert len(out.logs) == len(events)
    texts = c.template_rows(T0 / 1000)
    template_of = {col(r, rows.TEMPLATE_COLUMNS, "template_id"):
                   col(r, rows.TEMPLATE_COLUMNS, "template") for r in texts}
    idx = rows.LOGS_COLUMNS.index("template_id")
    # rows keep the id their line got; a template merged since resolves to its survivor
    good = sum(template_matches(DEMO_TEMPLATES[e["attrs"]["label"]["template"]],
                                str(template_of[c.registry.resolve(e["service"], row[idx])]))
               for e, row in zip(events, out.logs, strict=True))
    assert good / len(events) >= 0.95
    assert all(row[idx + 2] in {"P1", "P2", "P3", "P4"} for row in out.logs)


def test_sample_config_loads_and_bad_file_is_refused_with_line(tmp_path: Path) -> None:
    cfg = load_categorisation(CategorisationSettings())
    assert any(r.name == "payment_declined" for r in cfg.categories.categories)
    bad = tmp_path / "categories.yaml"
    bad.write_text("categories:\n  - name: ok\n  - name: Bad Name\n")
    with pytest.raises(ConfigError, match=r"categories.yaml:3: categories.1.name"):
        load_categorisation(CategorisationSettings(categories_file=bad))
    with pytest.raises(ConfigError, match="no such file"):
        load_categorisation(CategorisationSettings(masking_file=tmp_path / "missing.yaml"))


def test_template_events_carry_what_the_default_alert_rules_select_on() -> None:
    """A new ERROR template, sent as the worker sends it, fires the shipped NewErrorTemplate
    rule; a new security template fires SecurityEvent. (Both select on the line's level or
    category, which the event must carry.)"""
    from alerting.agents.evaluate_rules import template_input
    from alerting.config import load_alerting
    from alerting.evaluate import on_template

    rules = load_alerting(Path(__file__).resolve().parents[3] / "deploy/config/alerting.yaml")
    c = Categoriser(rates=RatesConfig(window_s=60, warmup_s=300))
    c("ledger", "ledger worker started", "INFO", T0)
    c("ledger", "shard 3 refused the write: quorum lost", "ERROR", T0 + 600_000)
    c("ledger", "brute force attack detected from 10.0.0.9", "WARN", T0 + 601_000)
    fired = {}
    for row in c.drain_events():
        doc = orjson.loads(orjson.dumps(dict(zip(rows.TEMPLATE_EVENT_COLUMNS, row,
                                                 strict=True))))
        ev = template_input(doc)
        _, sigs = on_template(rules, None, ev, ev.ts)
        fired[ev.template] = {s.rule for s in sigs}
        assert all(s.evidence.log_lines for s in sigs)  # the page shows an example line
    assert fired == {"shard <*> refused the write: quorum lost": {"NewErrorTemplate"},
                     "brute force attack detected from <*>": {"SecurityEvent"}}


def test_a_merged_template_row_carries_the_absorbed_lines() -> None:
    """Written, merged, written again: the survivor's row counts every line of both."""
    cat = Categoriser()
    names = ["alice", "bob", "carol", "dave"]
    for n in names:
        cat("auth", f"session opened for user {n} by sshd", "INFO")
    assert len(cat.template_rows(0)) == 4  # four constants so far, each written once
    cat("auth", "session opened for user erin by sshd", "INFO")  # a fifth value: a variable
    rows = {r[1]: r for r in cat.template_rows(1)}
    assert [r[2] for r in rows.values()] == ["session opened for user <*> by sshd"]
    assert [r[8] for r in rows.values()] == [5]
