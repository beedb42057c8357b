"""Rank the suspect services of an incident, each with the evidence behind it.

The method, and why (docs/incidents.md has the measured figures):

1. **Pattern surprise** (Nezha-style event-pattern comparison). For every service seen in
   the incident window, compare each pattern's count with what the baseline share of that
   pattern predicts: ``|w - e| / sqrt(e + 1)`` with ``e = n_w * (b + 0.5) / (n_b + 1)``
   (a Poisson deviation, with add-half smoothing so a pattern never seen before counts as
   new). A service's surprise is its most surprising pattern: a new error template, a
   vanished log statement (a code path no longer taken), a surge of 500s or failed calls.
   Bad outcomes (error and warning lines, failed calls, 4xx and 5xx) count only when they
   rise: errors that stopped, such as an earlier incident's in the baseline, are no
   evidence against a service.
   Comparing shares, not rates, makes it insensitive to traffic going up or down.
2. **Resource saturation.** The largest rise of a resource gauge (CPU, memory, pool) over
   its baseline in units of its baseline spread, ``(max_w - mean_b) / (sd_b + 1)``,
   weighted by ``saturation_weight`` so it is comparable with the surprise.
3. **Changes.** A deploy or config change of the service within ``change_window_ms``
   before the incident's first signal multiplies its score by ``1 + change_boost``, once
   however many changes it had.
4. **Direction of the call graph** (MicroRCA / MonitorRank intuition: errors and latency
   flow upstream from the root). Failed calls are evidence about the callee, pooled over
   all its callers. A caller that sees a callee failing (its failed calls to it deviate by
   at least ``callee_threshold`` and the callee scores that much) ranks below it:
   ``victim_factor`` times the smaller of the two scores, down chains of callers. Any
   other service calling a suspect that scores at least ``callee_threshold`` is probably
   a victim (score times ``victim_factor``), unless its own callers see it failing while
   it sees no callee failing: errors start there.
   Slower calls are evidence about the callee too. A delayed service's own logs see
   nothing; its callers wait, and their timeouts and slow requests are the symptom. When
   the detectors found a caller's calls to a service slower in the incident (an edge's
   latency anomaly, ``slow_calls``), the callee takes ``slow_weight`` times that caller's
   score (the largest of its slowed callers), and the caller ranks below it as above,
   unless the slowness lies with the caller (``slow_callees``). The slow calls are
   evidence in their own right, on the surprise's scale (standard deviations): each is
   an edge latency anomaly whose calibrated score gives its strength (the normal deviate
   of its p-value, at least ``SLOW_Z``, the detectors' threshold, p = 0.0015), and the
   callers that see it slow are independent witnesses, combined by Stouffer's method
   (``stouffer``: ``sum(z) / sqrt(n)``). A delayed service whose callers' logs change
   nothing (only their latency) still outranks the ordinary noise of the others.
   The slow edges that say nothing against their callee weigh the same way for the
   caller, the end they share (``slow_out``: its calls to ``k`` callees slowed).
   How strong a slow edge is, the callers' own record says too: their calls slower than
   nearly all of the baseline's, counted from latency bands (``slow_counts``). Which end
   it lies with, the callee's serving time says: an edge whose callers wait longer than
   its callee serves has a network gap (``network_gap``), and lies with the end the
   gapped edges share.
5. **Several lines of evidence.** A service's lines (surprise, saturation, its callers'
   slow calls, its own slow calls) that reach ``SLOW_Z`` combine by Stouffer's method,
   when that beats the loudest alone. Its callers' failed calls are no line of their own:
   its own 5xx count the same failures.
6. **Who went bad first** breaks ties and is shown as evidence.
7. **Scope.** With a call graph, the suspects that can explain the incident's services
   (they or a service they call, directly or not: the anomalous subgraph of MicroRCA)
   rank before the others, however loud another problem elsewhere is.

Every knob is in ``RankConfig``; the defaults are the knobs chosen leave-one-out on the
Nezha TrainTicket cases (``logwarden eval incidents``).

>>> from collections import Counter
>>> base = {"api": Counter({"H:/x:200": 100}), "db": Counter({"T:q:INFO": 100})}
>>> win = {"api": Counter({"H:/x:200": 70, "H:/x:500": 30}),
...        "db": Counter({"T:q:INFO": 40, "T:timeout:ERROR": 40})}
>>> r = rank(win, base, edges={("api", "db")})
>>> [s.service for s in r]
['db', 'api']
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from incidents.patterns import BANDS_PER_OCTAVE

SLOW_Z = 3.0  # one edge latency anomaly, in standard deviations: the detectors' threshold
SLOW_TAIL = 0.01  # a call is slow when slower than this share of the baseline's calls
MIN_CALLS = 10  # baseline calls of an edge below which its latency says nothing
GAP_SHARE = 0.25  # the share of a wait's rise not spent serving that makes a network gap
_HALF_BAND = 2.0 ** (0.5 / BANDS_PER_OCTAVE)  # a band's geometric middle over its floor


class RankConfig(BaseModel):
    """The ranking's knobs (chosen leave-one-out, see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    callee_threshold: float = 4.0  # a callee scoring this much makes its callers victims
    victim_factor: float = 0.7  # a victim's score is multiplied by this
    saturation_weight: float = 0.5  # one baseline spread of resource rise = this much surprise
    inbound_weight: float = 1.0  # callers' surging failed calls to a service count this much
    # a service its callers' calls slowed down to takes this share of their score (0: off)
    slow_weight: float = 1.0
    change_window_ms: int = 30 * 60_000  # a change this long before the first signal counts
    change_boost: float = 0.5  # a recent change multiplies its service's score by 1 + this
    top_patterns: int = 3  # patterns quoted per suspect in the evidence
    # the top this-many suspects of earlier incidents leave those incidents' windows out of
    # their baseline (a repeated fault must not look normal the second time)
    exclude_top: int = 1


@dataclass(frozen=True)
class Change:
    """A deploy / config / flag change, as the ranking needs it."""

    id: str
    ts: int  # epoch ms
    service: str
    kind: str
    description: str = ""


@dataclass
class Suspect:
    """One ranked service with the signals behind its score."""

    service: str
    score: float
    surprise: float = 0.0
    saturation: float = 0.0
    victim_of: str = ""  # the anomalous callee that made this service a likely victim
    inbound: str = ""  # callers' failed calls to this service, when they made its score
    slowed: str = ""  # the callers whose calls to it slowed down
    slow_out: str = ""  # its calls that slowed down where the slowness lies with it
    first_bad_ms: int | None = None
    patterns: list[tuple[str, int, float]] = field(default_factory=list)  # key, now, expected
    changes: list[str] = field(default_factory=list)  # change ids
    lead: str = "patterns"  # the signal its score came from: its evidence leads with it

    def evidence(self) -> list[str]:
        """Short human lines: why this service is a suspect, the signal its score came from
        first (a pack quotes the first few)."""
        lines: dict[str, list[str]] = {"patterns": [
            f"{describe(key)}: {now} in the window, {expected:.1f} expected"
            for key, now, expected in self.patterns]}
        if self.saturation >= 1.0:  # within one spread of normal it says nothing
            lines["saturation"] = [
                f"resource saturation: {self.saturation:.1f} baseline spreads above normal"]
        if self.inbound:
            lines["inbound"] = [f"callers see it failing: {self.inbound}"]
        if self.slowed:
            lines["slowed"] = [f"callers see it slow: {self.slowed}"]
        if self.slow_out:
            lines["slow_out"] = [f"its calls slowed down: to {self.slow_out}"]
        if self.victim_of:
            lines["victim"] = [f"calls {self.victim_of}, which is anomalous (likely a victim)"]
        if self.changes:
            lines["changes"] = ["recent change: " + ", ".join(self.changes)]
        first = lines.pop(self.lead, [])
        return first + [line for part in lines.values() for line in part]


def describe(pattern: str) -> str:
    """A pattern key in words.

    >>> describe("P:db:GET /q:0")
    'failed calls to db GET /q'
    """
    kind, _, rest = pattern.partition(":")
    if kind == "H":
        route, _, status = rest.rpartition(":")
        return f"HTTP {status} on {route}"
    if kind == "P":
        body, _, ok = rest.rpartition(":")
        callee, _, op = body.partition(":")
        return f"{'failed ' if ok == '0' else ''}calls to {callee} {op}".rstrip()
    template, _, level = rest.rpartition(":")
    return f"{level} log {template}"


ERROR_MARKS = (":ERROR", ":CRITICAL", ":FATAL", ":0")  # error lines, failed calls
BAD_MARKS = (*ERROR_MARKS, ":WARN", ":WARNING")  # outcomes that are bad news when they rise


def bad_outcome(key: str) -> bool:
    """Whether a pattern is a bad outcome (an error or warning line, a failed call, an HTTP
    4xx or 5xx): news when it rises, never when it falls.

    >>> bad_outcome("H:/login:401"), bad_outcome("T:A#3:WARN"), bad_outcome("H:/x:200")
    (True, True, False)
    """
    status = key.rsplit(":", 1)[-1] if key.startswith("H:") else ""
    return key.endswith(BAD_MARKS) or (len(status) == 3 and status[0] in "45")


def surprise(window: Counter[str], baseline: Counter[str], top: int = 3,
             min_baseline: int = 100) -> tuple[float, list[tuple[str, int, float]]]:
    """The largest Poisson deviation of a pattern's count from its baseline share, and the
    ``top`` most surprising patterns as (key, count, expected). A bad outcome counts only
    when it rises: errors that stop (an earlier incident's, in the baseline) say nothing
    against a service, while a normal code path that stops does.

    With fewer than ``min_baseline`` baseline events (a new service, the first minutes of
    a fleet) shares mean nothing: only error lines, 5xx and failed calls count then, each
    against an expectation of zero.
    """
    n_w = sum(window.values())
    if n_w == 0:
        return 0.0, []
    n_b = sum(baseline.values())
    scored = []
    if n_b < min_baseline:
        for key, now in window.items():
            if key.endswith(ERROR_MARKS) or _is_5xx(key):
                scored.append((math.sqrt(now), key, now, 0.0))
    else:
        for key in window.keys() | baseline.keys():
            expected = n_w * (baseline[key] + 0.5) / (n_b + 1)
            dev = (window[key] - expected) / math.sqrt(expected + 1)
            if dev > 0 or not bad_outcome(key):
                scored.append((abs(dev), key, window[key], expected))
    scored.sort(reverse=True)
    return (scored[0][0] if scored else 0.0), [(k, n, e) for _, k, n, e in scored[:top]]


def slow_counts(window: Mapping[str, Counter[str]], baseline: Mapping[str, Counter[str]]
                ) -> dict[tuple[str, str], tuple[int, float, int]]:
    """Per call edge (caller, callee): how many of the window's calls were slower than
    ``1 - SLOW_TAIL`` of the baseline's calls, how many were expected to be (the same
    add-half smoothed share as ``surprise``) and the latency band the slow ones are above,
    from the ``L:<callee>:<band>`` counts of the callers (``incidents.patterns``). An
    edge with fewer than ``MIN_CALLS`` baseline calls, or none in the window, is left out.

    >>> base = {"api": Counter({"L:db:12": 990, "L:db:13": 10})}
    >>> got = slow_counts({"api": Counter({"L:db:12": 40, "L:db:30": 60})}, base)
    >>> {e: (slow, round(expected, 2), band) for e, (slow, expected, band) in got.items()}
    {('api', 'db'): (60, 1.05, 12)}
    """
    out: dict[tuple[str, str], tuple[int, float, int]] = {}
    for caller, counts in window.items():
        now = _bands(counts)
        if not now:
            continue
        then = _bands(baseline.get(caller, Counter()))
        for callee, bands in now.items():
            base = then.get(callee, Counter())
            n_b = sum(base.values())
            if n_b < MIN_CALLS:
                continue
            above = n_b  # the lowest band with at most SLOW_TAIL of the calls above it
            for cut in sorted(base):
                above -= base[cut]
                if above <= SLOW_TAIL * n_b:
                    break
            slow = sum(n for band, n in bands.items() if band > cut)
            out[caller, callee] = (slow, sum(bands.values()) * (above + 0.5) / (n_b + 1), cut)
    return out


def band_floor_ms(band: int) -> float:
    """The lowest latency of a band (``incidents.patterns.latency_band``).

    >>> band_floor_ms(30)
    181.01933598375618
    """
    return float(2.0 ** (band / BANDS_PER_OCTAVE))


def _without_bands(counts: Counter[str]) -> Counter[str]:
    return Counter({k: n for k, n in counts.items() if not k.startswith(("L:", "S:"))})


def _served(counts: Counter[str]) -> Counter[int]:
    """Latency band -> served requests, from a service's ``S:`` counts."""
    return Counter({int(k[2:]): n for k, n in counts.items() if k.startswith("S:")})


def _mean_ms(bands: Counter[int]) -> float:
    """The mean latency of banded counts (each band at its geometric middle)."""
    n = sum(bands.values())
    return sum(c * band_floor_ms(b) * _HALF_BAND for b, c in bands.items()) / n if n else 0.0


def _bands(counts: Counter[str]) -> dict[str, Counter[int]]:
    """Callee -> latency band -> calls, from a service's ``L:`` counts."""
    out: dict[str, Counter[int]] = {}
    for key, n in counts.items():
        if key.startswith("L:"):
            callee, _, band = key[2:].rpartition(":")
            out.setdefault(callee, Counter())[int(band)] += n
    return out


def _failed_call(key: str) -> bool:
    return key.startswith("P:") and key.endswith(":0")


def _deviation(now: float, expected: float) -> float:
    """A count's Poisson deviation above what was expected (``surprise``'s measure)."""
    return (now - expected) / math.sqrt(expected + 1)


def _is_5xx(key: str) -> bool:
    return key.startswith("H:") and key.rsplit(":", 1)[-1].startswith("5")


def saturation(window: Iterable[float], baseline: Iterable[float]) -> float:
    """How far a resource gauge's peak rose above its baseline, in baseline spreads + 1."""
    w = list(window)
    b = list(baseline)
    if not w or not b:  # no baseline: a level alone says nothing
        return 0.0
    mu = sum(b) / len(b)
    sd = math.sqrt(sum((x - mu) ** 2 for x in b) / len(b))
    return max(0.0, (max(w) - mu) / (sd + 1.0))


def slow_callees(slow_calls: Iterable[tuple[str, str]], saturated: Collection[str] = (),
                 gaps: Mapping[tuple[str, str], bool] | None = None) -> dict[str, set[str]]:
    """Callee -> the callers whose calls to it slowed down, for the edges whose slowness
    lies with the callee. A slow edge has two ends; the one the slow edges share is the
    one that is slow: a service several callers see slow is, while a caller whose calls
    to several callees all slowed is slow itself, and its edges say nothing against those
    callees. So is a ``saturated`` caller (starved of CPU, it times its own waiting into
    every call). Any other edge on its own (one caller, one callee) counts against the
    callee.

    ``gaps`` says, for the edges whose callee's own serving time is known, whether the
    callers waited longer than the callee served (``network_gap``). An edge the callee's
    serving explains lies with the callee. An edge with a gap lies with the end the
    gapped edges share: a service delayed on the network delays both its callers'
    waits and its own calls out, and so shares more gapped edges than either neighbour.

    >>> sorted(slow_callees([("a", "db"), ("b", "db")])["db"])
    ['a', 'b']
    >>> slow_callees([("x", "db"), ("x", "cache"), ("x", "queue"), ("y", "cache")])
    {'cache': {'y'}}
    >>> slow_callees([("x", "db")], saturated={"x"})
    {}
    >>> slow_callees([("web", "api"), ("api", "db")],
    ...              gaps={("web", "api"): True, ("api", "db"): True})
    {'api': {'web'}}
    >>> sorted(slow_callees([("web", "api"), ("api", "db")],
    ...                     gaps={("web", "api"): False, ("api", "db"): True}).items())
    [('api', {'web'}), ('db', {'api'})]
    """
    edges = {(a, b) for a, b in slow_calls if a != b and a not in saturated}
    gaps = gaps or {}
    outs: dict[str, int] = {}
    ins: dict[str, int] = {}
    shared: dict[str, int] = {}
    for a, b in edges:
        outs[a] = outs.get(a, 0) + 1
        ins[b] = ins.get(b, 0) + 1
        if gaps.get((a, b)):
            shared[a] = shared.get(a, 0) + 1
            shared[b] = shared.get(b, 0) + 1
    out: dict[str, set[str]] = {}
    for a, b in sorted(edges):
        gap = gaps.get((a, b))
        if (gap is False or (gap and shared[b] >= shared[a])
                or (gap is None and ins[b] >= outs[a])):
            out.setdefault(b, set()).add(a)
    return out


def network_gap(window: Mapping[str, Counter[str]], baseline: Mapping[str, Counter[str]],
                edges: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """For each slow edge (caller, callee) whose two latencies are known (``MIN_CALLS`` in
    the baseline), whether the callers' extra waiting is not spent serving in the callee:
    more than ``GAP_SHARE`` of the rise of the callers' mean wait for the callee beyond the
    rise of the callee's mean serving time, from the ``L:`` and ``S:`` latency bands.

    A call's wait is the callee's serving time plus the network both ways. When the callee
    is delayed on the network its serving time stays and the gap is all of the wait's rise;
    when the service it calls is slow, it serves slower by as much as its callers wait
    (no gap); when the caller is delayed, its callers wait twice the delay for it while
    it serves once the delay longer (half). A quarter separates them.

    >>> base = {"web": Counter({"L:api:20": 100}), "api": Counter({"S:19": 100})}
    >>> slow = {"web": Counter({"L:api:24": 100}), "api": Counter({"S:23": 100})}
    >>> network_gap(slow, base, [("web", "api")])
    {('web', 'api'): False}
    >>> slow["api"] = Counter({"S:19": 100})
    >>> network_gap(slow, base, [("web", "api")])
    {('web', 'api'): True}
    """
    out: dict[tuple[str, str], bool] = {}
    for a, b in edges:
        waits = [_bands(c).get(b, Counter()) for c in (window.get(a, Counter()),
                                                       baseline.get(a, Counter()))]
        serves = [_served(c) for c in (window.get(b, Counter()), baseline.get(b, Counter()))]
        if min(sum(waits[1].values()), sum(serves[1].values())) < MIN_CALLS or not (
                waits[0] and serves[0]):
            continue
        wait = _mean_ms(waits[0]) - _mean_ms(waits[1])
        serve = _mean_ms(serves[0]) - _mean_ms(serves[1])
        if wait > 0:
            out[a, b] = wait - serve > GAP_SHARE * wait
    return out


def _suspect(suspects: dict[str, Suspect], name: str, first_bad: Mapping[str, int]
             ) -> Suspect:
    """The suspect ``name``, added with no score of its own when only others' evidence
    (its callers' failed or slowed calls) names it."""
    if name not in suspects:
        suspects[name] = Suspect(service=name, score=0.0, first_bad_ms=first_bad.get(name))
    return suspects[name]


def rank(window: Mapping[str, Counter[str]], baseline: Mapping[str, Counter[str]],
         edges: Iterable[tuple[str, str]] = (),
         resources: Mapping[str, float] | None = None,
         changes: Iterable[Change] = (), first_bad: Mapping[str, int] | None = None,
         opened_ms: int | None = None, cfg: RankConfig | None = None,
         slow_calls: Iterable[tuple[str, str]] | Mapping[tuple[str, str], float] = (),
         scope: Collection[str] = (),
         slow_detail: Mapping[tuple[str, str], str] | None = None) -> list[Suspect]:
    """Suspect services, best first (see the module docstring for the method).

    ``window``/``baseline``: pattern counts per service; ``edges``: (caller, callee);
    ``resources``: saturation per service (``saturation``); ``first_bad``: the first
    anomalous event time per service; ``opened_ms``: the incident's first signal;
    ``slow_calls``: (caller, callee) edges the detectors found slower in the incident,
    or a mapping of them to each finding's strength in standard deviations (at least
    ``SLOW_Z``, the detectors' threshold, which is also what a bare edge counts), and
    ``slow_detail`` the findings in words, quoted in the evidence;
    ``scope``: the incident's services. With a call graph, the suspects that can explain
    them (they or a service they call, directly or not) rank before any other.
    """
    edges = list(edges)
    slow_z = {e: max(SLOW_Z, slow_calls[e] if isinstance(slow_calls, Mapping) else SLOW_Z)
              for e in slow_calls}
    detail = dict(slow_detail or {})
    # how strong a slow edge the detectors found is: the callers' own record of how long
    # they waited, the calls slower than nearly all of the baseline's, on the surprise's
    # scale (an edge the detectors did not find slow stays out: latency tails are bursty)
    for pair, (slow, expected, cut) in slow_counts(window, baseline).items():
        dev = _deviation(slow, expected)
        if pair in slow_z and dev > slow_z[pair]:
            slow_z[pair] = dev
            detail[pair] = (f"{slow} calls slower than {band_floor_ms(cut + 1):.3g} ms, "
                            f"{expected:.1f} expected")
    gaps = network_gap(window, baseline, slow_z)
    window = {s: _without_bands(c) for s, c in window.items()}
    baseline = {s: _without_bands(c) for s, c in baseline.items()}
    cfg = cfg or RankConfig()
    resources = resources or {}
    first_bad = first_bad or {}
    suspects: dict[str, Suspect] = {}
    found: dict[str, dict[str, float]] = {}  # suspect -> its lines of evidence' strengths
    for service in sorted(window.keys() | resources.keys()):
        own = window.get(service, Counter())
        if cfg.inbound_weight > 0:  # failed calls are evidence about the callee (below)
            own = Counter({k: n for k, n in own.items() if not _failed_call(k)})
        s, top = surprise(own, baseline.get(service, Counter()), cfg.top_patterns)
        sat = resources.get(service, 0.0)
        suspects[service] = Suspect(service=service, score=max(s, cfg.saturation_weight * sat),
                                    surprise=s, saturation=sat, patterns=top,
                                    first_bad_ms=first_bad.get(service),
                                    lead="saturation" if cfg.saturation_weight * sat > s
                                    else "patterns")
        found[service] = {"patterns": s, "saturation": cfg.saturation_weight * sat}
    # failed calls surging in callers are evidence against the callee (a service that is
    # down writes nothing itself: only its callers see it). All callers' failed calls to a
    # callee are pooled: every one of them is evidence about it.
    per_edge: dict[tuple[str, str], list[float]] = {}  # failed calls: [now, expected]
    if cfg.inbound_weight > 0:
        inbound: dict[str, list[float]] = {}  # callee -> [now, expected]
        callers: dict[str, set[str]] = {}
        for caller, counts in window.items():
            n_w = sum(counts.values())
            base = baseline.get(caller, Counter())
            n_b = sum(base.values())
            for key, now in counts.items():
                if not _failed_call(key):
                    continue
                callee = key[2:].split(":", 1)[0]
                acc = inbound.setdefault(callee, [0.0, 0.0])
                acc[0] += now
                e = n_w * (base[key] + 0.5) / (n_b + 1)
                acc[1] += e
                edge = per_edge.setdefault((caller, callee), [0.0, 0.0])
                edge[0] += now
                edge[1] += e
                callers.setdefault(callee, set()).add(caller)
        for callee, (failed, expected) in sorted(inbound.items()):
            dev = _deviation(failed, expected)
            target = _suspect(suspects, callee, first_bad)
            if cfg.inbound_weight * dev > target.score:
                target.score, target.lead = cfg.inbound_weight * dev, "inbound"
                target.inbound = (f"{failed:.0f} failed calls from "
                                  f"{', '.join(sorted(callers[callee]))} ({expected:.1f} expected)")
    # a resource this many baseline spreads above normal makes a caller slow itself
    hot = {n for n, sus in suspects.items() if sus.saturation >= cfg.callee_threshold}
    slowed = slow_callees(slow_z, hot, gaps) if cfg.slow_weight > 0 else {}
    scores = {name: sus.score for name, sus in suspects.items()}
    for callee, who in sorted(slowed.items()):
        # a delayed service's own logs see nothing; its callers' waiting (timeouts, slow
        # requests, queued work) is the symptom, and it is evidence against the callee
        target = _suspect(suspects, callee, first_bad)
        weight = cfg.slow_weight * max(max(scores.get(c, 0.0) for c in who),
                                       stouffer(slow_z[c, callee] for c in who))
        found.setdefault(callee, {})["slowed"] = weight
        if weight > target.score:
            target.score, target.lead = weight, "slowed"
        target.slowed = ", ".join(_quoted(c, (c, callee), detail) for c in sorted(who))
    # the other end of the slow edges that say nothing against their callee: the caller
    # whose calls to several callees all slowed, or a starved one, is the slow end itself
    slow_out: dict[str, set[str]] = {}
    for caller, callee in slow_z if cfg.slow_weight > 0 else ():
        if caller != callee and caller not in slowed.get(callee, ()):
            slow_out.setdefault(caller, set()).add(callee)
    for caller, them in sorted(slow_out.items()):
        target = _suspect(suspects, caller, first_bad)
        weight = cfg.slow_weight * stouffer(slow_z[caller, c] for c in them)
        found.setdefault(caller, {})["slow_out"] = weight
        if weight > target.score:
            target.score, target.lead = weight, "slow_out"
        target.slow_out = ", ".join(_quoted(c, (caller, c), detail) for c in sorted(them))
    # independent lines of evidence against one service combine (Stouffer), each that
    # reaches the detectors' threshold: a starved service's saturation, its slow calls and
    # its errors together say more than the loudest of them. Its callers' failed calls are
    # no other line: they are the failures its own 5xx already count
    for name, lines in found.items():
        strong = [v for v in lines.values() if v >= SLOW_Z]
        if len(strong) > 1:
            suspects[name].score = max(suspects[name].score, stouffer(strong))
    if opened_ms is not None:
        for ch in changes:
            s2 = suspects.get(ch.service)
            if s2 is not None and opened_ms - cfg.change_window_ms <= ch.ts <= opened_ms + 60_000:
                if not s2.changes:  # once, however many changes it had
                    s2.score *= 1 + cfg.change_boost
                s2.changes.append(ch.id)
    raw = {name: s.score for name, s in suspects.items()}
    callees: dict[str, set[str]] = {}
    for caller, callee in edges:
        if caller != callee:
            callees.setdefault(caller, set()).add(callee)
    sees_failing: dict[str, str] = {}
    for name, sus in suspects.items():
        # a caller that sees a callee failing or slow ranks below it, however loud its own
        # errors
        # (a service that is the slow end of its own calls is slow itself: a slow callee
        # among them does not make it a victim)
        failing = [c for c in sorted(callees.get(name, set()) | {
                       c for c, who in slowed.items() if name in who})
                   if raw.get(c, 0.0) >= cfg.callee_threshold
                   and (_deviation(*per_edge.get((name, c), (0.0, 0.0))) >= cfg.callee_threshold
                        or (name in slowed.get(c, ()) and not sus.slow_out))]
        if failing:
            sus.victim_of = sees_failing[name] = max(failing, key=lambda c: raw[c])
            continue
        if sus.inbound or sus.slowed or sus.slow_out:  # its callers see it failing or slow,
            continue  # or it is the slow end of its calls, and it sees no callee failing
        worst = max(callees.get(name, ()), key=lambda c: raw.get(c, 0.0), default=None)
        if worst is not None and raw.get(worst, 0.0) >= cfg.callee_threshold:
            sus.score *= cfg.victim_factor
            sus.victim_of = worst
    for _ in range(len(sees_failing)):  # down the chains of callers, callees first
        for name, callee in sees_failing.items():
            sus = suspects[name]
            sus.score = cfg.victim_factor * min(raw[name], suspects[callee].score)
    reach = downstream(scope, [*edges, *slow_z]) if scope and callees else set(suspects)
    never = 2**62
    return sorted(suspects.values(), key=lambda s: (
        s.service not in reach, -s.score, s.first_bad_ms or never, s.service))


def _quoted(name: str, edge: tuple[str, str], detail: Mapping[tuple[str, str], str] | None
            ) -> str:
    said = (detail or {}).get(edge)
    return f"{name} ({said})" if said else name


def stouffer(zs: Iterable[float]) -> float:
    """Independent findings combined (Stouffer's method): their sum over the root of their
    number, in standard deviations.

    >>> round(stouffer([3.0, 3.0]), 2), stouffer([])
    (4.24, 0.0)
    """
    z = list(zs)
    return sum(z) / math.sqrt(len(z)) if z else 0.0


def downstream(services: Iterable[str], edges: Iterable[tuple[str, str]]) -> set[str]:
    """``services`` and every service they call, directly or through others: where the
    cause of their symptoms can lie, since errors and latency flow upstream.

    >>> sorted(downstream(["api"], [("web", "api"), ("api", "db"), ("db", "disk")]))
    ['api', 'db', 'disk']
    """
    out: dict[str, set[str]] = {}
    for caller, callee in edges:
        out.setdefault(caller, set()).add(callee)
    seen = set(services)
    todo = list(seen)
    while todo:
        for callee in out.get(todo.pop(), ()):
            if callee not in seen:
                seen.add(callee)
                todo.append(callee)
    return seen
