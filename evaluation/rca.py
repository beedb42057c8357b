"""Root-cause ranking measured on labelled fault cases: the Nezha TrainTicket cases and the
demo fleet's injected incidents.

A replay counts every log event into per-minute ``PatternCounts`` and keeps the resource
gauges; each labelled case is then ranked as the live engine ranks an incident: the window
is ``[start - early, start + length)``, the baseline is everything in the ``baseline_ms``
before the window (minus a one-minute guard). Like the published Nezha method, the case
window is given (the labelled fault minute); grouping is measured separately
(``evaluation.grouping``).

Knobs are chosen leave-one-out: for every case, the grid point that ranks the *other*
cases best is used on it (``loo``), and again leaving out every root service at once
(``folds``: no fold sees its root service while choosing knobs); the worst fold is reported.
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incidents.patterns import BUCKET_MS, PatternCounts
from incidents.ranking import Change, RankConfig, rank, saturation
from schemas.common import parse_ts, to_epoch_ms

# resource gauges, as a share of their limit, whose rise means saturation (node-level gauges
# would blame every pod on the node; absolute units such as millicores are not comparable)
RESOURCE = re.compile(r"^(?!node_).*(cpu|mem|disk|pool|heap|conn).*(pct|percent|ratio|util)",
                      re.IGNORECASE)
GUARD_MS = 60_000  # between the baseline and the window
GRID = {"callee_threshold": (2.0, 3.0, 4.0, 5.0, 6.0, 8.0),
        "victim_factor": (0.3, 0.5, 0.7),
        "saturation_weight": (0.05, 0.1, 0.2, 0.5)}


@dataclass
class Replay:
    """What a replay keeps: pattern counts, resource gauges per service, changes."""

    counts: PatternCounts = field(default_factory=PatternCounts)
    resources: dict[str, list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list))
    changes: list[Change] = field(default_factory=list)

    def feed(self, topic: str, event: Mapping[str, Any]) -> None:
        """Count one ingest-contract event."""
        ts = to_epoch_ms(parse_ts(event["ts"]))
        if topic.endswith("logs.v1"):
            self.counts.add_event(event, ts)
        elif topic.endswith("metrics.v1"):
            if RESOURCE.match(str(event["name"])):
                self.resources[str(event["service"])].append((ts, float(event["value"])))
        elif topic.endswith("changes.v1"):
            self.changes.append(Change(id=str(event.get("event_id") or f"chg-{ts}"), ts=ts,
                                       service=str(event["service"]), kind=str(event["kind"]),
                                       description=str(event.get("description", ""))))


@dataclass(frozen=True)
class Case:
    """One labelled fault: its root service and window."""

    id: str
    kind: str
    root: str
    start_ms: int
    end_ms: int


@dataclass
class Features:
    """A case's inputs to ``rank``."""

    case: Case
    window: dict[str, Counter[str]]
    baseline: dict[str, Counter[str]]
    edges: set[tuple[str, str]]
    resources: dict[str, float]
    changes: list[Change]


def features(rp: Replay, case: Case, early_ms: int, baseline_ms: int) -> Features:
    """The window, baseline, call edges and saturation of one case."""
    lo, hi = case.start_ms - early_ms, case.end_ms
    window = rp.counts.window(lo, hi)
    baseline = rp.counts.window(lo - GUARD_MS - baseline_ms, lo - GUARD_MS - BUCKET_MS + 1)
    sat = {}
    for service, points in rp.resources.items():
        w = [v for t, v in points if lo <= t < hi]
        b = [v for t, v in points if lo - GUARD_MS - baseline_ms <= t < lo - GUARD_MS]
        if w:
            sat[service] = saturation(w, b)
    return Features(case, dict(window), dict(baseline), set(rp.counts.edges), sat, rp.changes)


def rank_of(f: Features, cfg: RankConfig) -> int:
    """Where the true root lands (1 = first; len+1 when absent)."""
    ranked = [s.service for s in rank(f.window, f.baseline, f.edges, f.resources, f.changes,
                                      opened_ms=f.case.start_ms, cfg=cfg)]
    return ranked.index(f.case.root) + 1 if f.case.root in ranked else len(ranked) + 1


def grid() -> list[RankConfig]:
    """Every knob combination tried."""
    keys = list(GRID)
    return [RankConfig(**dict(zip(keys, values, strict=True)))
            for values in itertools.product(*(GRID[k] for k in keys))]


def _score(ranks: Sequence[int]) -> tuple[int, int]:
    return sum(r == 1 for r in ranks), sum(r <= 3 for r in ranks)


def choose(feats: Sequence[Features], configs: Sequence[RankConfig],
           table: Mapping[tuple[str, int], int]) -> int:
    """The config index ranking ``feats`` best (top-1, then top-3; ties: the first)."""
    return max(range(len(configs)),
               key=lambda i: (_score([table[(f.case.id, i)] for f in feats]), -i))


def evaluate(feats: Sequence[Features], n_services: float) -> dict[str, Any]:
    """Top-1/top-3 with knobs chosen leave-one-case-out and leave-one-root-service-out."""
    configs = grid()
    table = {(f.case.id, i): rank_of(f, c) for f in feats for i, c in enumerate(configs)}
    loo = []
    for f in feats:
        i = choose([g for g in feats if g is not f], configs, table)
        loo.append(table[(f.case.id, i)])
    folds = []
    for root in sorted({f.case.root for f in feats}):
        held = [f for f in feats if f.case.root == root]
        i = choose([f for f in feats if f.case.root != root], configs, table)
        ranks = [table[(f.case.id, i)] for f in held]
        t1, t3 = _score(ranks)
        folds.append({"root": root, "cases": len(held), "top1": round(t1 / len(held), 3),
                      "top3": round(t3 / len(held), 3)})
    fold_ranks = {f.case.id: table[(f.case.id, choose(
        [g for g in feats if g.case.root != f.case.root], configs, table))] for f in feats}
    default = configs.index(RankConfig()) if RankConfig() in configs else 0
    all_i = choose(feats, configs, table)
    n = len(feats)
    t1, t3 = _score(loo)
    f1, f3 = _score(list(fold_ranks.values()))
    d1, d3 = _score([table[(f.case.id, default)] for f in feats])
    a1, a3 = _score([table[(f.case.id, all_i)] for f in feats])
    return {
        "cases": n,
        "chance_top1": round(1 / n_services, 3), "chance_top3": round(3 / n_services, 3),
        "loo_top1": round(t1 / n, 3), "loo_top3": round(t3 / n, 3),
        "by_root_top1": round(f1 / n, 3), "by_root_top3": round(f3 / n, 3),
        "worst_fold": min(folds, key=lambda f: (f["top1"], f["top3"])),
        "default_top1": round(d1 / n, 3), "default_top3": round(d3 / n, 3),
        "in_sample_top1": round(a1 / n, 3), "in_sample_top3": round(a3 / n, 3),
        "in_sample_best": configs[all_i].model_dump(),
        "folds": folds,
        "per_case": [{"id": f.case.id, "kind": f.case.kind, "root": f.case.root,
                      "loo_rank": r, "top": [s.service for s in rank(
                          f.window, f.baseline, f.edges, f.resources, f.changes,
                          opened_ms=f.case.start_ms)[:3]]}
                     for f, r in zip(feats, loo, strict=True)],
    }


def read_events(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(topic, event) from a JSON-lines file (gzip when it ends in .gz)."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                event = json.loads(line)
                yield str(event.pop("topic")), event


def nezha(directory: Path, early_ms: int = 90_000, baseline_ms: int = 6 * 3_600_000
          ) -> dict[str, Any]:
    """Rank every labelled Nezha case (README: root errors may start 90 s early)."""
    labels = json.loads((directory / "labels.json").read_text())
    rp = Replay()
    for topic, event in read_events(directory / labels.get("events_file", "events.jsonl.gz")):
        rp.feed(topic, event)
    cases = [Case(i["id"], i["kind"], i["root_cause_service"], i["start_ms"], i["end_ms"])
             for i in labels["incidents"]]
    feats = [features(rp, c, early_ms, baseline_ms) for c in cases]
    services = {s for s, info in labels["services"].items() if info.get("logs", 1)}
    return evaluate(feats, n_services=len(services) or 1.0)


def demo_cases(events: Iterable[tuple[str, dict[str, Any]]], labels: Iterable[Any],
               baseline_ms: int = 3_600_000) -> list[Features]:
    """Features of the demo's labelled incidents (``demo.incidents.Incident``)."""
    rp = Replay()
    for topic, event in events:
        rp.feed(topic, event)
    return [features(rp, Case(i.id, i.kind, i.service, i.start_ms, i.end_ms), 0, baseline_ms)
            for i in labels]
