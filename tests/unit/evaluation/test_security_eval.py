"""The security evaluation on short seeded stretches: attacks are found fast, benign
traffic pages nobody, results repeat."""

from __future__ import annotations

from pathlib import Path

from alerting.security_rules import load_security
from demo.security import benign, brute_force, credential_stuffing, scenario
from evaluation.security import AttackResult, SeedResult, history, pages, summarise

SHIPPED = Path(__file__).resolve().parents[3] / "deploy" / "config" / "security.yaml"
T0 = 1_767_225_600.0


def test_seeded_traffic_repeats() -> None:
    assert benign(3, T0, 1800) == benign(3, T0, 1800)
    a, b = credential_stuffing(3, T0), credential_stuffing(3, T0)
    assert a[0] == b[0] and a[1].ips == b[1].ips


def test_attacks_page_within_60_s_and_benign_traffic_does_not() -> None:
    cfg = load_security(SHIPPED)
    for seed in (7,):
        for make in (credential_stuffing, brute_force):
            events, attack = make(seed, T0 + 600)
            quiet = benign(seed, T0, 1200)
            sigs, _ = pages(cfg, sorted(quiet + events, key=lambda e: e["ts"]), history(seed))
            mine = [s for s in sigs if s.labels.get("ip") in attack.ips
                    or s.labels.get("user") in attack.users]
            assert mine, f"{attack.kind} of seed {seed} not detected"
            assert min(s.ts for s in mine) - attack.start_ms / 1000 <= 60
        sigs, n = pages(cfg, benign(seed, T0, 3600), history(seed))
        assert n > 300 and sigs == []


def test_scenario_holds_both_attacks_after_the_first_hour() -> None:
    events, attacks = scenario(5, T0, 4 * 3600)
    assert [a.kind for a in attacks] == ["credential_stuffing", "brute_force"]
    assert all(a.start_ms >= (T0 + 3600) * 1000 for a in attacks)
    assert events == sorted(events, key=lambda e: e["ts"])


def test_summary_puts_the_worst_seed_first() -> None:
    def res(seed: int, ttc: float, false: int) -> SeedResult:
        return SeedResult(seed=seed, attacks=[AttackResult(kind="brute_force", seed=seed,
                                                           time_to_critical_s=ttc)],
                          false_pages_attack_day=false, false_pages_benign_day=0, events=1)
    s = summarise([res(1, 3.0, 0), res(2, 9.0, 0), res(3, 1.0, 1)])
    assert s.worst_seed == 3 and [r.seed for r in s.results] == [3, 2, 1]
    assert s.worst_time_to_critical_s == {"brute_force": 9.0} and s.false_pages == 1
