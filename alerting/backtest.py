"""``logwarden rules test FILE --since 24h``: replay stored history through a rule set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from alerting.evaluate import (
    SeriesState,
    TemplateSignal,
    on_anomaly,
    on_composites,
    on_template,
    on_tick,
    on_window,
)
from alerting.lifecycle import Alert, FlapConfig, Signal, apply_signal
from alerting.rules import CompositeRule, RuleSet
from alerting.watermark import Activity
from schemas.windows import WindowStats


class RuleReport(BaseModel):
    rule: str
    fired: int = 0  # firing episodes
    resolved: int = 0
    firing_s: float = 0.0  # total time firing within the replay
    first: list[dict[str, Any]] = []  # the first few episodes: labels, start, value


class BacktestReport(BaseModel):
    start: float
    end: float
    inputs: int
    rules: list[RuleReport]


def backtest(rules: RuleSet, windows: Iterable[WindowStats],
             anomalies: Iterable[Mapping[str, Any]] = (),
             templates: Iterable[TemplateSignal] = (), tick_s: float = 60.0) -> BacktestReport:
    """Replay inputs in event-time order, ticking every ``tick_s``, and count episodes."""
    items: list[tuple[float, int, Any]] = [(w.end.timestamp(), 0, w) for w in windows]
    items += [(float(a["ts"]), 1, a) for a in anomalies]
    items += [(t.ts, 2, t) for t in templates]
    items.sort(key=lambda x: (x[0], x[1]))
    states: dict[str, SeriesState] = {}
    alerts: dict[str, Alert] = {}
    reports = {r.name: RuleReport(rule=r.name) for r in rules.rules}
    flap = FlapConfig()
    composites = any(isinstance(r, CompositeRule) for r in rules.rules)

    def take(sigs: list[Signal], now: float) -> None:
        for s in sigs:
            before = alerts.get(s.fingerprint)
            after = apply_signal(before, s, now, flap)
            if after is None:
                continue
            rep = reports[s.rule]
            if after.active and (before is None or not before.active):
                rep.fired += 1
                if len(rep.first) < 5:
                    rep.first.append({"labels": after.labels, "start": now, "value": s.value})
            elif not after.active and before is not None and before.active:
                rep.resolved += 1
                rep.firing_s += now - before.starts_at
            alerts[s.fingerprint] = after

    next_tick = items[0][0] + tick_s if items else 0.0
    activity = Activity()  # when the fleet's logs and metrics had data (absences)
    for ts, kind, item in items:
        while ts >= next_tick:
            for key, st in list(states.items()):
                states[key], sigs = on_tick(rules, st, next_tick, went_on=activity.went_on)
                take(sigs, next_tick)
            next_tick += tick_s
        if kind == 0:
            key = item.series
            activity.observe(item)
            states[key], sigs = on_window(rules, states.get(key), item, ts, activity.went_on)
        elif kind == 1:
            key = str(item["series"])
            states[key], sigs = on_anomaly(rules, states.get(key), item, ts)
        else:
            key = f"{item.service}#{item.template_id}"
            states[key], sigs = on_template(rules, states.get(key), item, ts)
        take(sigs, ts)
        if composites:
            take(on_composites(rules, alerts.values(), ts), ts)
    end = items[-1][0] if items else 0.0
    for a in alerts.values():
        if a.active:
            reports[a.rule].firing_s += end - a.starts_at
    return BacktestReport(start=items[0][0] if items else 0.0, end=end, inputs=len(items),
                          rules=list(reports.values()))
