"""Inhibition: source alerts mute target alerts (service down mutes its route alerts), and an
upstream dependency outage mutes its callers' alerts, using the call graph from ``peer`` data.

``suppression_reasons`` combines silences, inhibitions and flapping into one
fingerprint -> reason map that ``grouping.flush`` takes.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerting.lifecycle import Alert
from alerting.silences import Matcher, Silence, matches_all, parse_matchers, silenced_by
from alerting.yamlfile import Duration


class InhibitRule(BaseModel):
    """Alertmanager-style: a firing source mutes matching targets with equal ``equal`` labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_matchers: list[Matcher] = Field(min_length=1)
    target_matchers: list[Matcher] = Field(min_length=1)
    equal: list[str] = []

    @field_validator("source_matchers", "target_matchers", mode="before")
    @classmethod
    def _parse(cls, v: list[str]) -> list[Matcher]:
        return parse_matchers(v)


class DependencyInhibit(BaseModel):
    """An alert matching ``source_matchers`` on service S mutes alerts of S's callers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_matchers: list[Matcher] = [Matcher(name="category", value="outage")]
    depth: int = Field(default=2, ge=1)  # callers of callers, ...
    max_age: Duration = 86400.0  # ignore call edges not seen for this long

    @field_validator("source_matchers", mode="before")
    @classmethod
    def _parse(cls, v: list[str]) -> list[Matcher]:
        return parse_matchers(v)


class CallGraph(BaseModel):
    """Who calls whom, learnt from logs' ``peer`` field: callee -> caller -> last seen."""

    callers: dict[str, dict[str, float]] = {}

    def add_call(self, caller: str, callee: str, ts: float) -> None:
        """Record one observed call (keeps the latest time)."""
        edges = self.callers.setdefault(callee, {})
        edges[caller] = max(ts, edges.get(caller, 0.0))

    def callers_of(self, service: str, now: float, depth: int = 2,
                   max_age: float = 86400.0) -> dict[str, int]:
        """Services calling ``service`` (directly: 1, through one more hop: 2, ...)."""
        found: dict[str, int] = {}
        frontier = [service]
        for d in range(1, depth + 1):
            nxt = []
            for s in frontier:
                for caller, seen in self.callers.get(s, {}).items():
                    if now - seen <= max_age and caller not in found and caller != service:
                        found[caller] = d
                        nxt.append(caller)
            frontier = nxt
        return found


def inhibitions(alerts: Iterable[Alert], rules: Iterable[InhibitRule],
                dependency: DependencyInhibit | None = None, graph: CallGraph | None = None,
                now: float = 0.0) -> dict[str, str]:
    """fingerprint -> why it is inhibited, for every inhibited active alert."""
    live = [a for a in alerts if a.active]
    out: dict[str, str] = {}
    for rule in rules:
        sources = [a for a in live if matches_all(rule.source_matchers, a.labels)]
        for t in live:
            if t.fingerprint in out or not matches_all(rule.target_matchers, t.labels):
                continue
            for s in sources:
                if s.fingerprint != t.fingerprint and all(
                        s.labels.get(k, "") == t.labels.get(k, "") for k in rule.equal):
                    out[t.fingerprint] = f"inhibited by {s.rule} ({s.fingerprint})"
                    break
    if dependency is not None and graph is not None:
        for s in live:
            if not matches_all(dependency.source_matchers, s.labels):
                continue
            down = s.labels.get("service", "")
            hops = graph.callers_of(down, now, dependency.depth, dependency.max_age)
            for t in live:
                svc = t.labels.get("service", "")
                if svc in hops and t.fingerprint not in out:
                    out[t.fingerprint] = (f"inhibited: upstream {down} is down "
                                          f"({s.rule}, {hops[svc]} hop(s) away)")
    return out


def suppression_reasons(alerts: Iterable[Alert], silences: Iterable[Silence],
                        rules: Iterable[InhibitRule], now: float,
                        dependency: DependencyInhibit | None = None,
                        graph: CallGraph | None = None) -> dict[str, str]:
    """fingerprint -> reason for every active alert that must not page: silenced, inhibited or
    flapping."""
    alerts = list(alerts)
    sil = list(silences)
    out: dict[str, str] = {}
    for a in alerts:
        if not a.active:
            continue
        ids = silenced_by(a.labels, sil, now)
        if ids:
            out[a.fingerprint] = "silenced by " + ", ".join(ids)
        elif a.flapping:
            out[a.fingerprint] = "flapping"
    for fp, why in inhibitions(alerts, rules, dependency, graph, now).items():
        out.setdefault(fp, why)
    return out
