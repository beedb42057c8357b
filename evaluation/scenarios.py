"""The demo scenario as an evaluation: replay the generator through the worker's own
ingest windows and scorer, in-process and without Kafka, and score the anomalies against
the incidents it injected (`evaluation.incidents`).

Runs are repeated over seeds and start times (the demo's events depend on both): one start
time can flatter a detector.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from demo.incidents import Incident
from demo.traffic import DemoConfig, event_time_ms, generate
from detectors.feedback import ChangeLog
from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings
from evaluation.incidents import evaluate
from evaluation.pool import run_all
from schemas.topics import CHANGES, LOGS
from schemas.windows import WindowStats
from streams.ingest import IngestProcessor, Record


def read_labels(path: Path) -> list[dict[str, Any]]:
    """The demo's labels file: one incident per JSON line."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def demo_config(labels: list[dict[str, Any]], seed: int, rate: float,
                duration_s: float | None) -> DemoConfig:
    """The demo run that produced ``labels`` (incidents are evenly spaced from the start)."""
    starts = [int(i["start_ms"]) for i in labels]
    if len(starts) < 2:
        raise ValueError("need at least two labelled incidents to infer the demo's timing")
    spacing = (starts[1] - starts[0]) / 1000
    start_ms = starts[0] - int(spacing * 1000)
    end_ms = max(int(i["end_ms"]) for i in labels)
    duration = duration_s or (end_ms - start_ms) / 1000 + spacing / 2
    return DemoConfig(start_ms=start_ms, seed=seed, duration_s=duration, rate=rate,
                      incident_every_s=spacing)


def replay(cfg: DemoConfig, detect: DetectionSettings,
           progress: Callable[[int], None] = lambda t: None,
           on_incident: Callable[[Incident], None] = lambda i: None,
           on_windows: Callable[[list[WindowStats]], None] = lambda ws: None,
           ) -> list[dict[str, Any]]:
    """Run the demo through ingest windows and the scorer; every anomaly, as dicts
    (``on_windows`` sees each batch of whole windows first)."""
    return replay_many(cfg, [detect], progress, on_incident, on_windows)[0]


def replay_many(cfg: DemoConfig, detects: list[DetectionSettings],
                progress: Callable[[int], None] = lambda t: None,
                on_incident: Callable[[Incident], None] = lambda i: None,
                on_windows: Callable[[list[WindowStats]], None] = lambda ws: None,
                ) -> list[list[dict[str, Any]]]:
    """``replay`` with one scorer per settings on the same windows (generated and
    windowed once); each scorer's anomalies."""
    # the demo stops mid-window: a window past its end is partial (a fake traffic drop)
    stop_ms = cfg.start_ms + (cfg.duration_s or math.inf) * 1000
    return replay_events(generate(cfg, on_incident), cfg.start_ms, stop_ms, detects, progress,
                         on_windows)


def replay_events(events: Iterable[tuple[str, dict[str, Any]]], start_ms: float,
                  stop_ms: float, detects: list[DetectionSettings],
                  progress: Callable[[int], None] = lambda t: None,
                  on_windows: Callable[[list[WindowStats]], None] = lambda ws: None,
                  ) -> list[list[dict[str, Any]]]:
    """Run (topic, event) pairs in event-time order through the worker's ingest windows and
    one scorer per settings; each scorer's anomalies, as dicts. Windows ending after
    ``stop_ms`` are partial: dropped."""
    clock = [start_ms / 1000]
    proc = IngestProcessor(clock=lambda: clock[0])
    changes = ChangeLog()
    scorers = [WindowScorer(d, changes) for d in detects]
    for scorer in scorers:  # its wall clock (a source gone quiet) is the replay's
        scorer.clock = lambda: clock[0]
    outs: list[list[dict[str, Any]]] = [[] for _ in detects]
    batch: list[Record] = []
    stop_s = stop_ms / 1000

    def score(windows: list[WindowStats]) -> None:
        whole = [w for w in windows if w.end.timestamp() <= stop_s]
        on_windows(whole)  # evaluation.paging runs the alert rules on them
        for scorer, out in zip(scorers, outs, strict=True):
            out.extend(a.model_dump() for a in scorer.score_batch(whole))

    def flush() -> None:
        result = proc.process(batch)
        batch.clear()
        # as the worker's idle timer does: services quiet for the grace period (in event
        # time here) emit their open windows, which would otherwise wait for their next event
        score(result.windows + proc.flush_idle())

    for offset, (topic, event) in enumerate(events):
        if topic == CHANGES:
            changes.add(event_time_ms(event), event["service"], event["kind"],
                        event["description"])
        elif topic == LOGS and event.get("peer"):
            changes.add_edge(event["service"], event["peer"]["service"])
        batch.append(Record(topic, 0, offset, event["service"].encode(),
                            orjson.dumps(event)))
        if len(batch) >= 5000:
            clock[0] = event_time_ms(event) / 1000
            flush()
            progress(int(clock[0] * 1000))
    flush()
    clock[0] += 3600.0
    score(proc.flush_idle())
    for scorer, out in zip(scorers, outs, strict=True):
        out.extend(a.model_dump() for a in scorer.release())
    return outs


# The start times of the development set in the README (seeds 0-4 at each).
DEV_STARTS = ("2026-11-20T03:17:00Z", "2026-11-22T21:33:00Z", "2026-11-24T14:05:00Z",
              "2026-11-27T08:48:00Z")


FIGURES = ("anomalies", "false_alarms", "critical_within_60s", "criticals", "detected",
           "incidents")


def parse_seeds(text: str) -> list[int]:
    """``0-4`` or ``1,3,7`` (or both: ``0-2,9``) -> the seeds.

    >>> parse_seeds("0-2,9")
    [0, 1, 2, 9]
    """
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if m is None or int(m[2] or m[1]) < int(m[1]):
            raise ValueError(f"{text!r} is not a list of seeds such as 0-4 or 1,3,7")
        out += range(int(m[1]), int(m[2] or m[1]) + 1)
    return out


def run_scenario(cfg: DemoConfig, detect: DetectionSettings,
                 before: DetectionSettings | None = None) -> dict[str, Any]:
    """One demo run replayed and scored: the champion's figures (``FIGURES``), and each
    variant's under ``variants``; with ``before``, also that scorer's (same windows) under
    ``before``."""
    labels: list[dict[str, Any]] = []
    detects = [detect] + ([before] if before is not None else [])
    runs = replay_many(cfg, detects, on_incident=lambda inc: labels.append(inc.label()))

    def figures(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        result = evaluate(rows, labels, (cfg.duration_s or 0) / 3600)
        return {v: {**{k: r[k] for k in FIGURES[:4]},
                    "detected": sum(i["detected"] for i in r["incidents"]),
                    "incidents": len(r["incidents"])} for v, r in result.items()}

    variants = figures(runs[0])
    out = {"seed": cfg.seed, "start_ms": cfg.start_ms, "family": cfg.family,
           "profile": cfg.profile, **variants["champion"], "variants": variants}
    if before is not None:
        out["before"] = figures(runs[1])
    return out


def run_pair(job: tuple[DemoConfig, DetectionSettings, DetectionSettings | None]
             ) -> dict[str, Any]:
    """``run_scenario`` of a (config, settings, before) job (for a process pool)."""
    return run_scenario(*job)


def totals(runs: Iterable[dict[str, Any]], variant: str = "champion") -> dict[str, Any]:
    """``FIGURES`` added up over runs, for one variant, with the false fraction."""
    runs = list(runs)
    out: dict[str, Any] = {k: sum(r["variants"][variant][k] for r in runs) for k in FIGURES}
    out["false_fraction"] = round(out["false_alarms"] / max(out["anomalies"], 1), 4)
    return out


def choose(runs: list[dict[str, Any]], points: Iterable[str]) -> str:
    """The knob point (variant) best on ``runs``: most criticals detected within 60 s,
    then most incidents detected, then the fewest false anomaly events (a share).

    >>> runs = [{"variants": {"a": dict(anomalies=10, false_alarms=5, critical_within_60s=3,
    ...     criticals=3, detected=6, incidents=6), "b": dict(anomalies=8, false_alarms=1,
    ...     critical_within_60s=3, criticals=3, detected=6, incidents=6)}}]
    >>> choose(runs, ["a", "b"])
    'b'
    """
    def key(p: str) -> tuple[float, float, float]:
        t = totals(runs, p)
        return (-round(t["critical_within_60s"] / max(t["criticals"], 1), 3),
                -round(t["detected"] / max(t["incidents"], 1), 3), t["false_fraction"])
    return min(points, key=key)


def leave_one_family_out(runs: list[dict[str, Any]], points: list[str]
                         ) -> list[dict[str, Any]]:
    """Per family: the knob point chosen on the other families' runs, and the family's
    figures at it; worst (highest false share) first."""
    families = sorted({r["family"] for r in runs})
    out = []
    for fam in families:
        train = [r for r in runs if r["family"] != fam] or runs
        point = choose(train, points)
        held = totals((r for r in runs if r["family"] == fam), point)
        out.append({"family": fam, "chosen": point, **held})
    return sorted(out, key=lambda f: (-f["false_fraction"], f["family"]))


def sweep(configs: Iterable[DemoConfig], detect: DetectionSettings, jobs: int,
          done: Callable[[dict[str, Any]], None] = lambda r: None) -> list[dict[str, Any]]:
    """``run_scenario`` for every config, ``jobs`` at a time; results in config order."""
    return run_all(partial(run_scenario, detect=detect), configs, jobs, done)


def sweep_pairs(jobs_list: list[tuple[DemoConfig, DetectionSettings,
                                      DetectionSettings | None]], jobs: int,
                done: Callable[[dict[str, Any]], None] = lambda r: None
                ) -> list[dict[str, Any]]:
    """``run_scenario`` for every (config, settings), ``jobs`` at a time, in order."""
    return run_all(run_pair, jobs_list, jobs, done)


# The knob grid that leave-one-family-out chooses from: each point is a variant of one
# replay (champion and challenger score the same calibrated values).
KNOB_POINTS = {"champion": None, "challenger": 3.0}  # variant -> false_per_day (None: q 6.5)


def baseline(detect: DetectionSettings) -> DetectionSettings:
    """The settings with this issue's rules off (no edges, pooling, floors, levels, demotion,
    runs)."""
    return detect.model_copy(update={"edges": False, "pool_instances": False,
                                     "fleet_demotion": False, "discrete_floor": False,
                                     "seen_levels": False, "run_start": False,
                                     "slow_calls": False, "metric_run": 1})


def span_hours(rows: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> float:
    """Hours spanned by the anomalies and incidents (at least a minute)."""
    times = [int(r["ts"]) for r in rows] + [int(i["start_ms"]) for i in incidents] + [
        int(i["end_ms"]) for i in incidents]
    return max((max(times) - min(times)) / 3_600_000, 1 / 60) if times else 1.0
