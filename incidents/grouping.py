"""Group signals into incidents: by time, the call graph, shared changes, shared templates.

A signal joins an incident that is not resolved, whose last signal is at most ``quiet_ms``
before it, and that it is related to: the same service, a service one call edge away
(either direction), a change both name, or a template both name (a call's anomaly is about
both its ends: the service called counts as well as the caller); or, within ``onset_ms`` of
the incident's first signal, a service that calls one of the services the incident's
services call (the callers of a failing dependency go bad in the same window as it, and
theirs may come first). Related to none, it opens a new incident. Two incidents are never
merged afterwards: a signal related to two joins the older (PagerDuty and incident.io group
the same way: time window + relatedness, no re-clustering). The ``quiet_ms`` bound is what
keeps two distinct problems apart: after that much silence the next signal opens a new
incident even on the same service, unless its service has been disturbed without a break
since the incident was live (the signal's ``since``: the detectors' first window of the
service's run of bad windows, none ``rearm_s`` apart: ``WindowScorer._ongoing``). A
detector keeps a series that stays bad quiet for its cooldown (5 minutes), longer than
``quiet_ms``: without this, an outage of three minutes whose later signals are new
features of the same services (a latency rise after the errors) opens a second incident.
A related incident within ``quiet_ms`` still comes first: the rule bridges a silence.

>>> from incidents.model import Signal
>>> st = GroupingState()
>>> a = Signal(id="1", ts=0, service="db", kind="anomaly")
>>> b = Signal(id="2", ts=20_000, service="api", kind="anomaly")
>>> c = Signal(id="3", ts=30_000, service="mail", kind="anomaly")
>>> [assign(st, s, edges={("api", "db")}) for s in (a, b, c)]
[('inc-...', True), ('inc-...', False), ('inc-...', True)]
>>> late = Signal(id="4", ts=200_000, service="api", kind="anomaly", since=15_000)
>>> assign(st, late)[0] == assign(st, a)[0]  # api bad since 15 s: still db's incident
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from incidents.model import SEVERITIES, Incident, Signal, TimelineEntry


class GroupingConfig(BaseModel):
    """Grouping knobs."""

    model_config = ConfigDict(frozen=True)

    quiet_ms: int = 120_000  # silence after which an incident takes no more signals
    onset_ms: int = 10_000  # callers of one callee going bad this close to an incident's
    # first signal join it: a failing dependency hurts its callers at once (one base window)
    max_signals: int = 500  # signal ids kept per incident (counts go on)


@dataclass
class GroupingState:
    """The incidents that can still take signals, and signal ids already placed."""

    incidents: dict[str, Incident] = field(default_factory=dict)
    placed: dict[str, str] = field(default_factory=dict)  # signal id -> incident id


def incident_id(sig: Signal) -> str:
    """A stable id from the opening signal (a redelivered signal opens the same one)."""
    return "inc-" + hashlib.sha1(f"{sig.service}|{sig.id}".encode()).hexdigest()[:12]


def related(inc: Incident, sig: Signal, edges: set[tuple[str, str]],
            onset_ms: int = 0) -> bool:
    """Whether a signal is about the same problem as an incident (time aside, but for
    callers of a shared callee, which must go bad within ``onset_ms`` of its first signal:
    the dependency's own signal may come after theirs in the same window)."""
    ends = {sig.service, sig.callee} - {""}
    theirs = {*inc.services, *inc.callees}
    if ends & theirs:
        return True
    if any((e, s) in edges or (s, e) in edges for e in ends for s in theirs):
        return True
    if abs(sig.ts - inc.ts) <= onset_ms:
        mine = {b for a, b in edges if a == sig.service}
        if mine and any(a in inc.services and b in mine for a, b in edges):
            return True
    if set(sig.change_ids) & set(inc.change_ids):
        return True
    return bool(sig.template and sig.template in inc.templates)


def assign(st: GroupingState, sig: Signal, edges: Iterable[tuple[str, str]] = (),
           cfg: GroupingConfig | None = None, wall_ms: int = 0) -> tuple[str, bool]:
    """Place a signal: (incident id, whether it opened a new incident). Idempotent: a
    signal already placed returns its incident and changes nothing."""
    cfg = cfg or GroupingConfig()
    if sig.id in st.placed:
        return st.placed[sig.id], False
    graph = set(edges)
    related_ones = [i for i in st.incidents.values()
                    if i.status != "resolved" and i.ts - cfg.quiet_ms <= sig.ts
                    and (sig.ts - cfg.quiet_ms <= i.last_signal_ms
                         or 0 < sig.since <= i.last_signal_ms)
                    and related(i, sig, graph, cfg.onset_ms)]
    # an incident within the quiet bound first: a disturbance going on since an older one
    # bridges a silence, it does not take signals from a live incident
    live = [i for i in related_ones if sig.ts - cfg.quiet_ms <= i.last_signal_ms]
    candidates = sorted(live or related_ones, key=lambda i: (i.ts, i.id))
    opened = not candidates
    if opened:
        inc = Incident(id=incident_id(sig), ts=sig.ts, last_signal_ms=sig.ts,
                       severity=sig.severity, opened_wall_ms=wall_ms,
                       title=sig.summary or f"{sig.kind} on {sig.service}")
        st.incidents[inc.id] = inc
    else:
        inc = candidates[0]
    add_signal(inc, sig, cfg)
    st.placed[sig.id] = inc.id
    return inc.id, opened


def add_signal(inc: Incident, sig: Signal, cfg: GroupingConfig) -> None:
    """Fold one signal into an incident (in place)."""
    inc.version += 1
    inc.ts = min(inc.ts, sig.ts)
    inc.last_signal_ms = max(inc.last_signal_ms, sig.ts)
    if sig.service not in inc.services:
        inc.services.append(sig.service)
    if sig.route and sig.route not in inc.routes:
        inc.routes.append(sig.route)
    if sig.template and sig.template not in inc.templates:
        inc.templates.append(sig.template)
    for c in sig.change_ids:
        if c not in inc.change_ids:
            inc.change_ids.append(c)
    if sig.callee and sig.callee not in inc.callees:
        inc.callees.append(sig.callee)
    for edge, found in sig.slow_calls.items():
        if edge not in inc.slow_calls:
            inc.slow_calls.append(edge)
        inc.slow_found[edge] = found.stronger(inc.slow_found.get(edge))
    if sig.kind == "change" and sig.id not in inc.change_ids:
        inc.change_ids.append(sig.id)
    if sig.kind == "alert":
        inc.alerts += 1
    elif sig.kind == "anomaly":
        inc.anomalies += 1
    if _rank(sig.severity) > _rank(inc.severity):
        inc.severity = sig.severity
    if len(inc.signal_ids) < cfg.max_signals:
        inc.signal_ids.append(sig.id)
    inc.timeline.append(TimelineEntry(ts=sig.ts, kind=sig.kind, ref=sig.id,
                                      text=f"{sig.service}: {sig.summary or sig.kind}"))
    inc.timeline.sort(key=lambda e: e.ts)


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def expire(st: GroupingState, watermark_ms: int, keep_ms: int) -> list[str]:
    """Forget incidents quiet for ``keep_ms`` (they can take no more signals); their ids."""
    gone = [i for i, inc in st.incidents.items() if inc.last_signal_ms < watermark_ms - keep_ms]
    for i in gone:
        del st.incidents[i]
    st.placed = {s: i for s, i in st.placed.items() if i not in gone}
    return gone
