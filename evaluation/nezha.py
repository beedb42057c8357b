"""``logwarden eval nezha``: real fault injections (TrainTicket, the Nezha data set) replayed
through the worker's own ingest windows and scorer, in-process, and scored per fault.

Nobody here generated this data, and no knob was chosen on it: it is scored once, at the
shipped settings. A fault counts as detected when an anomaly names a service it affects
(the root or a caller) between ``EARLY_MS`` before its recorded start (the README: code
defects often err 50-90 s before the recorded injection) and ``SLACK_MS`` after its end.
Every other anomaly is false, including those at the data set's telemetry gaps (logs exist
only around the faults), which a live fleet would not have: they are counted apart.

>>> labels = [{"id": "F1", "kind": "cpu", "severity": "critical", "start_ms": 200_000,
...            "end_ms": 380_000, "affected_services": ["a", "b"]}]
>>> got = score([{"ts": 150_000, "service": "b", "variant": "champion", "severity": "warning"},
...              {"ts": 900_000, "service": "a", "variant": "champion", "severity": "warning"}],
...             labels, gaps=[])
>>> got["detected"], got["false_events"], got["faults"][0]["ttd_s"]
(1, 1, -50.0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alerting.config import load_alerting
from alerting.inhibit import CallGraph
from detectors.settings import DetectionSettings
from evaluation import paging
from evaluation.rca import read_events
from evaluation.scenarios import replay_events
from schemas.windows import WindowStats

PAGE_TARGET_S = 120.0  # the target: a fault paged within 2 minutes of its start
EARLY_MS = 90_000  # errors may start this long before the recorded injection
SLACK_MS = 120_000  # an anomaly this long after a fault's end still belongs to it
GAP_MS = 60_000  # an anomaly this close to a telemetry gap's edge is put down to the gap


def read_labels(root: Path) -> dict[str, Any]:
    """The data set's ``labels.json``; FileNotFoundError with what to do if missing."""
    path = root / "labels.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: point --datasets at the folder holding nezha/")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def events(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(topic, event)`` of ``events.jsonl.gz`` in order (the ``topic`` field removed)."""
    return read_events(root / "events.jsonl.gz")


def replay(stream: Iterator[tuple[str, dict[str, Any]]], detect: DetectionSettings,
           progress: Callable[[int], None] = lambda n: None,
           on_windows: Callable[[list[WindowStats]], None] = lambda ws: None
           ) -> list[dict[str, Any]]:
    """Events through ``IngestProcessor`` windows and ``WindowScorer``, the clock at event
    time; every anomaly as a dict (``on_windows`` sees the windows, for ``pages``)."""
    return replay_events(stream, 0, math.inf, [detect], progress, on_windows)[0]


def call_graph(labels: dict[str, Any]) -> CallGraph:
    """The data set's recorded call graph, for dependency inhibition."""
    graph = CallGraph()
    for caller, callees in labels.get("call_graph", {}).items():
        for callee in callees:
            graph.add_call(caller, callee, 0.0)
    return graph


def pages(labels: dict[str, Any], windows: list[WindowStats], rows: list[dict[str, Any]],
          config: Path, grace_s: float = 30.0) -> dict[str, Any]:
    """The replay through the alert rules of ``config``, grouping and routing, in event time
    (``evaluation.paging``): pages per fault within ``PAGE_TARGET_S`` of its recorded start,
    and false pages. An alert belongs to a fault on a service it affects, from ``EARLY_MS``
    before its start to ``evaluation.incidents.SLACK_MS`` (as ``SLACK_MS``) after its end."""
    graph = call_graph(labels)
    faults = [{**inc, "services": inc.get("affected_services") or [inc["root_cause_service"]],
               "service": inc["root_cause_service"], "start_ms": inc["start_ms"] - EARLY_MS}
              for inc in labels["incidents"]]
    sim = paging.simulate(load_alerting(config), windows, rows, grace_s, graph=graph)
    span = (max(int(f["end_ms"]) for f in faults) - min(int(f["start_ms"]) for f in faults))
    got = paging.score(sim, faults, span / 3_600_000)
    per = [{**f, "page_s": None if f["page_s"] is None else f["page_s"] - EARLY_MS / 1000}
           for f in got.pop("incidents")]
    paged = [f for f in per if f["page_s"] is not None and f["page_s"] <= PAGE_TARGET_S]
    kinds = sorted({str(f["kind"]) for f in per})
    return {**{k: got[k] for k in ("alerts", "false_alerts", "pages", "false_pages",
                                   "false_pages_per_day")},
            "faults": len(per), "paged_2min": len(paged),
            "paged_2min_by_kind": {k: f"{sum(f['kind'] == k for f in paged)}/"
                                      f"{sum(f['kind'] == k for f in per)}" for k in kinds},
            "false_rules": got["false"][:20]}


def score(rows: list[dict[str, Any]], incidents: list[dict[str, Any]],
          gaps: list[dict[str, Any]], variant: str = "champion") -> dict[str, Any]:
    """Per fault: detected?, time to detect (from the recorded start; negative: early),
    detected by a critical anomaly?; false anomaly events, those at telemetry gaps apart."""
    mine = sorted((r for r in rows if r.get("variant", "champion") == variant),
                  key=lambda r: int(r["ts"]))
    first: dict[str, int] = {}
    first_critical: dict[str, int] = {}
    false = at_gaps = 0
    for r in mine:
        ts, hit = int(r["ts"]), None
        for inc in incidents:
            services = set(inc.get("affected_services") or [inc.get("root_cause_service")])
            if (r["service"] in services
                    and inc["start_ms"] - EARLY_MS < ts <= inc["end_ms"] + SLACK_MS):
                hit = inc
                break
        if hit is None:
            false += 1
            if any(abs(ts - int(g[k])) <= GAP_MS for g in gaps for k in ("from_ms", "to_ms")
                   if k in g):
                at_gaps += 1
            continue
        first.setdefault(hit["id"], ts)
        if r.get("severity") == "critical":
            first_critical.setdefault(hit["id"], ts)
    faults = []
    for inc in incidents:
        at = first.get(inc["id"])
        faults.append({"id": inc["id"], "kind": inc.get("kind", ""),
                       "service": inc.get("root_cause_service", ""), "detected": at is not None,
                       "ttd_s": None if at is None else (at - inc["start_ms"]) / 1000,
                       "critical": inc["id"] in first_critical})
    return {"faults": faults, "detected": sum(f["detected"] for f in faults),
            "critical_detected": sum(f["critical"] for f in faults), "total": len(faults),
            "anomalies": len(mine), "false_events": false, "false_at_gaps": at_gaps,
            "false_fraction": round(false / len(mine), 4) if mine else 0.0}
