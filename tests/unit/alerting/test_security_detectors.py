"""The security detectors on hand-made auth events: what fires, when, with which evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alerting.security import SecurityDetector
from alerting.security_rules import (
    CountRule,
    MatchRule,
    NewAddressRule,
    SecurityConfig,
    SequenceRule,
    load_security,
)
from schemas.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[3] / "deploy" / "config" / "security.yaml"
T0 = 1_767_225_600_000
_n = [0]


def ev(t_s: float, user: str, ip: str, result: str = "failure", kind: str = "login",
       **extra: Any) -> dict[str, Any]:
    _n[0] += 1
    return {"ts": T0 + int(t_s * 1000), "service": "shop", "event_id": f"e{_n[0]}",
            "user": user, "ip": ip, "action": kind, "outcome": result, "kind": kind,
            "result": result, "status": 401 if result == "failure" else 200, "route": "",
            "message": f"{kind} {result} for {user}", **extra}


def run(det: SecurityDetector, events: list[dict[str, Any]]) -> list[Any]:
    out = []
    for e in events:
        out += det.observe(e)
    return out


def test_credential_stuffing_fires_critical_with_addresses_users_and_count() -> None:
    det = SecurityDetector(load_security(SHIPPED))
    # a dozen attempts a second from 3 addresses over distinct user names
    events = [ev(i / 12, f"u{i}", f"203.0.113.{i % 3}") for i in range(120)]
    sigs = [s for s in run(det, events) if s.rule == "CredentialStuffing"]
    assert sigs, "no stuffing alert"
    first = sigs[0]
    assert first.labels["severity"] == "critical" and first.labels["category"] == "security"
    assert first.labels["ip"].startswith("203.0.113.")
    assert first.ts - T0 / 1000 < 5  # seconds after the attack's first attempt
    assert "u" in first.annotations["users"] and first.labels["ip"] in first.annotations[
        "addresses"]
    assert int(first.annotations["count"]) >= 8
    assert any(line.startswith("addresses") for line in first.evidence.log_lines)


def test_brute_force_on_one_user_from_many_addresses() -> None:
    det = SecurityDetector(load_security(SHIPPED))
    events = [ev(i * 2, "admin", f"198.51.100.{i % 20}") for i in range(60)]
    rules = {s.rule: s for s in reversed(run(det, events))}
    assert {"BruteForce", "AuthFailureBurstByUser"} <= set(rules)
    assert rules["BruteForce"].labels["user"] == "admin"
    assert rules["BruteForce"].ts - T0 / 1000 <= 60


def test_failure_burst_by_address_counts_events_in_the_window_only() -> None:
    rule = CountRule(kind="count", name="burst", where={"result": "failure"},
                     group_by=["ip"], window=60, min=5)
    det = SecurityDetector(SecurityConfig(rules=[rule]))
    slow = [ev(i * 20, "bob", "192.0.2.1") for i in range(10)]  # 3 per minute: never 5
    assert run(det, slow) == []
    fast = [ev(300 + i, "bob", "192.0.2.1") for i in range(5)]
    assert [s.rule for s in run(det, fast)] == ["burst"]


def test_success_after_failures_needs_a_new_address() -> None:
    rule = SequenceRule(kind="sequence", name="saf", min_failures=5, within=600)
    det = SecurityDetector(SecurityConfig(rules=[rule]))
    det.seed_addresses([("carol", "10.0.0.5", 0)])
    # carol forgets her password at home: failures then success from her usual address
    home = [ev(i * 5, "carol", "10.0.0.5") for i in range(7)] + [
        ev(40, "carol", "10.0.0.5", "success")]
    assert run(det, home) == []
    # someone guesses dave's password from elsewhere
    guess = [ev(100 + i, "dave", "192.0.2.66") for i in range(6)] + [
        ev(110, "dave", "192.0.2.66", "success")]
    sigs = run(det, guess)
    assert [s.rule for s in sigs] == ["saf"]
    assert sigs[0].labels["user"] == "dave" and "192.0.2.66" in sigs[0].annotations["addresses"]


def test_success_after_failures_needs_the_guessing_address() -> None:
    """Someone hammers erin's account from one address; erin logs in from her phone,
    an address new to her: not a break-in. The guesser getting in is."""
    rule = SequenceRule(kind="sequence", name="saf", min_failures=5, within=600)
    det = SecurityDetector(SecurityConfig(rules=[rule]))
    attack = [ev(i, "erin", "198.51.100.7") for i in range(20)]
    assert run(det, [*attack, ev(25, "erin", "203.0.113.40", "success")]) == []
    sigs = run(det, [ev(30 + i, "erin", "198.51.100.7") for i in range(3)]
               + [ev(40, "erin", "198.51.100.7", "success")])
    assert [(s.rule, s.labels["user"]) for s in sigs] == [("saf", "erin")]


def test_privileged_user_from_new_address_after_seeding() -> None:
    rule = NewAddressRule(kind="new_address", name="priv", users=["admin", "ops-.*"])
    det = SecurityDetector(SecurityConfig(rules=[rule]))
    det.seed_addresses([("admin", "10.1.1.1", 0), ("ops-li", "10.1.1.2", 0)])
    assert run(det, [ev(1, "admin", "10.1.1.1", "success"),
                     ev(2, "erin", "192.0.2.9", "success")]) == []  # known; not privileged
    sigs = run(det, [ev(3, "ops-li", "192.0.2.10", "success")])
    assert [(s.rule, s.labels["user"], s.labels["ip"]) for s in sigs] == [
        ("priv", "ops-li", "192.0.2.10")]
    assert run(det, [ev(4, "ops-li", "192.0.2.10", "success")]) == []  # now known


def test_new_address_learns_silently_without_history() -> None:
    rule = NewAddressRule(kind="new_address", name="priv", users=["admin"], learn=600)
    det = SecurityDetector(SecurityConfig(rules=[rule]))
    assert run(det, [ev(0, "admin", "10.0.0.1", "success"),
                     ev(300, "admin", "10.0.0.2", "success")]) == []
    assert len(run(det, [ev(700, "admin", "10.0.0.3", "success")])) == 1


def test_privilege_change_fires_and_resolves_in_event_time() -> None:
    rule = MatchRule(kind="match", name="role", where={"kind": "privilege_change"},
                     resolve_after=300)
    det = SecurityDetector(SecurityConfig(rules=[rule]))
    sigs = run(det, [ev(0, "mallory", "192.0.2.3", "success", kind="privilege_change",
                        action="role.grant admin")])
    assert [s.status for s in sigs] == ["firing"]
    assert det.advance(T0 + 100_000) == []
    resolved = det.advance(T0 + 301_000)
    assert [(s.status, s.fingerprint) for s in resolved] == [("resolved", sigs[0].fingerprint)]


def test_rate_limit_storm_by_service() -> None:
    det = SecurityDetector(load_security(SHIPPED))
    events = [ev(i * 0.5, f"u{i}", f"192.0.2.{i % 200}", "rate_limited") for i in range(60)]
    assert "RateLimitStorm" in {s.rule for s in run(det, events)}


def test_duplicates_and_state_bounds() -> None:
    rule = CountRule(kind="count", name="burst", where={"result": "failure"},
                     group_by=["ip"], window=60, min=3)
    det = SecurityDetector(SecurityConfig(rules=[rule], max_groups=100))
    e = ev(0, "bob", "192.0.2.1")
    assert run(det, [e, e, e]) == []  # one event replayed three times
    run(det, [ev(1, "x", f"10.0.{i // 250}.{i % 250}") for i in range(1000)])
    assert len(det.groups["burst"]) <= 100


def test_a_firing_alert_is_refreshed_not_repeated() -> None:
    rule = CountRule(kind="count", name="burst", where={"result": "failure"},
                     group_by=["ip"], window=60, min=3)
    det = SecurityDetector(SecurityConfig(rules=[rule]))
    sigs = run(det, [ev(i, "bob", "192.0.2.1") for i in range(30)])
    assert len(sigs) == 1
    sigs = run(det, [ev(65 + i, "bob", "192.0.2.1") for i in range(3)])
    assert len(sigs) == 1 and sigs[0].value >= 3  # the refresh after a minute


def test_bad_rules_file_names_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "security.yaml"
    f.write_text("sigma_dir: ''\nrules:\n  - name: x\n    kind: count\n    where: {kind: login}\n"
                 "    min: 0\n")
    with pytest.raises(ConfigError, match=r"security.yaml:\d+: rules.0.min"):
        load_security(f)
    f.write_text("sigma_dir: ''\nrules:\n  - name: x\n    kind: count\n"
                 "    where: {nosuchfield: 1}\n    min: 3\n")
    with pytest.raises(ConfigError, match="unknown field 'nosuchfield'"):
        load_security(f)


def test_shipped_rules_cover_every_detector_of_the_issue() -> None:
    cfg = load_security(SHIPPED)
    kinds = {(r.kind, r.name) for r in cfg.rules}
    names = {n for _, n in kinds}
    assert {"AuthFailureBurstByAddress", "AuthFailureBurstByUser", "CredentialStuffing",
            "BruteForce", "SuccessAfterFailures", "PrivilegedNewAddress", "PrivilegeChange",
            "RateLimitStorm"} <= names
    assert any(r.source.endswith(".yml") for r in cfg.rules)  # the Sigma rules came along
    assert all(r.severity == "critical" for r in cfg.rules)
