"""The Sigma subset: selections, modifiers, conditions, aggregations, files, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.security import SecurityDetector
from alerting.security_rules import CountRule, MatchRule, SecurityConfig, SigmaRule
from alerting.sigma import (
    SigmaError,
    parse_aggregation,
    parse_condition,
    parse_timeframe,
    selection_matcher,
)
from alerting.yamlfile import parse_yaml_model
from schemas.errors import ConfigError

SIGMA_DIR = Path(__file__).resolve().parents[3] / "deploy" / "config" / "sigma"


@pytest.mark.parametrize(("sel", "event", "hit"), [
    ({"user": "Admin"}, {"user": "admin"}, True),  # case-insensitive
    ({"user": ["root", "admin"]}, {"user": "root"}, True),  # a list is OR
    ({"message|contains": "Invalid"}, {"message": "login invalid creds"}, True),
    ({"message|contains|all": ["login", "creds"]}, {"message": "login invalid creds"}, True),
    ({"message|contains|all": ["login", "token"]}, {"message": "login invalid creds"}, False),
    ({"route|startswith": "POST /api"}, {"route": "POST /api/login"}, True),
    ({"route|endswith": "/login"}, {"route": "POST /api/login"}, True),
    ({"user|re": "^svc-[0-9]+$"}, {"user": "svc-12"}, True),
    ({"ip|cidr": "10.0.0.0/8"}, {"ip": "11.0.0.1"}, False),
    ({"ip|cidr": "2001:db8::/32"}, {"ip": "2001:db8::1"}, True),
    ({"user": "svc-*"}, {"user": "svc-backup"}, True),  # wildcards
    ({"user": None}, {"user": ""}, True),  # null is an empty field
    ({"status": 429}, {"status": 429}, True),
    ({"src_ip": "1.2.3.4"}, {"ip": "1.2.3.4"}, True),  # a Sigma alias
    ([{"user": "a"}, {"user": "b"}], {"user": "b"}, True),  # a list of maps is OR
    (["credential"], {"message": "bad credential for x"}, True),  # keywords
])
def test_selections(sel: object, event: dict[str, object], hit: bool) -> None:
    assert selection_matcher(sel)(event) is hit


def test_conditions() -> None:
    sels = {"sel_a": selection_matcher({"user": "a"}), "sel_b": selection_matcher({"ip": "1"}),
            "filter": selection_matcher({"kind": "logout"})}
    e = {"user": "a", "ip": "2", "kind": "login"}
    assert parse_condition("sel_a and not filter", sels)(e)
    assert not parse_condition("sel_a and sel_b", sels)(e)
    assert parse_condition("1 of sel_*", sels)(e)
    assert not parse_condition("all of sel_*", sels)(e)
    assert parse_condition("(sel_b or sel_a) and not (filter)", sels)(e)
    assert parse_condition("1 of them", sels)(e)
    for bad in ("sel_a and", "sel_a sel_b", "nosuch", "(sel_a", "1 of nomatch*"):
        with pytest.raises(SigmaError):
            parse_condition(bad, sels)


def test_aggregations_and_timeframes() -> None:
    assert parse_aggregation(" count(user) by ip > 9") == ("user", ["ip"], 10)
    assert parse_aggregation("count() by user, service >= 3") == ("", ["user", "service"], 3)
    assert parse_aggregation("count(TargetUserName) by src_ip = 5") == ("user", ["ip"], 5)
    with pytest.raises(SigmaError):
        parse_aggregation("sum(status) by ip > 3")
    assert parse_timeframe("15m") == 900 and parse_timeframe("2h") == 7200
    with pytest.raises(SigmaError):
        parse_timeframe("soon")


RULE = """
title: Many users from one address
level: high
logsource: {category: authentication}
detection:
  selection: {kind: login, result: failure}
  filter: {ip|cidr: 10.0.0.0/8}
  condition: selection and not filter | count(user) by ip > 2
  timeframe: 1m
"""


def test_a_sigma_file_becomes_a_count_rule_that_fires() -> None:
    rule = parse_yaml_model(RULE, SigmaRule).compile("x.yml")
    assert isinstance(rule, CountRule)
    assert (rule.group_by, rule.distinct, rule.min, rule.window, rule.severity) == (
        ["ip"], "user", 3, 60.0, "high")
    det = SecurityDetector(SecurityConfig(rules=[rule]))
    base = {"service": "s", "kind": "login", "result": "failure", "ts": 0}
    internal = [{**base, "event_id": f"i{i}", "user": f"u{i}", "ip": "10.1.1.1", "ts": i}
                for i in range(5)]
    assert [s for e in internal for s in det.observe(e)] == []
    outside = [{**base, "event_id": f"o{i}", "user": f"u{i}", "ip": "192.0.2.1", "ts": i}
               for i in range(3)]
    assert len([s for e in outside for s in det.observe(e)]) == 1


def test_a_sigma_rule_without_aggregation_matches_each_event() -> None:
    text = RULE.replace(" | count(user) by ip > 2", "").replace("  timeframe: 1m\n", "")
    assert isinstance(parse_yaml_model(text, SigmaRule).compile("x.yml"), MatchRule)


@pytest.mark.parametrize(("change", "error"), [
    (("category: authentication", "category: process_creation"), "logsource"),
    (("kind: login", "kind|base64: login"), "unsupported modifier"),
    (("  timeframe: 1m\n", ""), "needs a timeframe"),
    (("count(user) by ip", "count(user) by port"), "unknown field 'port'"),
])
def test_unsupported_sigma_is_refused_with_file_and_line(change: tuple[str, str],
                                                         error: str) -> None:
    with pytest.raises(ConfigError, match=rf"rule.yml:\d+: .*{error}"):
        parse_yaml_model(RULE.replace(*change), SigmaRule, source="rule.yml")


def test_shipped_sigma_rules_load() -> None:
    files = sorted(SIGMA_DIR.glob("*.yml"))
    assert files
    for f in files:
        parse_yaml_model(f.read_text(), SigmaRule, source=str(f)).compile(str(f))
