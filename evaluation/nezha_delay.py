"""``logwarden eval nezha-delay``: network delays injected into the real TrainTicket traffic of
the Nezha data set, a fault kind that data set lacks, replayed and paged like ``eval nezha``.

Chaos engineering tools (Chaos Mesh's ``NetworkChaos``, ``tc netem``) delay every packet a pod
sends. On the recorded traces that means, while the fault lasts:

- a call **to** the delayed service returns ``delay`` later (its responses are late);
- a call **from** it arrives ``delay`` later (its requests are late);
- every span of the same trace that encloses a delayed call waits for it: the delayed
  service's own server span and all its callers' spans, up to the entry point.

Spans carry no parent ids here, so "encloses" is read from the intervals: a span encloses a
call when it starts no later and ends no earlier (``SKEW_MS`` of clock skew allowed between
pods). Later spans of the trace keep their timestamps, and the per-minute metrics are left
as recorded: they only ever raise warnings, never pages.

Where: into the telemetry window of every recorded case, at its recorded start, for 3
minutes (the data set's fault length), on a service other than that case's root. Each round
of ``plan`` moves every fault to the next candidate service, so rounds together cover the
fleet; faults that share a call edge are replayed apart (``replays``). The recorded fault
raises its own alerts there, so the injected one is judged by the
alerts that are new: no alert of the same rule and labels in that window of a replay of the
untouched data. A new alert belongs to the injected fault when it names the delayed service
or one that calls it, directly or not; any other new alert is false.

>>> ev = [{"ts": 1000, "service": "a", "trace_id": "t", "http": {"duration_ms": 50.0}},
...       {"ts": 1010, "service": "a", "trace_id": "t",
...        "peer": {"service": "b", "duration_ms": 20.0}, "message": "call b in 20.0ms"},
...       {"ts": 1012, "service": "b", "trace_id": "t", "http": {"duration_ms": 15.0}}]
>>> out = list(inject(iter([("logs", e) for e in ev]), [Delay("b", 0, 10_000, 100)]))
>>> [e.get("http", e.get("peer"))["duration_ms"] for _, e in out], out[1][1]["message"]
([150.0, 120.0, 15.0], 'call b in 120.0ms')
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerting.config import load_alerting
from detectors.settings import DetectionSettings
from evaluation import nezha, paging, rca
from incidents.ranking import downstream
from schemas.windows import WindowStats

FAULT_MS = 180_000  # the data set's fault length: 3 minutes
SKEW_MS = 2.0  # clock skew allowed between pods when one span encloses another
TAIL_MS = 60_000  # a trace that started in a fault window has ended this long after it
_DURATION = re.compile(r"(in |\()([0-9.]+)( ?ms)")

Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Delay:
    """``delay_ms`` on every packet ``service`` sends, from ``start_ms`` to ``end_ms``."""

    service: str
    start_ms: int
    end_ms: int
    delay_ms: float


def inject(stream: Iterator[Event], delays: Iterable[Delay]) -> Iterator[Event]:
    """``stream`` (ordered by ``ts``) with each delay applied to the spans of its window (see
    the module doc); events are copied, never changed in place."""
    pending = sorted(delays, key=lambda d: d.start_ms)
    buffer: list[Event] = []
    current: list[Delay] = []
    for topic, event in stream:
        ts = int(event["ts"])
        if current and ts >= max(d.end_ms for d in current) + TAIL_MS:
            yield from _apply(buffer, current)
            buffer, current = [], []
        while pending and pending[0].start_ms <= ts:
            current.append(pending.pop(0))
        if current:
            buffer.append((topic, event))
        else:
            yield topic, event
    yield from _apply(buffer, current)


def _apply(buffer: list[Event], delays: list[Delay]) -> Iterator[Event]:
    traces: dict[str, list[int]] = defaultdict(list)
    for i, (_topic, e) in enumerate(buffer):
        if e.get("trace_id") and (e.get("http") or e.get("peer")):
            traces[e["trace_id"]].append(i)
    extra: dict[int, float] = defaultdict(float)
    for members in traces.values():
        spans = [(i, float(buffer[i][1]["ts"]), _span(buffer[i][1])) for i in members]
        for i, start, dur in spans:
            e = buffer[i][1]
            callee = (e.get("peer") or {}).get("service")
            if callee is None:
                continue
            d = next((d for d in delays if d.start_ms <= start < d.end_ms
                      and d.service in (callee, e.get("service"))), None)
            if d is None:
                continue
            for j, s2, d2 in spans:  # the call itself and every span enclosing it
                if s2 <= start + SKEW_MS and s2 + d2 >= start + dur - SKEW_MS:
                    extra[j] += d.delay_ms
    for i, (topic, e) in enumerate(buffer):
        if i in extra:
            e = _delayed(e, extra[i])
        yield topic, e


def _span(e: dict[str, Any]) -> float:
    return float((e.get("http") or e.get("peer") or {}).get("duration_ms") or 0.0)


def _delayed(e: dict[str, Any], add_ms: float) -> dict[str, Any]:
    out = copy.deepcopy(e)
    part = out.get("http") or out["peer"]
    part["duration_ms"] = round(float(part.get("duration_ms") or 0.0) + add_ms, 1)
    if isinstance(out.get("message"), str):
        ms = part["duration_ms"]
        out["message"] = _DURATION.sub(
            lambda m: f"{m.group(1)}{ms if m.group(1) == 'in ' else round(ms)}{m.group(3)}",
            out["message"], count=1)
    return out


def upstream(service: str, call_graph: dict[str, dict[str, int]]) -> set[str]:
    """``service`` and every service that calls it, directly or through others."""
    return downstream([service], [(b, a) for a, callees in call_graph.items() for b in callees])


def candidates(call_graph: dict[str, dict[str, int]]) -> list[str]:
    """Services some other service calls: a delay on them shows on a call edge."""
    return sorted({callee for callees in call_graph.values() for callee in callees})


def plan(cases: list[dict[str, Any]], services: list[str], delay_ms: float,
         rounds: int = 1) -> list[Delay]:
    """One delay per case window and round (see the module doc): round ``r`` puts case
    ``i``'s on the ``i + r * len(cases)``-th service, skipping the case's own root."""
    out = []
    for r in range(rounds):
        for i, case in enumerate(sorted(cases, key=lambda c: int(c["start_ms"]))):
            pool = [s for s in services if s != case.get("root_cause_service")]
            service = pool[(i + r * len(cases)) % len(pool)]
            start = int(case["start_ms"])
            out.append(Delay(service, start, start + FAULT_MS, delay_ms))
    return out


def replays(faults: list[Delay], call_graph: dict[str, dict[str, int]]) -> list[list[Delay]]:
    """``faults`` split into replays in which no two touch the same call edge: each is
    then seen against a history that holds none of the others. (A delayed service's
    callers' own latencies still carry every earlier delay below them, as they would.)"""
    near: dict[str, set[str]] = defaultdict(set)
    for caller, callees in call_graph.items():
        for callee in callees:
            near[caller].add(callee)
            near[callee].add(caller)
    out: list[list[Delay]] = []
    for f in faults:
        taken = next((r for r in out if not any(
            g.service == f.service or g.service in near[f.service] or g.start_ms == f.start_ms
            for g in r)), None)
        if taken is None:
            out.append([f])
        else:
            taken.append(f)
    return out


@dataclass
class Replayed:
    """One replay: its alerts in event time, its anomalies, and the pattern counts root
    cause ranks from."""

    sim: paging.Simulation
    anomalies: list[dict[str, Any]]
    counts: rca.Replay


def alert_times(labels: dict[str, Any], stream: Iterator[Event], detect: DetectionSettings,
                config: Path) -> Replayed:
    """``stream`` replayed through the windows, the scorer and the alert rules of ``config``
    in event time, with the data set's call graph (as ``eval nezha``)."""
    windows: list[WindowStats] = []
    counts = rca.Replay()
    rows = nezha.replay(rca.tee(stream, counts), detect, on_windows=windows.extend)
    sim = paging.simulate(load_alerting(config), windows, rows, 30.0,
                          graph=nezha.call_graph(labels))
    return Replayed(sim, rows, counts)


def root_cause(faults: list[Delay], cases: list[dict[str, Any]], got: Replayed,
               call_graph: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Per fault: whether the incident engine opened an incident for it and where it ranks
    the delayed service (``rca.grouping``). The recorded fault runs in the same window, so
    both are labelled, and each is ranked without the other's root."""
    recorded = [rca.Truth(str(c["id"]), str(c["root_cause_service"]),
                          frozenset(c["affected_services"]), int(c["start_ms"]),
                          int(c["end_ms"])) for c in cases]
    by_start = {int(c["start_ms"]): str(c["id"]) for c in cases}
    injected = [rca.Truth(f"{f.service}@{by_start[f.start_ms]}", f.service,
                          frozenset(upstream(f.service, call_graph) | {"frontend"}),
                          f.start_ms, f.end_ms) for f in faults]
    out = rca.grouping(got.anomalies, injected + recorded, got.counts, nezha.EARLY_MS,
                       concurrent=True)
    ids = {t.id for t in injected}
    return [c for c in out["per_case"] if c["id"] in ids]


def _key(ep: paging.Episode) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ep.rule, tuple(sorted(ep.labels.items()))


def _near(ts_ms: float, case: dict[str, Any]) -> bool:
    return int(case["start_ms"]) - nezha.EARLY_MS <= ts_ms <= int(case["end_ms"]) + nezha.SLACK_MS


def score(faults: list[Delay], cases: list[dict[str, Any]], base: paging.Simulation,
          sim: paging.Simulation, call_graph: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per fault: paged within ``nezha.PAGE_TARGET_S`` of its start by a page one of whose
    alerts is new (no alert of the same rule and labels in the same case window of ``base``,
    the untouched replay) and names an affected service (``upstream``), and when; new alerts
    in the window that name no affected service are false."""
    out, false = [], 0
    by_start = {int(c["start_ms"]): c for c in cases}
    for f in faults:
        affected = upstream(f.service, call_graph) | {"frontend"}
        case = by_start[f.start_ms]
        seen = {_key(ep) for ep in base.episodes if _near(ep.trigger_ts * 1000, case)}
        new = [ep for ep in sim.episodes
               if _near(ep.trigger_ts * 1000, case) and _key(ep) not in seen]
        ok = {id(ep) for ep in new if ep.labels.get("service") in affected}
        false += len(new) - len(ok)
        paged = min((s.at for s in sim.sent if s.page and any(id(ep) in ok for ep in s.alerts)),
                    default=None)
        page_s = None if paged is None else round(paged - f.start_ms / 1000, 1)
        out.append({"service": f.service, "case": case["id"], "start_ms": f.start_ms,
                    "alerts": len(ok), "page_s": page_s,
                    "paged": page_s is not None and page_s <= nezha.PAGE_TARGET_S})
    return {"faults": out, "paged_2min": sum(f["paged"] for f in out), "total": len(out),
            "alerts": sum(f["alerts"] for f in out), "false_alerts": false}
