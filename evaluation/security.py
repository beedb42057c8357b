"""``logwarden eval security``: time to a critical alert under attack, false pages on benign days.

Each seed's events (``demo/security.py``) go through the same path as in the worker: the
ingest's auth-event document (``schemas.auth_events.auth_event``), then the security
detector, in event time. A page is a critical alert episode (its first firing signal). A
page is attributed to an attack when its group names one of the attack's addresses or users,
or, for rules grouped by service, when it fires while the attack runs; any other page is
false. Time to critical: the first attributed page's event time minus the attack's start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from alerting.lifecycle import Signal
from alerting.security import SecurityDetector
from alerting.security_rules import SecurityConfig
from demo.security import DAY_S, Attack, benign, fleet, scenario
from schemas.auth_events import auth_event

NOT_DETECTED_S = float("inf")


class AttackResult(BaseModel):
    kind: str
    seed: int
    time_to_critical_s: float  # inf when no critical alert named it
    first_rule: str = ""


class SeedResult(BaseModel):
    seed: int
    attacks: list[AttackResult]
    false_pages_attack_day: int
    false_pages_benign_day: int
    false_page_rules: list[str] = []
    events: int


def _docs(events: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for e in events:
        h = e.get("http") or {}
        route = f"{h.get('method', '')} {h.get('route', '')}".strip() if h.get("route") else ""
        doc = auth_event(e, route, h.get("status"), str(e["event_id"]))
        if doc is not None:
            yield doc


def history(seed: int) -> list[tuple[str, str, int]]:
    """What the worker seeds its address book with: the users' usual addresses (their past
    successful logins, as ``sinks.clickhouse.queries.security.known_addresses`` reads them)."""
    return [(u, ip, 0) for u, ips in fleet(seed).homes.items() for ip in ips]


def pages(config: SecurityConfig, events: Iterable[dict[str, Any]],
          seed_history: list[tuple[str, str, int]] | None = None) -> tuple[list[Signal], int]:
    """The critical episodes (first firing signal of each) of a run, and the events read."""
    det = SecurityDetector(config)
    if seed_history is not None:
        det.seed_addresses(seed_history)
    active: set[str] = set()
    out: list[Signal] = []
    n = 0
    last_tick = 0
    for doc in _docs(events):
        n += 1
        sigs = det.observe(doc)
        if doc["ts"] - last_tick >= 10_000:  # the worker's timer: resolves
            sigs += det.advance()
            last_tick = doc["ts"]
        for s in sigs:
            if s.status == "resolved":
                active.discard(s.fingerprint)
            elif s.fingerprint not in active:
                active.add(s.fingerprint)
                if s.labels.get("severity") == "critical":
                    out.append(s)
    return out, n


def _belongs(s: Signal, a: Attack) -> bool:
    ip, user = s.labels.get("ip"), s.labels.get("user")
    if ip or user:
        return (ip in a.ips) or (user in a.users)
    return a.start_ms / 1000 <= s.ts <= a.end_ms / 1000


def evaluate_seed(config: SecurityConfig, seed: int) -> SeedResult:
    """One seed: its attack scenario and a benign day."""
    events, attacks = scenario(seed)
    sigs, n = pages(config, events, history(seed))
    results, false = [], []
    for a in attacks:
        mine = sorted((s for s in sigs if _belongs(s, a)), key=lambda s: s.ts)
        ttc = mine[0].ts - a.start_ms / 1000 if mine else NOT_DETECTED_S
        results.append(AttackResult(kind=a.kind, seed=seed, time_to_critical_s=ttc,
                                    first_rule=mine[0].rule if mine else ""))
    false = [s for s in sigs if not any(_belongs(s, a) for a in attacks)]
    day = benign(seed + 10_000, 1_767_225_600.0 + DAY_S, DAY_S)
    bsigs, bn = pages(config, day, history(seed + 10_000))
    return SeedResult(seed=seed, attacks=results, false_pages_attack_day=len(false),
                      false_pages_benign_day=len(bsigs),
                      false_page_rules=sorted({s.rule for s in false + bsigs}),
                      events=n + bn)


class Summary(BaseModel):
    seeds: list[int]
    worst_time_to_critical_s: dict[str, float]  # by attack kind
    median_time_to_critical_s: dict[str, float]
    detected: dict[str, str]  # "k/n" by kind
    false_pages: int  # attack-scenario days + benign days
    benign_days: int
    worst_seed: int
    results: list[SeedResult]


def summarise(results: list[SeedResult]) -> Summary:
    """Worst and median per attack kind; the worst seed first in ``results``."""
    by_kind: dict[str, list[float]] = {}
    for r in results:
        for a in r.attacks:
            by_kind.setdefault(a.kind, []).append(a.time_to_critical_s)

    def badness(r: SeedResult) -> tuple[int, float]:
        return (r.false_pages_attack_day + r.false_pages_benign_day,
                max(a.time_to_critical_s for a in r.attacks))

    ordered = sorted(results, key=badness, reverse=True)
    return Summary(
        seeds=[r.seed for r in results],
        worst_time_to_critical_s={k: max(v) for k, v in by_kind.items()},
        median_time_to_critical_s={k: sorted(v)[len(v) // 2] for k, v in by_kind.items()},
        detected={k: f"{sum(x != NOT_DETECTED_S for x in v)}/{len(v)}"
                  for k, v in by_kind.items()},
        false_pages=sum(r.false_pages_attack_day + r.false_pages_benign_day for r in results),
        benign_days=len(results), worst_seed=ordered[0].seed if ordered else -1,
        results=ordered)


def evaluate(config: SecurityConfig, seeds: Iterable[int]) -> Summary:
    """Every seed, summarised."""
    return summarise([evaluate_seed(config, s) for s in seeds])
