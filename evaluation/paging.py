"""Pages are the product: the demo's incidents replayed through alert rules, grouping and
routing, scored at the level of what reaches people.

One run: the demo generator (a seed, a start time) goes through the worker's own ingest
windows and scorer (``evaluation.scenarios.replay``), then through the alerting code the
worker runs (``alerting.evaluate``, ``alerting.lifecycle``, ``alerting.routing``,
``alerting.grouping``, ``alerting.inhibit``), in event time:

- an input reaches alerting when its window closes: its end plus the windows' grace
  (``window_grace_s``); anomalies are scored on that same window;
- the watermark is the largest window end delivered; rule ticks and the manager's ticks run
  every ``tick_s`` of event time, as the live worker's timer would;
- a group notifies at its first flush after ``group_wait``; a **page** is a notification
  with firing alerts to a receiver that has an escalation policy (a person is woken).

Figures per run: alerts (firing episodes after dedup), notifications and pages after
grouping, false ones (matching no incident: ``evaluation.incidents.match``), per day of
event time, and for each critical incident the time from its start to its first page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from alerting.config import AlertingConfig, load_alerting
from alerting.evaluate import SeriesState, on_anomaly, on_composites, on_tick, on_window
from alerting.grouping import GroupState, add_alert, due, flush
from alerting.inhibit import CallGraph, suppression_reasons
from alerting.lifecycle import Alert, Signal, apply_signal
from alerting.routing import match_routes
from alerting.watermark import Activity
from demo.fleet import CALLERS
from demo.traffic import DemoConfig
from detectors.settings import DetectionSettings
from evaluation.incidents import match
from evaluation.pool import run_all
from evaluation.scenarios import replay
from schemas.windows import WindowStats

DEFAULT_CONFIG = Path("deploy/config/alerting.yaml")
TARGET_PAGE_S = 60.0


@dataclass
class Episode:
    """One alert firing episode: what fired, when its data said so, when alerting knew."""

    rule: str
    labels: dict[str, str]
    trigger_ts: float
    known_at: float
    incident: str = ""  # the incident it belongs to; "" = false


@dataclass
class Sent:
    """One notification after grouping; ``page``: its receiver wakes a person."""

    receiver: str
    at: float
    alerts: list[Episode]
    page: bool


@dataclass
class Simulation:
    episodes: list[Episode] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)


def call_graph(ts: float) -> CallGraph:
    """The demo fleet's call graph, for dependency inhibition."""
    g = CallGraph()
    for callee, callers in CALLERS.items():
        for caller, _route, _op in callers:
            g.add_call(caller, callee, ts)
    return g


def simulate(cfg: AlertingConfig, windows: Iterable[WindowStats],
             anomalies: Iterable[Mapping[str, Any]], grace_s: float, settle_s: float = 30.0,
             tick_s: float = 10.0, graph: CallGraph | None = None) -> Simulation:
    """Alerting in event time over one run's windows and anomalies (see the module doc);
    ``graph``: the fleet's call graph (default: the demo's)."""
    items: list[tuple[float, int, Any]] = [(w.end.timestamp() + grace_s, 0, w) for w in windows]
    items += [(float(a["ts"]) / 1000 + grace_s, 1, _anomaly(a)) for a in anomalies
              if a.get("variant", "champion") == "champion"]
    items.sort(key=lambda x: (x[0], x[1]))
    sim = Simulation()
    if not items:
        return sim
    states: dict[str, SeriesState] = {}
    alerts: dict[str, Alert] = {}
    groups: dict[str, GroupState] = {}
    paging = {r.name for r in cfg.receivers if r.escalation}
    graph = graph or call_graph(items[0][0])
    open_ep: dict[str, Episode] = {}
    activity = Activity()  # when the fleet's logs and metrics had data (absences)
    watermark: float | None = None

    def take(sigs: list[Signal], now: float) -> None:
        for s in sigs:
            before = alerts.get(s.fingerprint)
            after = apply_signal(before, s, now, cfg.flapping)
            if after is None:
                continue
            alerts[s.fingerprint] = after
            if before is not None and before.state == after.state:
                continue
            if after.active and (before is None or not before.active):
                ep = Episode(after.rule, dict(after.labels), after.trigger_ts, now)
                sim.episodes.append(ep)
                open_ep[after.fingerprint] = ep
            now_due = []
            for m in match_routes(cfg.route, after.labels):
                key = m.group_key(after.labels)
                if key not in groups and not after.active:
                    continue
                groups[key] = g = add_alert(groups.get(key), m, after, now)
                if g.last_notified is None and due(g, now):
                    now_due.append(key)  # group_wait 0: the manager flushes at once
            if now_due:
                flush_groups(now, now_due)

    def manager_tick(now: float) -> None:
        take(on_composites(cfg, alerts.values(), now), now)
        flush_groups(now, list(groups))

    def flush_groups(now: float, keys: list[str]) -> None:
        muted = suppression_reasons(alerts.values(), [], cfg.inhibit_rules, now,
                                    cfg.dependency_inhibit, graph)
        for key in keys:
            g = groups.get(key)
            if g is None or not due(g, now):
                continue
            new, note = flush(g, now, muted)
            if new is None:
                del groups[key]
            else:
                groups[key] = new
            if note is not None and note.firing and not note.repeat:
                eps = [open_ep[a.fingerprint] for a in note.firing if a.fingerprint in open_ep]
                sim.sent.append(Sent(note.receiver, now, eps, note.receiver in paging))

    next_tick = math.ceil(items[0][0] / tick_s) * tick_s
    for at, kind, item in items:
        while at >= next_tick:
            for key, st in list(states.items()):
                states[key], sigs = on_tick(cfg, st, watermark, settle_s, activity.went_on)
                take(sigs, next_tick)
            manager_tick(next_tick)
            next_tick += tick_s
        if kind == 0:
            watermark = max(watermark or 0.0, item.end.timestamp())
            activity.observe(item)
            states[item.series], sigs = on_window(cfg, states.get(item.series), item, at,
                                                  activity.went_on)
        else:
            states[item["series"]], sigs = on_anomaly(cfg, states.get(item["series"]), item, at)
        take(sigs, at)
    return sim


def _anomaly(a: Mapping[str, Any]) -> dict[str, Any]:
    """An anomaly row as ``on_anomaly`` reads it (``ts`` in seconds)."""
    return {**a, "ts": float(a["ts"]) / 1000, "value": a.get("observed", math.nan),
            "name": a.get("name") or a.get("feature", "")}


def score(sim: Simulation, labels: list[dict[str, Any]], hours: float) -> dict[str, Any]:
    """Alerts, notifications and pages, false ones per day, time to page per critical."""
    for ep in sim.episodes:
        inc = match({"ts": ep.trigger_ts * 1000, "service": ep.labels.get("service", "")},
                    labels)
        ep.incident = str(inc["id"]) if inc is not None else ""
    days = max(hours / 24, 1e-9)
    pages = [s for s in sim.sent if s.page]
    false_pages = [s for s in pages if not any(e.incident for e in s.alerts)]
    false_alerts = [e for e in sim.episodes if not e.incident]
    incidents = []
    for inc in labels:
        first_page = min((s.at for s in pages if any(e.incident == inc["id"] for e in s.alerts)),
                         default=None)
        first_alert = min((e.trigger_ts for e in sim.episodes if e.incident == inc["id"]),
                          default=None)
        start = inc["start_ms"] / 1000
        incidents.append({
            "id": inc["id"], "kind": inc.get("kind", ""), "severity": inc.get("severity", ""),
            "service": inc.get("service", ""),
            "page_s": None if first_page is None else round(first_page - start, 1),
            "alert_s": None if first_alert is None else round(first_alert - start, 1)})
    crit = [i for i in incidents if i["severity"] == "critical"]
    page_s = sorted(float(i["page_s"]) for i in crit if i["page_s"] is not None)
    return {
        "hours": round(hours, 3), "alerts": len(sim.episodes), "false_alerts": len(false_alerts),
        "false_alert_fraction": round(len(false_alerts) / max(len(sim.episodes), 1), 4),
        "notifications": len(sim.sent), "pages": len(pages), "false_pages": len(false_pages),
        "false_alerts_per_day": round(len(false_alerts) / days, 1),
        "false_pages_per_day": round(len(false_pages) / days, 1),
        "criticals": len(crit),
        "criticals_paged": len(page_s),
        "criticals_paged_60s": sum(1 for s in page_s if s <= TARGET_PAGE_S),
        "page_s_median": page_s[len(page_s) // 2] if page_s else None,
        "page_s_worst": page_s[-1] if page_s else None,
        "incidents": incidents,
        "false": sorted({f"{e.rule} {e.labels.get('service', '')}" for e in false_alerts}),
    }


def run_one(demo: DemoConfig, config_path: Path, detect: DetectionSettings,
            grace_s: float = 30.0, settle_s: float = 30.0) -> dict[str, Any]:
    """One demo run, replayed and scored at the level of pages."""
    cfg = load_alerting(config_path)
    windows: list[WindowStats] = []
    labels: list[dict[str, Any]] = []
    anomalies = replay(demo, detect, on_incident=lambda i: labels.append(i.label()),
                       on_windows=windows.extend)
    sim = simulate(cfg, windows, anomalies, grace_s, settle_s)
    hours = (demo.duration_s or 0) / 3600
    return {"seed": demo.seed, "start_ms": demo.start_ms, "quiet": demo.incidents == 0,
            **score(sim, labels, hours)}


def sweep(demos: list[DemoConfig], config_path: Path, detect: DetectionSettings,
          jobs: int = 1, grace_s: float = 30.0, settle_s: float = 30.0
          ) -> list[dict[str, Any]]:
    """``run_one`` over every run, worst first (critical pages missed or late, then false
    pages, then the slowest page)."""
    runs = run_all(partial(run_one, config_path=config_path, detect=detect, grace_s=grace_s,
                           settle_s=settle_s), demos, jobs)
    return sorted(runs, key=worst_first)


def worst_first(r: Mapping[str, Any]) -> tuple[float, ...]:
    """Sort key: most criticals not paged within the target, most false pages, slowest."""
    return (-(r["criticals"] - r["criticals_paged_60s"]), -r["false_pages"],
            -(r["page_s_worst"] or 0.0), -r["false_alerts"])


def totals(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """All runs together: counts summed, page delays pooled."""
    keys = ("alerts", "false_alerts", "notifications", "pages", "false_pages", "criticals",
            "criticals_paged", "criticals_paged_60s")
    out: dict[str, Any] = {k: sum(int(r[k]) for r in runs) for k in keys}
    hours = sum(float(r["hours"]) for r in runs)
    delays = sorted(float(i["page_s"]) for r in runs for i in r["incidents"]
                    if i["severity"] == "critical" and i["page_s"] is not None)
    out.update({"runs": len(runs), "hours": round(hours, 2),
                "false_alerts_per_day": round(out["false_alerts"] / max(hours / 24, 1e-9), 1),
                "false_pages_per_day": round(out["false_pages"] / max(hours / 24, 1e-9), 1),
                "false_alert_fraction": round(out["false_alerts"] / max(out["alerts"], 1), 4),
                "page_s_median": delays[len(delays) // 2] if delays else None,
                "page_s_worst": delays[-1] if delays else None})
    return out
