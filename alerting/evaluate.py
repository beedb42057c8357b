"""Rule evaluation as pure functions of (series state, input, event time) -> (state, signals).

The worker keeps one ``SeriesState`` per series (a Faust table keyed like the windows
topic) and calls ``on_window`` / ``on_anomaly`` / ``on_template`` for each input and
``on_tick`` on a timer (absence and time-outs). Composite rules read the active alerts.

Everything runs in event time: ``for`` and ``keep_firing_for`` compare window bounds,
``on_tick`` is given the fleet watermark (``alerting/watermark.py``), not the wall clock,
and every signal's ``ts`` is the event time its condition became true (the end of the
window that completed a ``for``, the last data plus ``for`` for an absence, the last
anomaly plus ``resolve_after`` for a time-out). A condition the tick did not see in time
(a replay at full speed outruns the timer) is caught when the next input shows it, with
the same ``ts``: replaying a stream at any speed raises the same alerts at the same event
times.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel

from alerting.lifecycle import Alert, Evidence, Signal
from alerting.rules import (
    AbsenceRule,
    AnomalyRule,
    CompositeRule,
    RateOfChangeRule,
    RuleSet,
    TemplateRule,
    ThresholdRule,
    compare,
    render,
)
from alerting.watermark import ACTIVITY_SLOT_S, kind_of
from schemas.evidence import describe_anomaly, describe_threshold
from schemas.windows import WindowStats

HISTORY_POINTS = 240  # per series, only the fields some rule reads
EVIDENCE_POINTS = 12


class RuleStatus(BaseModel):
    pending_since: float | None = None
    active: bool = False
    clear_since: float | None = None
    last_hit: float = 0.0
    last_data: float = 0.0  # absence rules: end of the last window with data (event time)
    rate: float = 0.0  # ... and its windows with data per second, decayed over RATE_TAU_S
    first_data: float = 0.0  # ... since (its rate's span)
    # ... gaps a window showed before the fleet's activity then was known: (last data,
    # silence needed, data back), decided by a tick once the watermark has passed them
    gaps: list[tuple[float, float, float]] = []


class SeriesState(BaseModel):
    """What evaluation remembers about one series."""

    series: str
    service: str
    scope: str = "service"
    route: str = ""
    name: str = ""
    last_seen: float = 0.0
    history: list[tuple[float, dict[str, float]]] = []
    rules: dict[str, RuleStatus] = {}


class TemplateSignal(BaseModel):
    """A template event from categorisation (new / spike / vanished) with sample lines."""

    kind: str
    service: str
    template_id: str
    template: str = ""
    ts: float
    level: str = ""
    category: str = ""
    count: int = 0
    baseline: float = 0.0
    sample_lines: list[str] = []


def _base_labels(rule: Any, st: SeriesState) -> dict[str, str]:
    labels = {"alertname": rule.name, "severity": rule.severity, "service": st.service,
              "scope": st.scope}
    if st.route:
        labels["route"] = st.route
    if st.name:
        labels["name"] = st.name
    return labels


def _signal(rule: Any, st: SeriesState, status: str, value: float, ts: float,
            evidence: Evidence, extra: Mapping[str, Any] | None = None) -> Signal:
    ctx: dict[str, Any] = {"rule": rule.name, "severity": rule.severity, "service": st.service,
                           "route": st.route, "name": st.name, "series": st.series,
                           "value": value, "threshold": getattr(rule, "value", ""),
                           "field": getattr(rule, "field", ""), **(extra or {})}
    labels = _base_labels(rule, st)
    labels.update({k: render(v, ctx) for k, v in rule.labels.items()})
    ann = {k: render(v, ctx) for k, v in rule.annotations.items()}
    if rule.runbook is not None and rule.runbook.url:
        ann.setdefault("runbook_url", rule.runbook.url)  # shown in every message
    return Signal(status=status, rule=rule.name, labels=labels, annotations=ann,
                  value=value, ts=ts, evidence=evidence)


def _step(st: RuleStatus, hit: bool, start: float, end: float, for_s: float,
          keep_s: float) -> tuple[RuleStatus, str | None]:
    """The for / keep_firing_for state machine: returns 'fire', 'resolve' or None."""
    if hit:
        since = st.pending_since if st.pending_since is not None else start
        if st.active or end - since >= for_s:
            return RuleStatus(pending_since=since, active=True, last_hit=end), "fire"
        return RuleStatus(pending_since=since, last_hit=st.last_hit), None
    if not st.active:
        return RuleStatus(last_hit=st.last_hit), None
    clear = st.clear_since if st.clear_since is not None else end
    if end - clear >= keep_s:
        return RuleStatus(last_hit=st.last_hit), "resolve"
    return RuleStatus(active=True, clear_since=clear, last_hit=st.last_hit), None


def _evidence(st: SeriesState, field: str, summary: str = "") -> Evidence:
    pts = [(t, v[field]) for t, v in st.history[-EVIDENCE_POINTS:] if field in v]
    return Evidence(field=field, series=pts, summary=summary)


MAX_GAPS = 8  # undecided gaps kept per series and absence rule
SILENCE_Q = 6.9  # -log p of the silence that proves an absence, for a Poisson stream
RATE_TAU_S = 600.0  # the memory of an absence rule's event rate


class WentOn(Protocol):
    """``Activity.went_on``: the fleet sent data, and someone called the silent service?"""

    def __call__(self, kind: str, after: float, upto: float, service: str = "",
                 since: float = 0.0) -> bool: ...


def _fleet_on(went_on: WentOn | None, st: SeriesState, since: float, at: float) -> bool:
    """Whether a silence of ``st`` from ``since`` to ``at`` (the event time an absence
    would fire) is news: the fleet's stream of its kind was sending at ``at`` (some window
    with data ended within a slot or two of it), and someone called its service meanwhile."""
    return went_on is None or went_on(kind_of(st.scope), at - 2 * ACTIVITY_SLOT_S,
                                      at + ACTIVITY_SLOT_S, st.service, since)


def _absence_on_window(r: AbsenceRule, st: SeriesState, w: WindowStats,
                       went_on: WentOn | None = None) -> tuple[RuleStatus, list[Signal]]:
    """An absence rule sees a window of its length: data is back, or a gap the ticks missed.

    A gap of ``for`` or more between two windows with data fires (``ts``: the last data
    plus ``for``) and resolves at once (``ts``: the new window's start): the alert a tick
    would have raised had the watermark got there first, so the speed of a replay does not
    decide whether it exists. Only if the fleet's stream was sending when it would have
    fired (``went_on``) and someone called the service meanwhile: when everyone was silent,
    or nobody asked it anything, nobody was down.
    """
    status = st.rules.get(r.name, RuleStatus())
    start, end = w.start.timestamp(), w.end.timestamp()
    if w.count <= 0:
        return status, []
    out: list[Signal] = []
    need = silence_needed(r, status)
    if not status.active and status.last_data > 0 and start - status.last_data >= need:
        if _fleet_on(went_on, st, status.last_data, status.last_data + need):
            out.append(_absence_signal(r, st, "firing", status.last_data, need))
            status = status.model_copy(update={"active": True})
        else:  # the fleet was silent then, or its windows of then have not come yet
            gaps = [*status.gaps, (status.last_data, need, start)][-MAX_GAPS:]
            status = status.model_copy(update={"gaps": gaps})
    if status.active and start >= status.last_data:  # data is back
        out.append(_signal(r, st, "resolved", 0.0, start, Evidence()))
        status = RuleStatus(last_hit=status.last_hit, last_data=status.last_data,
                            rate=status.rate, first_data=status.first_data, gaps=status.gaps)
    decay = math.exp(-max(end - status.last_data, 0.0) / RATE_TAU_S) if status.last_data else 0.0
    rate = status.rate * decay + 1.0 / RATE_TAU_S  # windows with data, not lines: bursts
    return status.model_copy(update={"last_data": max(status.last_data, end), "rate": rate,
                                     "first_data": status.first_data or start}), out


def silence_needed(r: AbsenceRule, status: RuleStatus) -> float:
    """How long a series must be silent to be absent: the rule's ``for``, or longer for a
    series that sends little: a Poisson stream of its arrivals is silent that long with
    probability ``exp(-SILENCE_Q)`` (1 in 1,000).

    Arrivals, not lines: a request logs several lines at once, so lines come in bursts and
    their rate overstates how often something arrives. The share of the rule's windows that
    have data does not: with arrivals at rate ``a``, a window of ``w`` seconds is empty with
    probability ``exp(-a w)``, so ``a = -ln(1 - share) / w``. The share is over the windows
    since the series' first data, decayed like ``rate``. Data in every window: ``for``; in
    one window of three (10 s windows, an hour): 170 s.

    >>> r = AbsenceRule(name="down", kind="absence", select={"scope": "service", "window": 10},
    ...                 **{"for": 60})
    >>> every, third = RuleStatus(rate=0.1, last_data=3600), RuleStatus(rate=1 / 30, last_data=3600)
    >>> silence_needed(r, every), round(silence_needed(r, third))
    (60.0, 170)
    >>> silence_needed(r, RuleStatus(rate=1 / RATE_TAU_S, first_data=10, last_data=20))  # new
    60.0
    """
    if status.rate <= 0:
        return r.for_
    window = max(r.select.window, 1.0)
    span = status.last_data - status.first_data if status.first_data else math.inf
    seen = -math.expm1(-span / RATE_TAU_S)  # the decayed weight of the windows since then
    share = min(status.rate * window / seen, 0.999)  # of those windows, the ones with data
    return max(r.for_, SILENCE_Q * window / -math.log1p(-share))


def _absence_signal(r: AbsenceRule, st: SeriesState, status: str, last_data: float,
                    silent_s: float) -> Signal:
    since = datetime.fromtimestamp(last_data, tz=UTC).strftime("%H:%M:%S UTC")
    silent = f"no data for {silent_s:.0f} s (since {since})"
    return _signal(r, st, status, silent_s, last_data + silent_s,
                   Evidence(summary=f"{st.series}: {silent}"), {"silent_for": int(silent_s)})


def _value_at(st: SeriesState, field: str, ts: float) -> float | None:
    """The oldest stored value of ``field`` at or after ``ts``."""
    return next((v[field] for t, v in st.history if t >= ts and field in v), None)


def on_window(rules: RuleSet, state: SeriesState | None, w: WindowStats,
              now: float, went_on: WentOn | None = None) -> tuple[SeriesState, list[Signal]]:
    """Evaluate threshold, rate-of-change and absence (data is back) rules on one window
    (``went_on``: when the fleet sent data, for absences; None: always)."""
    st = state or SeriesState(series=w.series, service=w.service, scope=w.scope,
                              route=w.route, name=w.name)
    start, end = w.start.timestamp(), w.end.timestamp()
    mine = [r for r in rules.rules if isinstance(r, ThresholdRule | RateOfChangeRule
                                                  | AbsenceRule)
            and r.select.matches(w.scope, w.service, w.route, w.name)
            and r.select.window == w.window_s]
    fields = {r.field for r in mine if not isinstance(r, AbsenceRule)}
    point = {f: float(getattr(w, f)) for f in fields if not math.isnan(float(getattr(w, f)))}
    history = [*[(t, v) for t, v in st.history if t != end], (end, point)]
    history.sort(key=lambda p: p[0])
    st = st.model_copy(update={"history": history[-HISTORY_POINTS:] if fields else [],
                               "last_seen": max(st.last_seen, end),
                               "rules": dict(st.rules)})
    out: list[Signal] = []
    for r in mine:
        status = st.rules.get(r.name, RuleStatus())
        if isinstance(r, AbsenceRule):
            st.rules[r.name], sigs = _absence_on_window(r, st, w, went_on)
            out += sigs
            continue
        value = point.get(r.field, math.nan)
        extra: dict[str, Any] = {}
        if isinstance(r, ThresholdRule):
            if w.count < r.min_count and status.active:  # too few events to resolve it
                continue
            hit = w.count >= r.min_count and compare(r.op, value, r.value)
        else:
            old = _value_at(st, r.field, end - r.over)
            pct = math.nan if old is None or old == 0 else (value - old) / abs(old) * 100
            ok = {"up": pct >= r.percent, "down": -pct >= r.percent,
                  "both": abs(pct) >= r.percent}[r.direction]
            hit, extra = (not math.isnan(pct)) and ok, {"percent": pct, "before": old}
        st.rules[r.name], action = _step(status, hit, start, end, r.for_, r.keep_firing_for)
        if action:
            status_s = "firing" if action == "fire" else "resolved"
            words = ""
            if isinstance(r, ThresholdRule):
                words = f"{st.series} " + describe_threshold(r.field, value, r.op, r.value,
                                                             st.name)
            elif extra["before"] is not None:
                words = f"{st.series} {r.field} {extra['percent']:+.0f}% in {r.over:.0f} s"
            out.append(_signal(r, st, status_s, value, end, _evidence(st, r.field, words),
                               extra))
    return st, out


def on_anomaly(rules: RuleSet, state: SeriesState | None, a: Mapping[str, Any],
               now: float) -> tuple[SeriesState, list[Signal]]:
    """Evaluate anomaly rules on one anomaly: keys series, service, ts (epoch s), score, and
    optionally feature, severity, direction, value/observed, expected, lo, hi, id.

    An alert that went longer than ``resolve_after`` (event time) without a matching anomaly
    is resolved first, at ``last + resolve_after``, then the new one fires."""
    st = state or SeriesState(series=str(a["series"]), service=str(a["service"]),
                              scope=str(a.get("scope", "service")), route=str(a.get("route", "")),
                              name=str(a.get("name", "")))
    st = st.model_copy(update={"rules": dict(st.rules)})
    ts, score = float(a["ts"]), float(a["score"])
    feature, severity = str(a.get("feature", "")), str(a.get("severity", ""))
    direction = str(a.get("direction", "up"))
    out: list[Signal] = []
    for r in rules.rules:
        if not (isinstance(r, AnomalyRule) and r.select.matches(st.scope, st.service, st.route,
                                                                  st.name)):
            continue
        if not r.accepts(feature, severity, direction, score):
            continue
        status = st.rules.get(r.name, RuleStatus())
        if status.active and ts - status.last_hit >= r.resolve_after:
            out.append(_signal(r, st, "resolved", 0.0, status.last_hit + r.resolve_after,
                               Evidence()))
        st.rules[r.name] = RuleStatus(active=True, last_hit=max(ts, status.last_hit))
        words = describe_anomaly({**a, "scope": st.scope, "route": st.route})
        ev = Evidence(field=feature or "value",
                      series=[(ts, float(a.get("value", math.nan)))],
                      log_lines=[f"score {score:.3f}"], summary=words,
                      anomaly_id=str(a.get("id", "")))
        out.append(_signal(r, st, "firing", score, ts, ev,
                           {"score": score, "expected": a.get("expected", "?"),
                            "observed": a.get("value", "?"), "evidence": words,
                            "feature": feature, "anomaly_severity": severity}))
    return st, out


def on_template(rules: RuleSet, state: SeriesState | None, ev: TemplateSignal,
                now: float) -> tuple[SeriesState, list[Signal]]:
    """Evaluate template rules on a template event (state keyed ``service#template_id``)."""
    st = state or SeriesState(series=f"{ev.service}#{ev.template_id}", service=ev.service,
                              scope="template", name=ev.template_id)
    st = st.model_copy(update={"rules": dict(st.rules), "last_seen": max(st.last_seen, ev.ts)})
    out: list[Signal] = []
    for r in rules.rules:
        if not isinstance(r, TemplateRule) or ev.kind not in r.events:
            continue
        if re.fullmatch(r.service, ev.service) is None:
            continue
        if r.levels and ev.level.upper() not in {lv.upper() for lv in r.levels}:
            continue
        if r.categories and ev.category not in r.categories:
            continue
        status = st.rules.get(r.name, RuleStatus())
        if status.active and ev.ts - status.last_hit >= r.resolve_after:
            old = _signal(r, st, "resolved", 0.0, status.last_hit + r.resolve_after, Evidence())
            out.append(old.model_copy(update={"labels": {**old.labels,
                                                         "template_id": ev.template_id}}))
        st.rules[r.name] = RuleStatus(active=True, last_hit=max(ev.ts, status.last_hit))
        evidence = Evidence(template_id=ev.template_id, template=ev.template,
                            log_lines=ev.sample_lines[:10])
        sig = _signal(r, st, "firing", float(ev.count), ev.ts, evidence,
                      {"template": ev.template, "template_id": ev.template_id,
                       "event": ev.kind, "level": ev.level, "category": ev.category,
                       "count": ev.count, "baseline": ev.baseline})
        labels = {**sig.labels, "template_id": ev.template_id}
        if ev.category:
            labels["category"] = ev.category
        out.append(sig.model_copy(update={"labels": labels}))
    return st, out


def on_tick(rules: RuleSet, state: SeriesState, watermark: float | None,
            settle_s: float = 0.0, went_on: WentOn | None = None
            ) -> tuple[SeriesState, list[Signal]]:
    """Checks that need a clock, on the fleet watermark (event time), never the wall clock:
    absence of data, anomaly and template alerts timing out.

    ``settle_s``: how late a window may still arrive behind the watermark. An absence is
    proven up to ``watermark - settle_s - window`` (the next window with data, if any, ends
    after that), so a tick fires only what the next window would have shown as a gap, and
    only if the fleet's stream of the series' kind was sending when it fires (``went_on``):
    the metrics going on while every service's logs stopped prove no service down.
    """
    st = state.model_copy(update={"rules": dict(state.rules)})
    out: list[Signal] = []
    by_name = rules.by_name()
    for name, status in list(st.rules.items()):
        r = by_name.get(name)
        if r is None:  # removed by a reload; the worker resolves its alerts by rule name
            del st.rules[name]
            continue
        if watermark is None:
            continue
        proven = watermark - settle_s
        if isinstance(r, AbsenceRule) and status.gaps and not status.active:
            status, sigs = _decide_gaps(r, st, status, proven, went_on)
            st.rules[name] = status
            out += sigs
        if status.active and isinstance(r, AnomalyRule | TemplateRule) \
                and proven - status.last_hit >= r.resolve_after:
            st.rules[name] = RuleStatus(last_hit=status.last_hit)
            sig = _signal(r, st, "resolved", 0.0, status.last_hit + r.resolve_after, Evidence())
            if isinstance(r, TemplateRule):
                sig = sig.model_copy(update={"labels": {**sig.labels,
                                                        "template_id": st.name}})
            out.append(sig)
        elif isinstance(r, AbsenceRule) and not status.active and status.last_data > 0 \
                and r.select.matches(st.scope, st.service, st.route, st.name) \
                and proven - r.select.window - status.last_data >= silence_needed(r, status) \
                and _fleet_on(went_on, st, status.last_data,
                              status.last_data + silence_needed(r, status)):
            st.rules[name] = status.model_copy(update={"active": True})
            out.append(_absence_signal(r, st, "firing", status.last_data,
                                       silence_needed(r, status)))
    return st, out


def _decide_gaps(r: AbsenceRule, st: SeriesState, status: RuleStatus, proven: float,
                 went_on: WentOn | None) -> tuple[RuleStatus, list[Signal]]:
    """The gaps a window showed while the fleet's activity at their firing time was not
    known (its other partitions' windows of then had not come): once the watermark has
    passed a slot beyond that time, a gap the fleet went on through fires and resolves, as
    it would have had those windows come first; one the whole fleet was silent through
    goes. So the order in which partitions deliver decides nothing."""
    out: list[Signal] = []
    left = []
    for last, need, back in status.gaps:
        if proven < last + need + ACTIVITY_SLOT_S:
            left.append((last, need, back))
        elif _fleet_on(went_on, st, last, last + need):
            out.append(_absence_signal(r, st, "firing", last, need))
            out.append(_signal(r, st, "resolved", 0.0, back, Evidence()))
    return status.model_copy(update={"gaps": left}), out


def on_composites(rules: RuleSet, active: Iterable[Alert], now: float) -> list[Signal]:
    """Composite rules over the active alerts: firing per service while satisfied, else resolved.

    The caller applies resolves only to composite alerts that exist (``apply_signal`` ignores
    the others), so emitting them for every quiet service is harmless.
    """
    alerts = [a for a in active if a.active]
    services = {a.labels.get("service", "") for a in alerts}
    out: list[Signal] = []
    for r in rules.rules:
        if not isinstance(r, CompositeRule):
            continue
        for svc in sorted(services | {a.labels.get("service", "") for a in alerts
                                      if a.rule == r.name}):
            have = {a.rule: a for a in alerts if a.labels.get("service", "") == svc}
            ok = (all(n in have for n in r.all) if r.all else True) and \
                 (any(n in have for n in r.any) if r.any else True)
            parts = [have[n] for n in r.all + r.any if n in have]
            st = SeriesState(series=svc, service=svc)
            ev = Evidence(related=[a.fingerprint for a in parts],
                          log_lines=[a.summary() for a in parts])
            ts = max((a.trigger_ts for a in parts), default=now)
            out.append(_signal(r, st, "firing" if ok else "resolved", float(len(parts)), ts,
                               ev, {"rules": ", ".join(a.rule for a in parts)}))
    return out
